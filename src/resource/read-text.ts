/**
 * Reads a small text file (procfs, cgroupfs) in as few trips to libuv's
 * thread pool as possible: open, one read, close. `fs/promises.readFile`
 * also `fstat`s the file, and procfs reports a size of 0, so it reads in
 * 64 KiB chunks until an empty read: about twice the work per sample.
 */
import { close, open, read } from 'node:fs';

/** First buffer size: every cgroup and /proc file the sampler reads fits, except `/proc/stat` on hosts with hundreds of CPUs. */
const FIRST_READ_BYTES = 16 * 1024;

/** Reads `path` as Latin-1 text (the files are ASCII). Rejects with the `fs` error, whose `code` says why. */
export function readText(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    open(path, 'r', (openErr, fd) => {
      if (openErr !== null) {
        reject(openErr);
        return;
      }
      const chunks: Buffer[] = [];
      let size = FIRST_READ_BYTES;
      const finish = (err: unknown, text: string | undefined): void => {
        close(fd, () => (err === undefined ? resolve(text as string) : reject(err)));
      };
      const next = (position: number): void => {
        const buffer = Buffer.allocUnsafe(size);
        read(fd, buffer, 0, size, position, (readErr, n) => {
          if (readErr !== null) {
            finish(readErr, undefined);
            return;
          }
          chunks.push(buffer.subarray(0, n));
          // A short read is the end: procfs and cgroupfs hand over the whole file when the buffer holds it.
          if (n < size) {
            finish(undefined, chunks.length === 1 ? (chunks[0] as Buffer).toString('latin1') : Buffer.concat(chunks).toString('latin1'));
            return;
          }
          size *= 4;
          next(position + n);
        });
      };
      next(0);
    });
  });
}
