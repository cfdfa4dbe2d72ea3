/**
 * The active audit file. Batches are written synchronously, in order. A
 * failed write keeps its data (SonicBoom holds it), marks the file failing,
 * and each later attempt reopens the path first — recreating the file, and
 * its directory, if they are gone — so the file recovers once it is writable
 * again. A file deleted or replaced under the logger is noticed (see
 * `vanished.ts`), recreated, and what was written to the deleted one is
 * written again. A half-written line never glues onto the next one: `close()`
 * cuts a batch that could not be written back to the last whole line, and
 * opening a file whose last line is partial ends that line first.
 */
import { closeSync, fchmodSync, fstatSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { PRIVATE_FILE_MODE, ensurePrivateDir } from '../internal/private-fs.js';
import { cutBack, endBefore, endsInPartialLine, type CleanEnd } from './partial-line.js';
import { guardReopen, openRollStream, type RollStream } from './rotation.js';
import { VanishWatch, type Vanished } from './vanished.js';

/** The active file was found deleted or replaced, and recreated. */
export interface VanishedReport {
  /** `deleted`, or `replaced` (moved away, or another file at its path). */
  readonly how: Vanished;
  /** Events written to the deleted file since the last check, written again to the new one. */
  readonly rewrittenEvents: number;
}

/** What the audit file reports to its owner. */
export interface AuditFileHooks {
  /** A write failed (or the file was found gone); `first` is true for the first failure after a success. */
  writeFailed(error: Error, first: boolean): void;
  /** A write succeeded after failures: everything held was written. `vanished` when the failure was a file found gone. */
  recovered(failedAttempts: number, vanished: VanishedReport | undefined): void;
  /** The file was rotated. */
  rotated(from: string, to: string): void;
  /** Opening the next file or closing the previous one failed; writing goes on in the current one. */
  rotateFailed(error: Error): void;
}

/** The active audit file, its failures and its rotation. */
export class AuditFile {
  readonly #dest: RollStream;
  readonly #hooks: AuditFileHooks;
  /** The file the descriptor writes (SonicBoom's `file` names the next one after a failed rotation). */
  #current: string;
  #failing = false;
  #failedAttempts = 0;
  #heldChars = 0;
  #heldEvents = 0;
  #inAttempt = false;
  #attemptError: Error | undefined;
  /** Bytes that reached the file during the current attempt. */
  #attemptBytes = 0;
  /** Errors already dealt with, that SonicBoom emits again on the next tick. */
  readonly #handled = new WeakSet<object>();
  #ownReopen = false;
  #writtenEvents = 0;
  #rotations = 0;
  /** Where the file ended before the first failed batch: a close while failing cuts it back there. */
  #cleanEnd: CleanEnd | undefined;
  readonly #watch = new VanishWatch();
  #vanished: VanishedReport | undefined;
  /** Text for a file found gone and not recreated yet: it must not go to the old descriptor. */
  #orphan: { text: string; readonly error: Error } | undefined;

  private constructor(dest: RollStream, hooks: AuditFileHooks) {
    this.#dest = dest;
    this.#hooks = hooks;
    this.#current = dest.file;
    dest.on('error', (err: Error) => this.#onError(err));
    dest.on('ready', () => this.#fixMode());
    dest.on('write', (bytes: number) => {
      if (this.#inAttempt) this.#attemptBytes += bytes;
    });
    guardReopen(dest, {
      reopened: () => this.#reopened(),
      rotateFailed: (error) => this.#hooks.rotateFailed(error),
      ownReopen: () => this.#ownReopen,
      handled: (error) => {
        if (typeof error === 'object' && error !== null) this.#handled.add(error);
      },
    });
    this.#fixMode();
  }

  /**
   * Opens (or creates) today's file with the highest counter in a 0700
   * directory, rotating at `maxSizeMB`. A last line left partial (a disk that
   * was full when an earlier run ended) is ended first, so that it does not
   * swallow this run's first line.
   * @throws the filesystem error when the directory or file cannot be created or opened
   */
  static async open(logFile: string, maxSizeMB: number, hooks: AuditFileHooks): Promise<AuditFile> {
    const file = new AuditFile(await openRollStream(logFile, maxSizeMB), hooks);
    // The partial line becomes a line of its own (that readers skip), instead of swallowing this run's first one.
    if (endsInPartialLine(file.#dest.fd, file.#current)) file.write('\n', 0);
    return file;
  }

  /** Path of the file being written. */
  get path(): string {
    return this.#current;
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
   * writes hold. First checks that the file is still in place when a check
   * is due (once per second) or `verify` is set. Returns whether everything
   * reached the file; never throws.
   */
  write(text: string, count: number, verify = false): boolean {
    if (!this.#failing && (verify || this.#watch.due())) this.#check();
    let payload = text;
    let reopened = false;
    if (this.#orphan !== undefined) {
      const orphan = this.#orphan;
      if (!this.#recreate()) {
        orphan.text += text;
        this.#heldChars += text.length;
        this.#heldEvents += count;
        this.#fail(orphan.error);
        return false;
      }
      this.#orphan = undefined;
      payload = orphan.text + text;
      reopened = true;
    }
    this.#inAttempt = true;
    this.#attemptError = undefined;
    this.#attemptBytes = 0;
    try {
      if (this.#failing && !reopened) this.#reopen();
      // While failing, write even nothing: SonicBoom then retries what it holds on the descriptor it has.
      if (payload.length > 0 || this.#failing) this.#dest.write(payload);
    } catch (err) {
      this.#attemptError ??= err as Error;
    } finally {
      this.#inAttempt = false;
    }
    if (this.#attemptError !== undefined) {
      this.#cleanEnd ??= endBefore(this.#dest.fd, this.#attemptBytes);
      this.#heldChars += text.length;
      this.#heldEvents += count;
      this.#fail(this.#attemptError);
      return false;
    }
    this.#watch.wrote(payload, count);
    this.#writtenEvents += this.#heldEvents + count;
    this.#heldChars = 0;
    this.#heldEvents = 0;
    this.#cleanEnd = undefined;
    if (this.#failing) {
      const attempts = this.#failedAttempts;
      const vanished = this.#vanished;
      this.#failing = false;
      this.#failedAttempts = 0;
      this.#vanished = undefined;
      this.#hooks.recovered(attempts, vanished);
    }
    return true;
  }

  /**
   * Gives up what failed writes hold: cuts the file back to its last whole
   * line, so that a batch written in part leaves no partial line. For a
   * close, or an exit, while failing; never throws.
   */
  discardHeld(): void {
    const end = this.#cleanEnd;
    if (end === undefined || this.#orphan !== undefined || this.#dest.destroyed) return;
    cutBack(this.#dest.fd, end);
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
    if (this.#failing) this.discardHeld();
    const closed = new Promise<void>((resolve) => {
      dest.once('close', resolve);
      dest.once('error', () => resolve());
    });
    if (this.#failing) dest.destroy();
    else dest.end();
    await closed;
    return lost;
  }

  /** When the file is gone: keeps what was written since the last check to write again, and fails until it is recreated. */
  #check(): void {
    const how = this.#watch.inspect(this.#dest.fd, this.#current);
    if (how === undefined) return;
    // Written to a deleted file: lost unless written again. Moved away: still there, under its new name.
    const since = this.#watch.take();
    const rewrite = how === 'deleted' ? since : { text: '', events: 0 };
    const what = how === 'deleted' ? 'was deleted (or its directory)' : 'was moved away or replaced';
    const error = Object.assign(new Error(`the audit file ${this.#current} ${what}; recreating it`), { code: 'ENOENT', syscall: 'fstat', path: this.#current });
    this.#vanished = { how, rewrittenEvents: rewrite.events };
    this.#orphan = { text: rewrite.text, error };
    this.#heldChars += rewrite.text.length;
    this.#fail(error);
  }

  /** Recreates the path (and its directory, 0700) and opens it, 0600. */
  #recreate(): boolean {
    const path = this.#dest.file;
    this.#ownReopen = true;
    try {
      ensurePrivateDir(dirname(path));
      this.#dest.reopen();
      return true;
    } catch {
      return false;
    } finally {
      this.#ownReopen = false;
    }
  }

  /** Reopens the path (recreating it and its directory if gone) when it can be opened; SonicBoom then writes what it holds. Never throws. */
  #reopen(): void {
    const path = this.#dest.file;
    try {
      ensurePrivateDir(dirname(path));
      closeSync(openSync(path, 'a', PRIVATE_FILE_MODE));
    } catch {
      return; // not openable: try the current descriptor as it is
    }
    this.#ownReopen = true;
    try {
      this.#dest.reopen();
    } catch {
      // Lost a race with whoever made the path unopenable: the write that follows decides.
    } finally {
      this.#ownReopen = false;
    }
  }

  #fail(error: Error): void {
    const first = !this.#failing;
    this.#failing = true;
    this.#failedAttempts++;
    this.#hooks.writeFailed(error, first);
  }

  #onError(err: Error): void {
    if (this.#handled.has(err)) return;
    if (this.#inAttempt) {
      this.#attemptError ??= err;
      return;
    }
    // SonicBoom writes what it holds outside write() when a rotation opened the next file.
    if ((err as NodeJS.ErrnoException).syscall === 'write') this.#fail(err);
    else this.#hooks.rotateFailed(err);
  }

  /** A reopen gave the stream a new descriptor: a rotation when the path changed. */
  #reopened(): void {
    this.#watch.reset();
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
