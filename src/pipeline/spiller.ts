/**
 * Writes reports to the outbox, two at a time, each starting on its own turn
 * of the event loop: a burst of spills (a full queue, a stop) never holds the
 * loop for more than one report's serialisation.
 * @internal
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { ChunkError, InvalidArgumentError } from '../errors.js';
import type { ChunkManager, Report, SubmitReceipt } from '../chunk/index.js';
import type { FailReason } from './events.js';
import type { Item } from './item.js';
import { asError } from './outcome.js';

/** Spills in flight at once. */
export const SPILLS_AT_ONCE = 2;

/** How a spill ended. */
export type SpillResult = { readonly ok: true; readonly receipt: SubmitReceipt } | { readonly ok: false; readonly error: Error; readonly reason: FailReason };

export class Spiller {
  readonly #outbox: ChunkManager;
  readonly #settled: (item: Item, result: SpillResult) => void;
  readonly #onError: (err: unknown) => void;
  #waiting: (Item | undefined)[] = [];
  #head = 0;
  #running = 0;

  /**
   * @param settled - called once per item whose spill ran (not for items that left `spilling` before it began)
   */
  constructor(outbox: ChunkManager, settled: (item: Item, result: SpillResult) => void, onError: (err: unknown) => void) {
    this.#outbox = outbox;
    this.#settled = settled;
    this.#onError = onError;
  }

  /** Queues `item` (in state `spilling`) for the outbox. */
  push(item: Item): void {
    this.#waiting.push(item);
    this.#pump();
  }

  #pump(): void {
    while (this.#running < SPILLS_AT_ONCE && this.#head < this.#waiting.length) {
      const item = this.#waiting[this.#head] as Item;
      this.#waiting[this.#head++] = undefined;
      if (this.#head === this.#waiting.length) {
        this.#waiting = [];
        this.#head = 0;
      }
      if (item.state !== 'spilling') continue; // aborted before its turn
      this.#running++;
      this.#run(item)
        .catch(this.#onError)
        .finally(() => {
          this.#running--;
          this.#pump();
        });
    }
  }

  async #run(item: Item): Promise<void> {
    await yieldToLoop();
    if (item.state !== 'spilling') return;
    item.spillStarted = true;
    const options = { tenantId: item.tenantId, reportId: item.id, priority: item.priority, signal: item.signal };
    let result: SpillResult;
    try {
      const receipt = item.body !== undefined ? await this.#outbox.submitEncodedReport(item.body, options) : await this.#outbox.submitReport(item.report as Report, options);
      result = { ok: true, receipt };
    } catch (err) {
      result = { ok: false, error: asError(err), reason: failReason(err, item) };
    }
    this.#settled(item, result);
  }
}

/** Why a spill failed: the caller aborted, the report cannot be stored at all, or the outbox refused it. */
function failReason(err: unknown, item: Item): FailReason {
  if (item.signal?.aborted === true && err === item.signal.reason) return 'aborted';
  if (err instanceof InvalidArgumentError) return 'invalid';
  if (err instanceof ChunkError && err.code !== 'OUTPOST_REPORT_CONFLICT') return 'invalid';
  return 'spill-failed';
}
