/**
 * Files holding user data are created 0600 in directories 0700.
 * @internal
 */
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

/** Mode for directories Outpost creates. */
export const PRIVATE_DIR_MODE = 0o700;
/** Mode for files Outpost creates. */
export const PRIVATE_FILE_MODE = 0o600;

/**
 * Creates `dir` (and missing parents) as 0700. A directory that already exists
 * is left as it is: it belongs to the user.
 */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
}

/**
 * Creates `file` as 0600 inside a private directory when it does not exist
 * yet; tightens an existing file that is readable by others to 0600.
 */
export function ensurePrivateFile(file: string): void {
  ensurePrivateDir(dirname(file));
  closeSync(openSync(file, 'a', PRIVATE_FILE_MODE));
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) chmodSync(file, PRIVATE_FILE_MODE);
}
