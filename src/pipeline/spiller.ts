/**
 * Writes reports to the outbox, two runs at a time, each starting on its own
 * turn of the event loop: a report the outbox must still encode runs alone
 * (so a burst never holds the loop for more than one report's
 * serialisation); reports already encoded go in batches, one transaction
 * each, so a stop with a full queue costs a few commits, not one per report.
 * @internal
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { ChunkError, InvalidArgumentError } from '../errors.js';
import type { ChunkManager, Report, SubmitOptions, SubmitReceipt, WholeReportBody } from '../chunk/index.js';
import type { FailReason } from './events.js';
import type { Item } from './item.js';
import { asError } from './outcome.js';

/** Spill runs in flight at once. */
export const SPILLS_AT_ONCE = 2;
/** Most encoded reports written to the outbox in one transaction. */
export const SPILL_BATCH = 256;
/** Stop adding to a batch past this many body bytes (keeps one transaction short). */
export const SPILL_BATCH_BYTES = 4 * 1024 * 1024;

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
    while (this.#running < SPILLS_AT_ONCE) {
      const batch = this.#take();
      if (batch.length === 0) return;
      this.#running++;
      this.#run(batch)
        .catch(this.#onError)
        .finally(() => {
          this.#running--;
          this.#pump();
        });
    }
  }

  /**
   * The next spills to run: one report the outbox must encode itself, or up to
   * {@link SPILL_BATCH} already encoded (and {@link SPILL_BATCH_BYTES}), which
   * the outbox stores in one transaction.
   */
  #take(): Item[] {
    const batch: Item[] = [];
    let bytes = 0;
    while (this.#head < this.#waiting.length && batch.length < SPILL_BATCH && bytes < SPILL_BATCH_BYTES) {
      const item = this.#waiting[this.#head] as Item;
      if (item.state === 'spilling' && item.body === undefined && batch.length > 0) break; // runs alone, next time
      this.#waiting[this.#head++] = undefined;
      if (item.state !== 'spilling') continue; // aborted before its turn
      batch.push(item);
      if (item.body === undefined) break;
      bytes += item.body.body.byteLength;
    }
    if (this.#head === this.#waiting.length) {
      this.#waiting = [];
      this.#head = 0;
    }
    return batch;
  }

  async #run(batch: readonly Item[]): Promise<void> {
    await yieldToLoop();
    const items = batch.filter((item) => item.state === 'spilling');
    if (items.length === 0) return;
    for (const item of items) item.spillStarted = true;
    const options = (item: Item): SubmitOptions => ({ tenantId: item.tenantId, reportId: item.id, priority: item.priority, signal: item.signal });
    const first = items[0] as Item;
    if (first.body === undefined) {
      try {
        this.#settled(first, { ok: true, receipt: await this.#outbox.submitReport(first.report as Report, options(first)) });
      } catch (err) {
        this.#settled(first, { ok: false, error: asError(err), reason: failReason(err, first) });
      }
      return;
    }
    let results: (SubmitReceipt | Error)[];
    try {
      results = await this.#outbox.submitEncodedReports(items.map((item) => ({ body: item.body as WholeReportBody, options: options(item) })));
    } catch (err) {
      results = items.map(() => asError(err));
    }
    items.forEach((item, k) => {
      const result = results[k];
      try {
        if (result instanceof Error || result === undefined) {
          const error = result ?? new Error('The outbox gave no result for this report');
          this.#settled(item, { ok: false, error, reason: failReason(error, item) });
        } else this.#settled(item, { ok: true, receipt: result });
      } catch (err) {
        this.#onError(err); // one item's trouble must not strand the rest of the batch
      }
    });
  }
}

/** Why a spill failed: the caller aborted, the report cannot be stored at all, or the outbox refused it. */
function failReason(err: unknown, item: Item): FailReason {
  // The caller's abort: its reason as is, or wrapped in an Error when it was not one.
  const reason: unknown = item.signal?.aborted === true ? item.signal.reason : undefined;
  if (item.signal?.aborted === true && (err === reason || (!(reason instanceof Error) && err instanceof Error && err.message === String(reason)))) return 'aborted';
  if (err instanceof InvalidArgumentError) return 'invalid';
  if (err instanceof ChunkError && err.code !== 'OUTPOST_REPORT_CONFLICT') return 'invalid';
  return 'spill-failed';
}
