/**
 * Disk usage of the filesystem holding the data directory, as `df` counts
 * it: blocks reserved for root are not space the agent can use.
 */
import { stat, statfs } from 'node:fs/promises';
import { InvalidOptionError, ResourceReadError } from '../errors.js';

/** Disk usage of one filesystem, in bytes. */
export interface DiskUsage {
  /** Bytes in use. */
  readonly usedBytes: number;
  /** Bytes in use plus bytes available to unprivileged users. */
  readonly totalBytes: number;
}

/** Reads the usage of the filesystem holding `dir` (one asynchronous `statfs`). */
export async function readDisk(dir: string): Promise<DiskUsage> {
  let s;
  try {
    s = await statfs(dir);
  } catch (err) {
    throw new ResourceReadError('disk', `Cannot statfs ${dir}`, { path: dir, cause: err });
  }
  const usedBytes = (s.blocks - s.bfree) * s.bsize;
  return { usedBytes, totalBytes: usedBytes + s.bavail * s.bsize };
}

/**
 * Checks that `dir` is an existing directory (at `start()`): a typo or an
 * unmounted volume would otherwise leave the disk signal unknown for ever.
 * @throws {@link InvalidOptionError} naming `dataDir` and why
 */
export async function checkDataDir(dir: string): Promise<void> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(dir)).isDirectory();
  } catch (err) {
    throw new InvalidOptionError(`Expected \`dataDir\` to be an existing directory, got ${JSON.stringify(dir)} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  if (!isDirectory) throw new InvalidOptionError(`Expected \`dataDir\` to be an existing directory, got ${JSON.stringify(dir)} (not a directory)`);
}
