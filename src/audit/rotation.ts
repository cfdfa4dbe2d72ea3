/**
 * The audit file: pino-roll's SonicBoom stream in synchronous mode (so a
 * write has reached the kernel when it returns, and the exit handler can
 * write the last batch), rotated by size and by local day, created 0600.
 * A failed write keeps its data (SonicBoom holds it), marks the file failing,
 * and each later attempt reopens the path first, so the file recovers once it
 * is writable again — even if it had to be recreated.
 */
import type { EventEmitter } from 'node:events';
import { closeSync, fchmodSync, fstatSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname } from 'node:path';
import { PRIVATE_FILE_MODE, ensurePrivateDir } from '../internal/private-fs.js';

/** The part of SonicBoom (as pino-roll returns it) the audit file uses. */
interface RollStream extends EventEmitter {
  readonly file: string;
  readonly fd: number;
  readonly destroyed: boolean;
  write(data: string): boolean;
  reopen(file?: string): void;
  end(): void;
  destroy(): void;
}

interface RollOptions {
  readonly file: string;
  readonly size: string;
  readonly frequency: 'daily';
  readonly dateFormat: string;
  readonly sync: true;
  readonly mode: number;
}

const require = createRequire(import.meta.url);
const buildRoll = require('pino-roll') as (options: RollOptions) => Promise<RollStream>;

/** Date part of rotated file names (local time), as date-fns formats it. */
export const FILE_DATE_FORMAT = 'yyyy-MM-dd';

/** How the files of `logFile` are named: `<dir>/<prefix>.<yyyy-MM-dd>.<n>.<extension>` (pino-roll's scheme). */
export interface RollNaming {
  /** Directory of the files. */
  readonly dir: string;
  /** File name before the date. */
  readonly prefix: string;
  /** Extension, without the dot (`log` when `logFile` has none). */
  readonly extension: string;
}

/** Splits `logFile` the way pino-roll does. */
export function rollNaming(logFile: string): RollNaming {
  const name = basename(logFile);
  const dot = name.lastIndexOf('.');
  return dot === -1 ? { dir: dirname(logFile), prefix: name, extension: 'log' } : { dir: dirname(logFile), prefix: name.slice(0, dot), extension: name.slice(dot + 1) };
}

/** What the audit file reports to its owner. */
export interface AuditFileHooks {
  /** A write failed; `first` is true for the first failure after a success. */
  writeFailed(error: Error, first: boolean): void;
  /** A write succeeded after failures: everything held was written. */
  recovered(failedAttempts: number): void;
  /** The file was rotated. */
  rotated(from: string, to: string): void;
  /** Opening the next file or closing the previous one failed; writing goes on in the current one. */
  rotateFailed(error: Error): void;
}

/** The active audit file and its rotation. */
export class AuditFile {
  readonly #dest: RollStream;
  readonly #hooks: AuditFileHooks;
  #current: string;
  #failing = false;
  #failedAttempts = 0;
  #heldChars = 0;
  #heldEvents = 0;
  #inAttempt = false;
  #attemptError: Error | undefined;
  /** Open errors SonicBoom will emit again on the next tick for a reopen that already threw. */
  #echoedOpenErrors = 0;
  #writtenEvents = 0;
  #rotations = 0;

  private constructor(dest: RollStream, hooks: AuditFileHooks) {
    this.#dest = dest;
    this.#hooks = hooks;
    this.#current = dest.file;
    dest.on('error', (err: Error) => this.#onError(err));
    dest.on('ready', () => this.#onReady());
    this.#fixMode();
  }

  /**
   * Opens (or creates) today's file with the highest counter in a 0700
   * directory, rotating at `maxSizeMB`.
   * @throws the filesystem error when the directory or file cannot be created or opened
   */
  static async open(logFile: string, maxSizeMB: number, hooks: AuditFileHooks): Promise<AuditFile> {
    ensurePrivateDir(dirname(logFile));
    const dest = await buildRoll({
      file: logFile,
      size: `${Math.max(1, Math.round(maxSizeMB * 1024))}k`,
      frequency: 'daily',
      dateFormat: FILE_DATE_FORMAT,
      sync: true,
      mode: PRIVATE_FILE_MODE,
    });
    return new AuditFile(dest, hooks);
  }

  /** Path of the file being written. */
  get path(): string {
    return this.#dest.file;
  }

  /** Whether the last write failed (its data is held and retried). */
  get failing(): boolean {
    return this.#failing;
  }

  /** Characters held by failed writes. */
  get heldChars(): number {
    return this.#heldChars;
  }

  /** Events held by failed writes. */
  get heldEvents(): number {
    return this.#heldEvents;
  }

  /** Failed attempts since the last successful write. */
  get failedAttempts(): number {
    return this.#failedAttempts;
  }

  /** Events written. */
  get writtenEvents(): number {
    return this.#writtenEvents;
  }

  /** Rotations so far. */
  get rotations(): number {
    return this.#rotations;
  }

  /**
   * Writes `text` (`count` events) synchronously, after what earlier failed
   * writes hold. Returns whether everything reached the file; never throws.
   */
  write(text: string, count: number): boolean {
    this.#inAttempt = true;
    this.#attemptError = undefined;
    try {
      if (this.#failing) this.#reopen();
      // While failing, write even nothing: SonicBoom then retries what it holds on the descriptor it has.
      if (text.length > 0 || this.#failing) this.#dest.write(text);
    } catch (err) {
      this.#attemptError ??= err as Error;
    } finally {
      this.#inAttempt = false;
    }
    if (this.#attemptError !== undefined) {
      this.#heldChars += text.length;
      this.#heldEvents += count;
      this.#fail(this.#attemptError);
      return false;
    }
    this.#writtenEvents += this.#heldEvents + count;
    this.#heldChars = 0;
    this.#heldEvents = 0;
    if (this.#failing) {
      const attempts = this.#failedAttempts;
      this.#failing = false;
      this.#failedAttempts = 0;
      this.#hooks.recovered(attempts);
    }
    return true;
  }

  /**
   * Closes the file (the caller made its last attempts). Resolves with the
   * events failed writes still held, now lost (0 when all were written).
   */
  async close(): Promise<number> {
    const lost = this.#heldEvents;
    this.#heldEvents = 0;
    this.#heldChars = 0;
    const dest = this.#dest;
    if (dest.destroyed) return lost;
    const closed = new Promise<void>((resolve) => {
      dest.once('close', resolve);
      dest.once('error', () => resolve());
    });
    if (this.#failing) dest.destroy();
    else dest.end();
    await closed;
    return lost;
  }

  /** Reopens the path (recreating the file if it is gone) when it can be opened; SonicBoom then writes what it holds. Never throws. */
  #reopen(): void {
    try {
      closeSync(openSync(this.#dest.file, 'a', PRIVATE_FILE_MODE));
    } catch {
      return; // not openable: try the current descriptor as it is
    }
    try {
      this.#dest.reopen();
    } catch {
      // Lost a race with whoever made the path unopenable: the write that follows decides.
      this.#echoedOpenErrors++;
    }
  }

  #fail(error: Error): void {
    const first = !this.#failing;
    this.#failing = true;
    this.#failedAttempts++;
    this.#hooks.writeFailed(error, first);
  }

  #onError(err: Error): void {
    if (this.#inAttempt) {
      this.#attemptError ??= err;
      return;
    }
    const syscall = (err as NodeJS.ErrnoException).syscall;
    if (syscall === 'open' && this.#echoedOpenErrors > 0) {
      this.#echoedOpenErrors--;
      return;
    }
    // A rotation reopens the next file and writes what SonicBoom holds outside write().
    if (syscall === 'write') this.#fail(err);
    else this.#hooks.rotateFailed(err);
  }

  #onReady(): void {
    this.#fixMode();
    const file = this.#dest.file;
    if (file === this.#current) return;
    const from = this.#current;
    this.#current = file;
    this.#rotations++;
    this.#hooks.rotated(from, file);
  }

  /** Tightens a regular file that others can read to 0600 (one that existed before with a wider mode). */
  #fixMode(): void {
    try {
      const fd = this.#dest.fd;
      const st = fstatSync(fd);
      if (st.isFile() && (st.mode & 0o077) !== 0) fchmodSync(fd, PRIVATE_FILE_MODE);
    } catch {
      // a descriptor being replaced; the next 'ready' checks again
    }
  }
}
