/**
 * The background encoder: turns submitted reports into compressed bodies off
 * the caller's path, one report's serialisation per turn of the event loop,
 * a few compressing at once on libuv's thread pool, handed on in submission
 * order.
 * @internal
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
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

/** A FIFO of items waiting for the encoder, with O(1) shift; it lets go of items as it passes them. */
export class Backlog {
  #items: (Item | undefined)[] = [];
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
      const item = this.#items[this.#head] as Item;
      this.#items[this.#head++] = undefined;
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

/** What the encoder needs from the pipeline. */
export interface EncoderDeps {
  readonly backlog: Backlog;
  readonly outbox: ChunkManager | undefined;
  readonly compressionLevel: number;
  /** Whether a new report may be encoded now (running, and room under the byte bound). */
  readonly canStart: () => boolean;
  /** Called in submission order; the item may have been settled meanwhile. */
  readonly onEncoded: (item: Item, encoded: Encoded) => void;
  readonly onError: (err: unknown) => void;
}

export class Encoder {
  readonly #deps: EncoderDeps;
  #running = false;

  constructor(deps: EncoderDeps) {
    this.#deps = deps;
  }

  /** Starts the loop if there is work it may do and it is not running. */
  kick(): void {
    const d = this.#deps;
    if (this.#running || !d.backlog.waiting || !d.canStart()) return;
    this.#running = true;
    this.#loop()
      .catch(d.onError)
      .finally(() => {
        this.#running = false;
        this.kick(); // a submission may have landed between the loop's last look and now
      });
  }

  async #loop(): Promise<void> {
    const d = this.#deps;
    const window: { item: Item; job: Promise<Encoded> }[] = [];
    for (;;) {
      while (window.length < ENCODE_AHEAD) {
        await yieldToLoop(); // never inside submit(), and one report's serialisation per turn
        if (!d.canStart()) break;
        const item = d.backlog.next();
        if (item === undefined) break;
        window.push({ item, job: encodeItem(item.report as Report, d.outbox, d.compressionLevel) });
      }
      const head = window.shift();
      if (head === undefined) return;
      d.onEncoded(head.item, await head.job);
    }
  }
}
