/**
 * The background encoder: turns submitted reports into compressed bodies off
 * the caller's path, a few at a time (compression runs on libuv's thread
 * pool), and hands them on in submission order.
 * @internal
 */
import { encodeWholeReport, type ChunkManager, type Report, type WholeReportBody } from '../chunk/index.js';
import type { Item } from './item.js';

/** Reports encoded at once: keeps the thread pool busy without holding many bodies. */
export const ENCODE_AHEAD = 4;

/** What encoding an item gave. */
export type Encoded =
  | { readonly kind: 'body'; readonly body: WholeReportBody }
  /** The outbox would split it: it goes there whole. */
  | { readonly kind: 'large' }
  | { readonly kind: 'invalid'; readonly error: unknown };

/** Encodes one report as the outbox would send it whole (its level, its split rule), or with `compressionLevel` when there is no outbox. */
export async function encodeItem(report: Report, outbox: ChunkManager | undefined, compressionLevel: number): Promise<Encoded> {
  try {
    const body = outbox === undefined ? await encodeWholeReport(report, { compressionLevel }) : await outbox.encodeWholeReport(report);
    return body === undefined ? { kind: 'large' } : { kind: 'body', body };
  } catch (error) {
    return { kind: 'invalid', error };
  }
}

/** A FIFO of items waiting for the encoder, with O(1) shift. */
export class Backlog {
  #items: Item[] = [];
  #head = 0;

  /** Whether items may be waiting (some may have been settled meanwhile). */
  get waiting(): boolean {
    return this.#head < this.#items.length;
  }

  push(item: Item): void {
    this.#items.push(item);
  }

  /** The next item still waiting to be encoded (skips those that left meanwhile). */
  next(): Item | undefined {
    while (this.#head < this.#items.length) {
      const item = this.#items[this.#head++] as Item;
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      if (item.state === 'encoding') return item;
    }
    return undefined;
  }

  /** Forgets every item (they were settled elsewhere). */
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}
