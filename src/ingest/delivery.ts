/**
 * Handing completed reports to `onReport`: one at a time (a report may be
 * hundreds of megabytes once parsed), each report at most once at a time,
 * and a failure leaves it pending for `redeliverPending()`.
 */
import { IngestDeliveryError } from '../errors.js';
import { zstdDecompress } from '../internal/zstd.js';
import { assembleReport, parsePayload } from './assemble.js';
import type { IngestEmitter } from './events.js';
import type { IngestedReport, ReportInfo } from './options.js';
import { ParsedChunkCache } from './parsed-cache.js';
import type { IngestStore, PendingDelivery } from './store.js';

/** JSON values of parsed chunks kept for delivery (about 50 bytes of heap each). */
const PARSED_CACHE_VALUES = 2_000_000;
/** Reports fetched per page when redelivering. */
const REDELIVERY_PAGE = 500;

/** Counters the deliveries update. */
export interface DeliveryCounts {
  delivered: number;
  deliveryFailures: number;
}

/** The delivery queue of one ingest handler. @internal */
export class Deliveries {
  readonly #parsed = new ParsedChunkCache(PARSED_CACHE_VALUES);
  readonly #running = new Map<string, Promise<boolean>>();
  #tail: Promise<unknown> = Promise.resolve();
  #stopped = false;

  constructor(
    private readonly store: IngestStore,
    private readonly onReport: (report: IngestedReport, info: ReportInfo) => void | Promise<void>,
    private readonly dropBodies: boolean,
    private readonly emitter: IngestEmitter,
    private readonly counts: DeliveryCounts,
  ) {}

  /** Keeps a chunk parsed on arrival so that delivery need not decompress and parse it again. */
  remember(tenantId: string, reportId: string, index: number, parsed: IngestedReport, values: number): void {
    this.#parsed.set(tenantId, reportId, index, parsed, values);
  }

  /** Queues the delivery of one report; resolves true when `onReport` succeeded. A report already queued shares that attempt. */
  deliver(tenantId: string, reportId: string): Promise<boolean> {
    const key = `${tenantId}\u0000${reportId}`;
    const running = this.#running.get(key);
    if (running !== undefined) return running;
    const attempt = this.#tail.then(() => this.#deliverOnce(tenantId, reportId)).finally(() => this.#running.delete(key));
    this.#tail = attempt;
    this.#running.set(key, attempt);
    return attempt;
  }

  /** Offers every complete, undelivered report again, oldest first; stops early when `stop()` turns true. */
  async redeliverPending(stop: () => boolean): Promise<number> {
    let delivered = 0;
    let after: PendingDelivery | undefined;
    // Keyset paging: a report that fails again is passed over, never fetched twice in one call.
    while (!stop()) {
      const page = await this.store.listPendingDeliveries(REDELIVERY_PAGE, after);
      for (const pending of page) {
        if (stop()) break;
        if (await this.deliver(pending.tenantId, pending.reportId)) delivered++;
      }
      if (page.length < REDELIVERY_PAGE) break;
      after = page[page.length - 1];
    }
    return delivered;
  }

  /**
   * Stops starting deliveries: queued ones resolve false at once and stay
   * pending in the store for the next start. The one running is not interrupted.
   */
  stop(): void {
    this.#stopped = true;
  }

  /** Settles once every queued delivery has. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.#running.values()]);
  }

  async #deliverOnce(tenantId: string, reportId: string): Promise<boolean> {
    if (this.#stopped) return false;
    try {
      const report = await this.store.getReport(tenantId, reportId);
      if (report === undefined || !report.complete || report.delivered) return false;
      let parts = this.#parsed.take(tenantId, reportId, report.totalChunks);
      this.#parsed.drop(tenantId, reportId, report.totalChunks);
      if (parts === undefined) {
        parts = [];
        for (const chunk of await this.store.readChunks(tenantId, reportId)) {
          const body = Buffer.from(chunk.body.buffer, chunk.body.byteOffset, chunk.body.byteLength);
          parts.push(parsePayload(chunk.encoding === 'zstd' ? await zstdDecompress(body) : body));
        }
      }
      // Whole reports go through the same assembly, so `onReport` always sees `findings` and `assets` arrays.
      const assembled = assembleReport(parts);
      const info = { tenantId, reportId, totalChunks: report.totalChunks, rawBytes: report.receivedBytes };
      await this.onReport(assembled, info);
      await this.store.markDelivered(tenantId, reportId, { dropBodies: this.dropBodies });
      this.counts.delivered++;
      this.emitter.emit('delivered', info);
      return true;
    } catch (err) {
      this.counts.deliveryFailures++;
      this.emitter.error(new IngestDeliveryError(tenantId, reportId, { cause: err }));
      return false;
    }
  }
}
