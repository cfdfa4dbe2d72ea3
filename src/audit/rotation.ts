/**
 * Rotation: pino-roll's SonicBoom stream in synchronous mode (so a write has
 * reached the kernel when it returns, and the exit handler can write the last
 * batch), rotated by size and by local day, files created 0600 — and a guard
 * around the stream's `reopen()`, so that a rotation whose next file cannot be
 * opened leaves the stream as it was: still writing, and known to be writing,
 * the file it had open.
 */
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { basename, dirname } from 'node:path';
import { PRIVATE_FILE_MODE, ensurePrivateDir } from '../internal/private-fs.js';

/** The part of SonicBoom (as pino-roll returns it) the audit file uses. */
export interface RollStream extends EventEmitter {
  /** The path the stream opens on `reopen()`: after a failed rotation, the file it could not open. */
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

/**
 * Opens (or creates) today's file with the highest counter in a 0700
 * directory, rotating at `maxSizeMB` (whole KiB, at least 1).
 * @throws the filesystem error when the directory or file cannot be created or opened
 */
export async function openRollStream(logFile: string, maxSizeMB: number): Promise<RollStream> {
  ensurePrivateDir(dirname(logFile));
  return buildRoll({
    file: logFile,
    size: `${Math.max(1, Math.round(maxSizeMB * 1024))}k`,
    frequency: 'daily',
    dateFormat: FILE_DATE_FORMAT,
    sync: true,
    mode: PRIVATE_FILE_MODE,
  });
}

/** What the guard reports. */
export interface ReopenGuardHooks {
  /** A reopen opened a new descriptor (a rotation, or the same path again); `previousFd` is closed on the next tick. */
  reopened(previousFd: number): void;
  /** A rotation (a reopen the audit file did not ask for) failed; the stream goes on with the descriptor it had. */
  rotateFailed(error: Error): void;
  /** Whether the audit file itself is reopening (it handles the error then): the error is rethrown. */
  ownReopen(): boolean;
  /** Remembers an error SonicBoom will emit again on the next tick, so that it is not reported twice. */
  handled(error: unknown): void;
}

/**
 * Wraps `stream.reopen()`. SonicBoom points `file` at the new path before it
 * tries to open it, and registers a `once('ready')` that closes the old
 * descriptor; when the open throws, that listener stays, and a later
 * successful reopen would fire it too — closing the same descriptor twice, the
 * second time perhaps one the application has opened since. The guard removes
 * the listeners a failed reopen left, reports the failure once, and tells the
 * audit file about a successful one at once (not a tick later).
 */
export function guardReopen(stream: RollStream, hooks: ReopenGuardHooks): void {
  const original = stream.reopen;
  const reopen = (file?: string): void => {
    const listeners = new Set(stream.rawListeners('ready'));
    const fd = stream.fd;
    try {
      original.call(stream, file);
    } catch (err) {
      for (const listener of stream.rawListeners('ready')) if (!listeners.has(listener)) stream.removeListener('ready', listener as (...args: unknown[]) => void);
      hooks.handled(err); // pino-roll emits it, and SonicBoom emits it again on the next tick
      if (hooks.ownReopen()) throw err;
      hooks.rotateFailed(err as Error);
      return;
    }
    if (stream.fd !== fd) hooks.reopened(fd);
  };
  Object.defineProperty(stream, 'reopen', { value: reopen, configurable: true, writable: true });
}
