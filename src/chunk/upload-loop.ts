/**
 * The upload loop: claims ready chunks (priority, then age) up to
 * `maxConcurrentUploads`, uploads each through the tenant's {@link Uploader},
 * and records the outcome. Waiting is timer-driven — one wake-up timer at the
 * earliest `next_attempt_at` — never a polling loop.
 * @internal
 */
import { IllegalStateError, OutpostError, StoreError, UploadError, UploadNetworkError } from '../errors.js';
import { MAX_TIMER_MS } from '../internal/validate.js';
import type { UploadResult } from '../transport/index.js';
import type { CleanupLayerResult } from './cleanup.js';
import type { ChunkEmitter } from './events.js';
import type { ResolvedChunkManagerOptions } from './options.js';
import type { ChunkRef, ChunkStore, ClaimedChunk } from './store.js';

/** What the loop needs from the manager. */
export interface UploadLoopContext {
  readonly store: ChunkStore;
  readonly options: ResolvedChunkManagerOptions;
  readonly emitter: ChunkEmitter;
  /** Called after a report completed and (with `cleanupOnReportComplete`) its rows were deleted, with what was deleted. */
  readonly onReportDeleted: (layer: CleanupLayerResult) => void;
}

/** First delay after a database failure in the loop before it tries again, in ms; doubles up to {@link STORE_RETRY_MAX_MS}. */
const STORE_RETRY_MS = 1_000;
const STORE_RETRY_MAX_MS = 60_000;

/** Runs uploads until {@link stop}. */
export class UploadLoop {
  readonly #ctx: UploadLoopContext;
  readonly #abort = new AbortController();
  readonly #inFlight = new Map<number, Promise<void>>();
  /** Reports with a chunk in flight (cleanup must not drop them). */
  readonly busyReports = new Map<number, number>();
  #slotsHeld = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  readonly #delays = new Set<NodeJS.Timeout>();
  #running = false;
  /** Acknowledged uploads whose database write failed: retried as writes, never re-uploaded. */
  readonly #unrecorded = new Map<number, { chunk: ClaimedChunk; result: UploadResult }>();
  #recoveryTimer: NodeJS.Timeout | undefined;
  #recoveryDelayMs = STORE_RETRY_MS;
  #idleWaiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];

  constructor(ctx: UploadLoopContext) {
    this.#ctx = ctx;
  }

  /** Uploads in flight now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Starts claiming chunks. */
  start(): void {
    this.#running = true;
    this.wake();
  }

  /** Looks for ready chunks now (after a submission, a retry timer, a freed slot). */
  wake(): void {
    if (!this.#running) return;
    const { store, options } = this.#ctx;
    try {
      const free = options.maxConcurrentUploads - this.#slotsHeld;
      const now = options.now();
      // The earliest due time comes from a small index; only when something is due does the claim sort the queue.
      const due = store.s.nextAttemptAt.get()?.at ?? null;
      if (free > 0 && due !== null && due <= now) {
        const claimed = store.relaxed(() => store.s.claim.all(now, free));
        for (const chunk of claimed) this.#launch(chunk);
      }
      this.#arm();
      this.#checkIdle();
    } catch (err) {
      this.#storeFailed('claim chunks to upload', err);
    }
  }

  /** Resolves when no chunk is pending or uploading. */
  whenIdle(signal: AbortSignal | undefined): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    signal?.throwIfAborted();
    if (!this.#running) return Promise.reject(new IllegalStateError('flush', 'closing'));
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: (): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err: unknown): void => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      const onAbort = (): void => {
        this.#idleWaiters = this.#idleWaiters.filter((w) => w !== waiter);
        this.#refTimers();
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#idleWaiters.push(waiter);
      this.#refTimers();
    });
  }

  /** Aborts uploads in flight (their chunks go back to `pending`, no attempt counted) and clears every timer. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#abort.abort(new IllegalStateError('upload', 'closing'));
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const t of this.#delays) clearTimeout(t);
    this.#delays.clear();
    this.#recoveryTimer = undefined;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w.reject(new IllegalStateError('flush', 'closing'));
    await Promise.allSettled([...this.#inFlight.values()]);
  }

  #isIdle(): boolean {
    return this.#inFlight.size === 0 && (this.#ctx.store.s.outstanding.get()?.n ?? 0) === 0;
  }

  #checkIdle(): void {
    if (this.#idleWaiters.length === 0) return;
    let idle: boolean;
    try {
      idle = this.#isIdle();
    } catch {
      return; // the database is failing: the recovery wakes us again
    }
    if (!idle) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w.resolve();
  }

  /** Timers hold the process open only while someone waits in `flush()`. */
  #refTimers(): void {
    const keep = this.#idleWaiters.length > 0;
    for (const t of [this.#timer, ...this.#delays]) {
      if (t === undefined) continue;
      if (keep) t.ref();
      else t.unref();
    }
  }

  #arm(): void {
    if (this.#slotsHeld >= this.#ctx.options.maxConcurrentUploads) return; // a finishing upload wakes us
    const at = this.#ctx.store.s.nextAttemptAt.get()?.at ?? null;
    if (at === null) return;
    this.#armAt(at);
  }

  #armAt(at: number): void {
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - this.#ctx.options.now()));
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      this.wake();
    }, delay);
    this.#refTimers();
  }

  #launch(chunk: ClaimedChunk): void {
    this.#slotsHeld++;
    this.busyReports.set(chunk.report_key, (this.busyReports.get(chunk.report_key) ?? 0) + 1);
    const run = this.#upload(chunk).finally(() => {
      this.#inFlight.delete(chunk.rowid);
      const n = (this.busyReports.get(chunk.report_key) ?? 1) - 1;
      if (n === 0) this.busyReports.delete(chunk.report_key);
      else this.busyReports.set(chunk.report_key, n);
      this.#releaseSlot();
    });
    this.#inFlight.set(chunk.rowid, run);
  }

  /** Frees the worker's slot after `uploadDelayMs`. */
  #releaseSlot(): void {
    const delay = this.#ctx.options.uploadDelayMs;
    if (delay === 0 || !this.#running) {
      this.#slotsHeld--;
      this.wake();
      this.#checkIdle();
      return;
    }
    const timer = setTimeout(() => {
      this.#delays.delete(timer);
      this.#slotsHeld--;
      this.wake();
    }, delay);
    this.#delays.add(timer);
    this.#refTimers();
    this.#checkIdle();
  }

  async #upload(chunk: ClaimedChunk): Promise<void> {
    const { options, store } = this.#ctx;
    const signal = this.#abort.signal;
    let result: UploadResult;
    try {
      if (chunk.body === null) throw new StoreError('OUTPOST_STORE_DATA_MISSING', `Chunk ${chunk.idx} of report \`${chunk.report_id}\` has no body`);
      const uploader = options.uploaderFor(chunk.tenant_id);
      const body = { body: chunk.body, encoding: chunk.encoding, sha256: chunk.sha256, rawBytes: chunk.raw_bytes, reportId: chunk.report_id };
      result =
        chunk.kind === 'whole'
          ? await uploader.uploadReport(body, { signal })
          : await uploader.uploadChunk({ ...body, index: chunk.idx, total: chunk.total_chunks }, { signal });
    } catch (err) {
      if (signal.aborted) {
        this.#storeStep('release an aborted chunk', () => store.s.resetUploadingOne.run(chunk.rowid));
        return;
      }
      this.#failed(chunk, err);
      return;
    }
    try {
      this.#uploaded(chunk, result);
    } catch (err) {
      // The server has it; only our bookkeeping failed (a full disk). Keep the acknowledgement and retry the write.
      this.#unrecorded.set(chunk.rowid, { chunk, result });
      this.#storeFailed('record an upload', err);
    }
  }

  #uploaded(chunk: ClaimedChunk, result: UploadResult): void {
    const { options, emitter, store } = this.#ctx;
    const now = options.now();
    // An acknowledgement lost to a power cut only means the chunk is sent again (a duplicate): no fsync wait.
    const outcome = store.relaxed(() =>
      store.db
        .transaction(() => {
          // The chunk may have died meanwhile (another chunk of its report was refused): nothing to record.
          if (store.s.markUploaded.run(now, chunk.rowid).changes === 0) return 'gone' as const;
          if (options.autoCleanupOnUpload) store.s.freeBody.run(chunk.rowid);
          if ((store.s.notUploaded.get(chunk.report_key)?.n ?? 1) > 0) return undefined;
          store.s.completeReport.run(now, chunk.report_key);
          const report = store.s.reportByKey.get(chunk.report_key);
          let deleted: CleanupLayerResult | undefined;
          if (options.cleanupOnReportComplete) {
            const rows = store.s.reportBodies.get(chunk.report_key);
            store.s.deleteReport.run(chunk.report_key);
            deleted = { layer: 'completed', chunks: rows?.n ?? 0, reports: 1, bytesFreed: rows?.bytes ?? 0 };
          }
          return report === undefined ? undefined : { report, deleted };
        })
        .immediate(),
    );
    if (outcome === 'gone') return;
    const ref = { tenantId: chunk.tenant_id, reportId: chunk.report_id, index: chunk.idx, total: chunk.total_chunks };
    emitter.emit('chunk-uploaded', { ...ref, attempts: chunk.attempts + 1, status: result.status, duplicate: result.duplicate, storedBytes: chunk.stored_bytes });
    if (options.autoCleanupOnUpload && emitter.has('cleanup')) {
      const size = store.size().onDiskBytes;
      emitter.emit('cleanup', {
        trigger: 'upload',
        layers: [{ layer: 'uploaded', chunks: 1, reports: 0, bytesFreed: chunk.stored_bytes }],
        onDiskBytesBefore: size,
        onDiskBytesAfter: size,
        dropped: [],
      });
    }
    if (outcome !== undefined) {
      const r = outcome.report;
      emitter.emit('report-completed', { tenantId: r.tenant_id, reportId: r.report_id, totalChunks: r.total_chunks, rawBytes: r.raw_bytes, durationMs: Math.max(0, now - r.created_at) });
      if (outcome.deleted !== undefined) this.#ctx.onReportDeleted(outcome.deleted);
    }
  }

  #failed(chunk: ClaimedChunk, err: unknown): void {
    const { options, emitter, store } = this.#ctx;
    const policy = options.retryPolicy;
    const now = options.now();
    const ref = { tenantId: chunk.tenant_id, reportId: chunk.report_id, index: chunk.idx, total: chunk.total_chunks };
    let error: UploadError;
    let forceLong = false;
    if (err instanceof UploadError) {
      error = err;
      if (!err.retryable && (err.status === 401 || err.status === 403)) {
        // A token or permission problem is the operator's to fix, not the report's fault: keep the
        // chunk on the long backoff (no hot loop) and say so, instead of losing it.
        forceLong = true;
        emitter.error(err);
      } else if (!err.retryable) {
        this.#storeStep('record a dead chunk', () => this.#kill(chunk, 'rejected', err, now));
        return;
      }
    } else if (policy.isRetryable(err)) {
      error = new UploadNetworkError(`Upload failed: ${(err as Error).message}`, { retryable: true, cause: err });
    } else {
      // Not an upload failure: a bug in a custom Uploader, an uploader closed too early. Report it and keep
      // the chunk on the long backoff: only the server's refusal or retentionHours gives data up.
      const message = err instanceof Error ? err.message : String(err);
      emitter.error(err instanceof OutpostError ? err : new OutpostError('OUTPOST_UPLOADER_FAILED', `The Uploader threw something other than an UploadError: ${message}`, { cause: err }));
      error = new UploadNetworkError(`The Uploader failed: ${message}`, { retryable: true, cause: err });
      forceLong = true;
    }
    const attempt = chunk.attempts + 1;
    const expiresAt = chunk.created_at + options.retentionHours * 3_600_000;
    if (now >= expiresAt) {
      this.#storeStep('record an expired chunk', () => this.#kill(chunk, 'expired', error, now));
      return;
    }
    const phase = attempt <= options.maxRetries && !forceLong ? 'quick' : 'long';
    let delayMs: number;
    if (phase === 'quick') delayMs = policy.delayMs(attempt, error);
    else if (error.retryAfterMs !== undefined) delayMs = policy.delayMs(attempt, error);
    else delayMs = Math.floor(policy.options.maxRetryDelayMs * (0.5 + 0.5 * policy.options.random()));
    const at = Math.min(now + delayMs, expiresAt);
    let recorded = false;
    this.#storeStep('schedule a retry', () => {
      recorded = store.s.markRetry.run(attempt, at, `${error.code}: ${error.message}`.slice(0, 1000), chunk.rowid).changes > 0;
    });
    if (recorded) emitter.emit('chunk-retry', { ...ref, attempt, delayMs: at - now, phase, error });
  }

  /** Marks the report dead: the failing chunk with `reason`, its other unsent chunks with `report-dead`. */
  #kill(chunk: ClaimedChunk, reason: 'rejected' | 'expired', error: OutpostError, now: number): void {
    const { store, emitter } = this.#ctx;
    const others: (ChunkRef & { rowid: number })[] | undefined = store.db
      .transaction(() => {
        // A late refusal for a chunk whose report died or was deleted meanwhile changes nothing.
        if (store.s.chunkState.get(chunk.rowid)?.state !== 'uploading') return undefined;
        const rows = store.s.deadChunks.all(chunk.report_key);
        store.s.killChunks.run(`${error.code}: ${error.message}`.slice(0, 1000), chunk.report_key);
        store.s.killReport.run(reason === 'expired' ? 'expired' : `chunk ${chunk.idx} rejected: ${error.code}`, now, chunk.report_key);
        return rows;
      })
      .immediate();
    if (others === undefined) return;
    emitter.emit('chunk-dead', { tenantId: chunk.tenant_id, reportId: chunk.report_id, index: chunk.idx, total: chunk.total_chunks, reason, error });
    for (const o of others) {
      if (o.rowid === chunk.rowid) continue;
      emitter.emit('chunk-dead', { tenantId: o.tenant_id, reportId: o.report_id, index: o.idx, total: o.total_chunks, reason: 'report-dead', error });
    }
  }

  /** Runs a bookkeeping step; a database failure is reported and the chunk goes back to pending later. */
  #storeStep(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#storeFailed(what, err);
    }
  }

  /** Reports a database failure once per outage and arms the recovery with a growing delay. */
  #storeFailed(what: string, err: unknown): void {
    if (this.#recoveryTimer === undefined) this.#ctx.emitter.error(asOutpostError(this.#ctx.store.wrap(what, err), what));
    this.#armRecovery();
  }

  #armRecovery(): void {
    if (this.#recoveryTimer !== undefined || !this.#running) return;
    const timer = setTimeout(() => {
      this.#delays.delete(timer);
      this.#recoveryTimer = undefined;
      if (!this.#running) return;
      try {
        for (const [rowid, { chunk, result }] of this.#unrecorded) {
          this.#uploaded(chunk, result);
          this.#unrecorded.delete(rowid);
        }
        // Rows a failed step left `uploading` (not in flight, not acknowledged) go back to pending.
        for (const { rowid } of this.#ctx.store.s.uploadingRows.all()) {
          if (!this.#inFlight.has(rowid) && !this.#unrecorded.has(rowid)) this.#ctx.store.s.resetUploadingOne.run(rowid);
        }
        this.#recoveryDelayMs = STORE_RETRY_MS;
        this.wake();
      } catch {
        this.#recoveryDelayMs = Math.min(STORE_RETRY_MAX_MS, this.#recoveryDelayMs * 2);
        this.#armRecovery();
      }
    }, this.#recoveryDelayMs);
    this.#recoveryTimer = timer;
    this.#delays.add(timer);
    this.#refTimers();
  }
}

function asOutpostError(err: unknown, what: string): OutpostError {
  if (err instanceof OutpostError) return err;
  return new StoreError('OUTPOST_STORE_FAILED', `Could not ${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
