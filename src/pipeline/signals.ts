/**
 * Listens to callers' abort signals: one listener per distinct signal,
 * however many live reports share it (a scan-wide signal is common).
 * @internal
 */
import type { Item } from './item.js';

interface Entry {
  readonly items: Set<Item>;
  readonly onAbort: () => void;
}

export class CallerSignals {
  readonly #bySignal = new Map<AbortSignal, Entry>();
  readonly #aborted: (item: Item) => void;

  /** @param aborted - called for each live item of a signal that aborts */
  constructor(aborted: (item: Item) => void) {
    this.#aborted = aborted;
  }

  /** Watches `item.signal` for `item`. */
  add(item: Item): void {
    const signal = item.signal;
    if (signal === undefined) return;
    let entry = this.#bySignal.get(signal);
    if (entry === undefined) {
      const items = new Set<Item>();
      const onAbort = (): void => {
        this.#bySignal.delete(signal);
        for (const each of items) this.#aborted(each);
        items.clear();
      };
      entry = { items, onAbort };
      this.#bySignal.set(signal, entry);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    entry.items.add(item);
  }

  /** Stops watching for `item`; the last item of a signal removes its listener. */
  remove(item: Item): void {
    const signal = item.signal;
    if (signal === undefined) return;
    const entry = this.#bySignal.get(signal);
    if (entry === undefined) return;
    entry.items.delete(item);
    if (entry.items.size > 0) return;
    signal.removeEventListener('abort', entry.onAbort);
    this.#bySignal.delete(signal);
  }
}
