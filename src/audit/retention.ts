/**
 * Age retention of rotated audit files: files named like the logger's
 * (`<prefix>.<date>.<n>.<ext>`, or `<prefix>.<n>.<ext>`), whose last write
 * (mtime) is older than `maxAgeDays`, are deleted — earlier runs' files
 * included, the active file never. Other files in the directory, symlinks
 * and directories are left alone.
 */
import { lstat, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { rollNaming } from './rotation.js';

/** What one retention pass did. */
export interface RetentionResult {
  /** Files deleted, as absolute paths. */
  readonly deleted: readonly string[];
  /** Files that could not be deleted (or examined), with the error. */
  readonly failed: readonly { readonly path: string; readonly error: Error }[];
}

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Matches the names of `logFile`'s rotated files. */
export function rotatedFilePattern(logFile: string): RegExp {
  const { prefix, extension } = rollNaming(logFile);
  return new RegExp(`^${escape(prefix)}\\.(?:\\d{4}-\\d{2}-\\d{2}\\.)?\\d+\\.${escape(extension)}$`);
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
