/**
 * The pipeline's books: every live item in submission order, the count of
 * items in each state, the bytes held, and the waiters of `flush()` and
 * `onIdle()`. One `move()` changes them all together, so the stats invariant
 * holds at every moment.
 * @internal
 */
import type { PipelineStats } from './events.js';
import { holdsBytes, isTerminal, type Item, type ItemState } from './item.js';
import { Waiters } from './waiters.js';

export class Ledger {
  readonly counts: Record<ItemState, number> = { encoding: 0, queued: 0, uploading: 0, retrying: 0, spilling: 0, completed: 0, failed: 0, spilled: 0 };
  /** Compressed bytes held by items queued, uploading or waiting for a retry. */
  queuedBytes = 0;
  #submitted = 0;
  #seq = 0;
  /** Live items in submission order, by tenant and id. */
  readonly #live = new Map<string, Item>();
  readonly #waiters = new Waiters();

  /** Items held in memory: what `queueSize` bounds. */
  get held(): number {
    const c = this.counts;
    return c.encoding + c.queued + c.uploading + c.retrying;
  }

  /** The submission number the next item gets. */
  nextSeq(): number {
    return this.#seq++;
  }

  /** Whether an item with this tenant/id key is live. */
  isLive(key: string): boolean {
    return this.#live.has(key);
  }

  /** The live items, oldest first (a copy: moving them while iterating is safe). */
  liveItems(): Item[] {
    return [...this.#live.values()];
  }

  /** Books a new item, born `encoding`. */
  admit(item: Item): void {
    this.#live.set(item.key, item);
    this.#submitted++;
    this.counts[item.state]++;
  }

  /** Moves `item` to `to`; a terminal `to` drops it from the live items and wakes the waiters it was holding up. */
  move(item: Item, to: ItemState): void {
    const from = item.state;
    const c = this.counts;
    c[from]--;
    c[to]++;
    const bytes = item.bodyBytes ?? 0;
    if (holdsBytes(from)) this.queuedBytes -= bytes;
    if (holdsBytes(to)) this.queuedBytes += bytes;
    item.state = to;
    if (!isTerminal(to)) return;
    this.#live.delete(item.key);
    if (this.#waiters.size > 0) this.#waiters.check(this.#oldestLive());
  }

  /** Resolves when every item submitted so far is terminal. */
  flush(signal: AbortSignal | undefined): Promise<void> {
    return this.#waiters.wait(this.#seq, this.#oldestLive(), signal);
  }

  /** Resolves when no item is live. */
  idle(signal: AbortSignal | undefined): Promise<void> {
    return this.#waiters.wait(Number.POSITIVE_INFINITY, this.#oldestLive(), signal);
  }

  /** The counters, as {@link PipelineStats}. */
  stats(): PipelineStats {
    const c = this.counts;
    return {
      submitted: this.#submitted,
      queued: c.encoding + c.queued,
      inProgress: c.uploading + c.spilling,
      retrying: c.retrying,
      completed: c.completed,
      failed: c.failed,
      spilled: c.spilled,
      queuedBytes: this.queuedBytes,
      uploading: c.uploading,
      spilling: c.spilling,
      encoding: c.encoding,
    };
  }

  /** Submission number of the oldest live item; +∞ when none is live. */
  #oldestLive(): number {
    const first = this.#live.values().next();
    return first.done === true ? Number.POSITIVE_INFINITY : first.value.seq;
  }
}
