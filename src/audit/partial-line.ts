/**
 * Half-written lines. A write that fails in the middle (a full disk) leaves
 * the start of a line at the end of the file; if it stays there, the next
 * line appended — by this run after a recovery is impossible, or by the next
 * run the same day — is glued onto it, and both are lost to a JSON reader.
 * So the audit file remembers where the file ended before the failed batch
 * and cuts it back there when it gives the batch up, and ends a partial last
 * line before it appends to a file it opens.
 * @internal
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readSync } from 'node:fs';

/** Where a file ended before a failed batch: its inode (a reopen may give a new file) and size. */
export interface CleanEnd {
  readonly ino: number;
  readonly size: number;
}

/** Where the file of `fd` ended before the `written` bytes of a failed batch; `undefined` when it is not a regular file or cannot be examined. */
export function endBefore(fd: number, written: number): CleanEnd | undefined {
  try {
    const st = fstatSync(fd);
    return st.isFile() ? { ino: st.ino, size: Math.max(0, st.size - written) } : undefined;
  } catch {
    return undefined;
  }
}

/** Cuts the file of `fd` back to `end` when it is still that file and longer. Never throws. */
export function cutBack(fd: number, end: CleanEnd): void {
  try {
    const st = fstatSync(fd);
    if (st.ino === end.ino && st.size > end.size) ftruncateSync(fd, end.size);
  } catch {
    // a descriptor being replaced: nothing to cut
  }
}

/** Whether the file at `path` (open as `fd`) is not empty and does not end with `\n`. False when it cannot be read (a device). */
export function endsInPartialLine(fd: number, path: string): boolean {
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return false;
    const reader = openSync(path, 'r');
    try {
      const byte = Buffer.alloc(1);
      return readSync(reader, byte, 0, 1, size - 1) === 1 && byte[0] !== 0x0a;
    } finally {
      closeSync(reader);
    }
  } catch {
    return false;
  }
}
