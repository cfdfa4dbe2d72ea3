/**
 * Age retention of rotated audit files: files named exactly as the logger
 * names them (`<prefix>.<yyyy-MM-dd>.<n>.<ext>`, a real month and day, a
 * counter from 1), whose last write (mtime) is older than `maxAgeDays`, are
 * deleted — earlier runs' files included, the active file never. Other files
 * in the directory (other names, other prefixes or extensions), symlinks and
 * directories are left alone.
 */
import { lstat, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AuditError } from '../errors.js';
import type { AuditEmitter } from './events.js';
import { rollNaming } from './rotation.js';

/** Period of the age retention. */
export const RETENTION_INTERVAL_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** What one retention pass did. */
export interface RetentionResult {
  /** Files deleted, as absolute paths. */
  readonly deleted: readonly string[];
  /** Files that could not be deleted (or examined), with the error. */
  readonly failed: readonly { readonly path: string; readonly error: Error }[];
}

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Matches the names the logger gives `logFile`'s files, and no other: `<prefix>.<yyyy-MM-dd>.<n>.<ext>`. */
export function rotatedFilePattern(logFile: string): RegExp {
  const { prefix, extension } = rollNaming(logFile);
  const date = '\\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\\d|3[01])';
  return new RegExp(`^${escape(prefix)}\\.${date}\\.[1-9]\\d*\\.${escape(extension)}$`);
}

/**
 * Deletes `logFile`'s rotated files last modified more than `maxAgeMs` before
 * `now`, except the file `isActive` names (asked right before each deletion,
 * so a rotation during the pass is seen).
 * @throws the filesystem error when the directory cannot be listed
 */
export async function deleteExpiredFiles(logFile: string, isActive: (path: string) => boolean, maxAgeMs: number, now: number): Promise<RetentionResult> {
  const { dir } = rollNaming(logFile);
  const pattern = rotatedFilePattern(logFile);
  const deleted: string[] = [];
  const failed: { path: string; error: Error }[] = [];
  for (const name of await readdir(dir)) {
    if (!pattern.test(name)) continue;
    const path = join(dir, name);
    try {
      const st = await lstat(path);
      if (!st.isFile() || now - st.mtimeMs <= maxAgeMs || isActive(path)) continue;
      await unlink(path);
      deleted.push(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') failed.push({ path, error: err as Error });
    }
  }
  return { deleted, failed };
}

/**
 * The retention of one logger: a pass at start, then hourly (an unref'd
 * timer) and on demand, one pass at a time; deletions are counted and
 * emitted, failures emitted as `error` (logging goes on).
 * @internal
 */
export class RetentionSchedule {
  /** Files deleted so far. */
  deletedFiles = 0;
  readonly #logFile: string;
  readonly #maxAgeMs: number;
  readonly #isActive: (path: string) => boolean;
  readonly #emitter: AuditEmitter;
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<readonly string[]> | undefined;

  /**
   * @param logFile - the logger's base path
   * @param maxAgeDays - age of deletion, in days; 0 keeps every file
   * @param isActive - whether a path is the active file (asked right before each deletion)
   * @param emitter - where `files-deleted` and `error` go
   */
  constructor(logFile: string, maxAgeDays: number, isActive: (path: string) => boolean, emitter: AuditEmitter) {
    this.#logFile = logFile;
    this.#maxAgeMs = maxAgeDays * DAY_MS;
    this.#isActive = isActive;
    this.#emitter = emitter;
  }

  /** Starts the hourly timer (unless files are kept forever) and runs a first pass. */
  start(): Promise<readonly string[]> {
    if (this.#maxAgeMs <= 0) return Promise.resolve([]);
    this.#timer ??= setInterval(() => void this.run(), RETENTION_INTERVAL_MS);
    this.#timer.unref();
    return this.run();
  }

  /** Runs a pass now, or joins the one running. Never rejects. */
  run(): Promise<readonly string[]> {
    this.#pass ??= this.#run().finally(() => {
      this.#pass = undefined;
    });
    return this.#pass;
  }

  /** Stops the timer; resolves when no pass is running. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#pass;
  }

  async #run(): Promise<readonly string[]> {
    const logFile = this.#logFile;
    if (this.#maxAgeMs <= 0) return [];
    let result: RetentionResult;
    try {
      result = await deleteExpiredFiles(logFile, this.#isActive, this.#maxAgeMs, Date.now());
    } catch (err) {
      this.#emitter.error(new AuditError('OUTPOST_AUDIT_RETENTION_FAILED', `Cannot list the audit directory of ${logFile}: ${(err as Error).message}`, { cause: err, file: logFile }));
      return [];
    }
    if (result.deleted.length > 0) {
      this.deletedFiles += result.deleted.length;
      this.#emitter.emit('files-deleted', { files: result.deleted });
    }
    const first = result.failed[0];
    if (first !== undefined) {
      const message = `Cannot delete ${result.failed.length} expired audit file(s), the first ${first.path}: ${first.error.message}`;
      this.#emitter.error(new AuditError('OUTPOST_AUDIT_RETENTION_FAILED', message, { cause: first.error, file: first.path }));
    }
    return result.deleted;
  }
}
