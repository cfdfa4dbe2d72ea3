/**
 * Noticing that the active file is gone: deleted (by an operator, a tmp
 * cleaner, `rm -rf` of its directory) or moved away and replaced. Writes to a
 * descriptor whose file was deleted succeed, and the lines are lost with it,
 * so the audit file compares its descriptor with its path — at most once per
 * second, on a batch write (and on `flush()`, `close()` and exit) — and keeps
 * the text written since the last check, to write it again into the file it
 * recreates.
 * @internal
 */
import { fstatSync, statSync } from 'node:fs';

/** Longest time between two checks, while batches are written. */
export const VANISH_CHECK_MS = 1_000;
/** Text written since the last check that makes the next batch check at once: bounds what is kept for a rewrite (about 1 MB). */
export const VANISH_CHECK_CHARS = 1 << 20;

/** What happened to the active file: `deleted` (its data is gone with it) or `replaced` (moved away, or another file at its path). */
export type Vanished = 'deleted' | 'replaced';

/** The checks of one audit file, and the text written since the last one. */
export class VanishWatch {
  #lastCheck = Date.now();
  #texts: string[] = [];
  #chars = 0;
  #events = 0;

  /** Whether the next batch should check first. */
  due(): boolean {
    return this.#chars >= VANISH_CHECK_CHARS || Date.now() - this.#lastCheck >= VANISH_CHECK_MS;
  }

  /** Remembers a batch written since the last check (the same string: no copy). */
  wrote(text: string, events: number): void {
    if (text.length === 0) return;
    this.#texts.push(text);
    this.#chars += text.length;
    this.#events += events;
  }

  /** Forgets what was written: a check found the file in place, or a new file is being written. */
  reset(): void {
    this.#texts = [];
    this.#chars = 0;
    this.#events = 0;
    this.#lastCheck = Date.now();
  }

  /**
   * Compares descriptor `fd` with `path`: `deleted` when the descriptor's file
   * has no link left, `replaced` when the path is gone or names another file,
   * `undefined` when it is in place (or when it cannot tell: the descriptor
   * is being replaced, the path cannot be examined).
   */
  inspect(fd: number, path: string): Vanished | undefined {
    let open;
    try {
      open = fstatSync(fd);
    } catch {
      return undefined;
    }
    if (open.nlink === 0) return 'deleted';
    try {
      const st = statSync(path);
      if (st.ino === open.ino && st.dev === open.dev) {
        this.reset();
        return undefined;
      }
      return 'replaced';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return 'replaced'; // moved away: its data lives on under the other name
      this.#lastCheck = Date.now(); // EACCES and the like: try again later
      return undefined;
    }
  }

  /** What was written since the last check (now to be written again), and forgets it. */
  take(): { readonly text: string; readonly events: number } {
    const taken = { text: this.#texts.join(''), events: this.#events };
    this.reset();
    return taken;
  }
}
