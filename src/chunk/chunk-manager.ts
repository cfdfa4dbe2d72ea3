/**
 * `ChunkManager`: the durable outbox. Accepts reports, stores them as
 * compressed chunks in SQLite, uploads them in the background and keeps the
 * disk bounded.
 */
import { randomUUID } from 'node:crypto';
import { ChunkError, DiskFullError, IllegalStateError, InvalidArgumentError, StorageFullError, StoreError, type OutpostError } from '../errors.js';
import { isValidId } from '../internal/protocol.js';
import { deleteReports, dropOldestPending, expirePending, freeUploadedBodies, vacuum, type CleanupLayerResult, type CleanupResult, type CleanupTrigger, type DroppedReport, type Expired } from './cleanup.js';
import { checkWholeBody, encodeWhole } from './whole.js';
import type { WholeReportBody } from './whole-body.js';
import { encodeReport, needsChunking as decideChunking, wholeReport, type EncodedReport, type Report, type SplitSettings } from './encode.js';
import { ChunkEmitter, type ChunkManagerEvents, type ChunkManagerStats, type ChunkStateStats, type OutboxReport } from './events.js';
import { resolveChunkManagerOptions, type ChunkManagerOptions, type ResolvedChunkManagerOptions } from './options.js';
import { ChunkStore, type InsertOutcome, type ReportHeader } from './store.js';
import { digestStream, stageStream, type ChunkSizes, type StreamItem } from './stream.js';
import { UploadLoop } from './upload-loop.js';

/** Lifecycle state of a {@link ChunkManager}. */
export type ChunkManagerState = 'idle' | 'running' | 'closing' | 'closed';

/** Per-call options of {@link ChunkManager.submitReport}. */
export interface SubmitOptions {
  /** Tenant the report belongs to: 1–256 characters of `[A-Za-z0-9_-]`. Required. */
  readonly tenantId: string;
  /** Report id (same rules); a random one is generated when absent. */
  readonly reportId?: string | undefined;
  /** Upload priority: higher goes first; equal priorities go oldest first. An integer. @default 0 */
  readonly priority?: number | undefined;
  /** Aborts the submission before it is stored; once stored, it is not undone. */
  readonly signal?: AbortSignal | undefined;
}

/** The header of a streamed report ({@link ChunkManager.submitReportStream}). */
export interface StreamSubmitOptions extends SubmitOptions {
  /** The report's metadata, sent in chunk 0. */
  readonly metadata?: unknown;
}

/** One entry of {@link ChunkManager.submitEncodedReports}. */
export interface EncodedSubmission {
  /** A body made by {@link encodeWholeReport} (or `ChunkManager.encodeWholeReport()`) in this process. */
  readonly body: WholeReportBody;
  /** As for {@link ChunkManager.submitReport}. */
  readonly options: SubmitOptions;
}

/** What a stored submission returns. */
export interface SubmitReceipt {
  /** The report id (generated when none was given). */
  readonly reportId: string;
  /** True when split into chunks (`POST /v1/chunks`), false when sent whole (`POST /v1/reports`). */
  readonly chunked: boolean;
  /** Chunks stored (1 when sent whole). */
  readonly totalChunks: number;
  /** Uncompressed JSON bytes of all chunks. */
  readonly rawBytes: number;
  /** Compressed bytes stored. */
  readonly storedBytes: number;
  /** True when the same report (same id, same content) was already stored: nothing was written. */
  readonly duplicate: boolean;
}

const MiB = 1024 * 1024;

/** The manager's open database, for tests that need to reach below the API (`max_page_count`). @internal */
export let storeOf: (manager: ChunkManager) => ChunkStore | undefined;
/** Room reserved per chunk row besides its body (row, index entries), in bytes. */
const ROW_OVERHEAD_BYTES = 512;

/**
 * The durable outbox for reports. Once `submitReport()` resolves, the report
 * reaches the server at least once — across crashes, restarts and outages —
 * unless `retentionHours` or the storage policy gives it up, and then a
 * `chunk-dead` or `storage-full` event says so.
 *
 * @example
 * ```ts
 * await using outbox = new ChunkManager({ uploader, databasePath: '/var/lib/agent/chunks.db' });
 * await outbox.start();
 * const receipt = await outbox.submitReport({ metadata, findings, assets }, { tenantId: 'acme' });
 * outbox.on('chunk-dead', (e) => log.error('gave up on a chunk', e));
 * ```
 */
export class ChunkManager {
  /** The resolved options. */
  readonly options: ResolvedChunkManagerOptions;
  readonly #emitter = new ChunkEmitter();
  readonly #settings: SplitSettings;
  #state: ChunkManagerState = 'idle';
  #store: ChunkStore | undefined;
  #loop: UploadLoop | undefined;
  #cleanupTimer: NodeJS.Timeout | undefined;
  #cleanupChain: Promise<unknown> = Promise.resolve();
  readonly #submissions = new Set<Promise<unknown>>();
  readonly #closeAbort = new AbortController();
  #closing: Promise<void> | undefined;

  static {
    storeOf = (manager) => manager.#store;
  }

  /**
   * @throws {@link InvalidOptionError} when an option is missing or out of range
   */
  constructor(options: ChunkManagerOptions) {
    this.options = resolveChunkManagerOptions(options);
    this.#settings = this.options;
  }

  /** `'idle'` before `start()`, `'running'`, `'closing'`, `'closed'`. */
  get state(): ChunkManagerState {
    return this.#state;
  }

  /**
   * Opens the database, puts chunks a crash left `uploading` back to
   * `pending`, deletes unfinished streamed submissions, and starts uploading
   * and the periodic cleanup. Idempotent while running.
   * @throws {@link StoreError} when the database cannot be opened or has a newer schema
   */
  async start(): Promise<void> {
    if (this.#state === 'running') return;
    if (this.#state !== 'idle') throw new IllegalStateError('start', this.#state);
    let store: ChunkStore;
    try {
      store = new ChunkStore(this.options.databasePath);
    } catch (err) {
      if (err instanceof StoreError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new StoreError('OUTPOST_STORE_FAILED', `Cannot open the outbox database ${this.options.databasePath}: ${message}`, { cause: err });
    }
    try {
      store.guard('recover after a restart', () =>
        store.db
          .transaction(() => {
            store.s.deleteStaging.run();
            store.s.resetUploading.run();
          })
          .immediate(),
      );
    } catch (err) {
      store.db.close();
      throw err;
    }
    this.#store = store;
    this.#loop = new UploadLoop({ store, options: this.options, emitter: this.#emitter, onReportDeleted: (layer) => this.#afterReportDeleted(layer) });
    this.#state = 'running';
    // Give up what expired while the process was down before uploading anything, so no chunk is
    // sent only to be declared dead a moment later. Failures become `error` events, not a failed start.
    await this.#background(() => this.cleanup('interval'));
    this.#loop.start();
    const minutes = this.options.cleanupIntervalMinutes;
    if (minutes > 0) {
      this.#cleanupTimer = setInterval(() => void this.#background(() => this.cleanup('interval')), minutes * 60_000);
      this.#cleanupTimer.unref();
    }
  }

  /** Subscribes to an event. */
  on<K extends keyof ChunkManagerEvents>(event: K, listener: (...args: ChunkManagerEvents[K]) => void): this {
    this.#emitter.on(event, listener);
    return this;
  }

  /** Subscribes to the next occurrence of an event. */
  once<K extends keyof ChunkManagerEvents>(event: K, listener: (...args: ChunkManagerEvents[K]) => void): this {
    this.#emitter.once(event, listener);
    return this;
  }

  /** Unsubscribes a listener. */
  off<K extends keyof ChunkManagerEvents>(event: K, listener: (...args: ChunkManagerEvents[K]) => void): this {
    this.#emitter.off(event, listener);
    return this;
  }

  /**
   * Whether `report` would be split into chunks: it has at least
   * `minFindingsForChunking` findings or `minAssetsForChunking` assets, or its
   * JSON is at least `minSizeForChunkingBytes` or over `maxChunkSizeBytes`.
   * @throws {@link InvalidArgumentError} when `report` is not a report
   */
  needsChunking(report: Report): boolean {
    return decideChunking(report, this.#settings);
  }

  /**
   * Splits, compresses and stores a report (all its chunks in one
   * transaction), then uploads it in the background. Resolves once it is
   * durably stored. The same id with the same content is a no-op
   * (`duplicate: true`).
   *
   * @throws {@link InvalidArgumentError} for a malformed report, tenant or report id
   * @throws {@link ChunkError} `OUTPOST_CHUNK_ITEM_TOO_LARGE`, `OUTPOST_CHUNK_TOO_MANY`, `OUTPOST_REPORT_CONFLICT`
   * @throws {@link StorageFullError} over `maxStorageMB` with `onStorageFull: 'reject'`; {@link DiskFullError} when the disk is full
   */
  submitReport(report: Report, options: SubmitOptions): Promise<SubmitReceipt> {
    return this.#track(async () => {
      this.#assertRunning('submit a report');
      const header = this.#header(options);
      const encoded = await encodeReport(report, this.#settings, options.signal);
      return this.#storeEncoded(header, encoded, options.signal);
    });
  }

  /**
   * Encodes `report` as one body exactly as this outbox would send it whole,
   * or resolves `undefined` when this outbox would split it into chunks. The
   * upload pipeline uses it so that a report it sends and a report it later
   * spills here are the same bytes under the same id (the server then answers
   * "duplicate", not "conflict"). Needs no running outbox.
   * @throws {@link InvalidArgumentError} when the report cannot be serialised
   */
  encodeWholeReport(report: Report): Promise<WholeReportBody | undefined> {
    return encodeWhole(report, this.#settings, this.options.compressionLevel);
  }

  /**
   * Stores a report already encoded by {@link ChunkManager.encodeWholeReport}
   * (or {@link encodeWholeReport}) as a whole report, without serialising it
   * again. Same guarantees and errors as {@link ChunkManager.submitReport}.
   * @throws {@link InvalidArgumentError} when `body` was not made by `encodeWholeReport()` in this process, or this outbox would split the report
   */
  submitEncodedReport(body: WholeReportBody, options: SubmitOptions): Promise<SubmitReceipt> {
    return this.#track(async () => {
      this.#assertRunning('submit a report');
      const header = this.#header(options);
      checkWholeBody(body, this.#settings);
      return this.#storeEncoded(header, wholeReport(body), options.signal);
    });
  }

  /**
   * Stores several reports encoded by {@link encodeWholeReport}, in one
   * transaction: one commit to disk for all of them instead of one each (an
   * upload pipeline that stops with a full queue spills this way). Each entry
   * settles on its own: its receipt, or the error that refused it alone (a bad
   * body or id, a conflict, an aborted signal). When the batch does not fit
   * under `maxStorageMB`, the entries are stored one by one and only those
   * that do not fit get {@link StorageFullError}. A full disk or a closed
   * outbox is every remaining entry's error.
   * @throws {@link InvalidArgumentError} when `entries` is not an array; {@link IllegalStateError} when not running
   */
  submitEncodedReports(entries: readonly EncodedSubmission[]): Promise<(SubmitReceipt | Error)[]> {
    return this.#track(async () => {
      this.#assertRunning('submit reports');
      if (!Array.isArray(entries)) throw new InvalidArgumentError('submitEncodedReports() takes an array of { body, options }');
      const results = new Array<SubmitReceipt | Error>(entries.length);
      const ready: { readonly i: number; readonly header: ReportHeader; readonly encoded: EncodedReport; readonly signal: AbortSignal | undefined }[] = [];
      entries.forEach((entry, i) => {
        try {
          const header = this.#header(entry?.options);
          checkWholeBody(entry.body, this.#settings);
          ready.push({ i, header, encoded: wholeReport(entry.body), signal: entry.options.signal });
        } catch (err) {
          results[i] = asError(err);
        }
      });
      const fail = (err: unknown, which: readonly { readonly i: number }[]): (SubmitReceipt | Error)[] => {
        for (const r of which) results[r.i] = asError(err);
        return results;
      };
      try {
        const store = this.#open('submit reports', true);
        let required = 0;
        for (const r of ready) {
          const existing = store.s.reportById.get(r.header.tenantId, r.header.reportId);
          if (existing === undefined || existing.state === 'dead') required += (r.encoded.chunks[0]?.body.byteLength ?? 0) + ROW_OVERHEAD_BYTES;
        }
        if (required > 0) {
          try {
            await this.#ensureRoom(required);
          } catch (err) {
            if (!(err instanceof StorageFullError) || err instanceof DiskFullError || ready.length < 2) throw err;
            // No room for the whole batch: store what fits one by one (each asks for its own room, and a
            // duplicate needs none), so the cap refuses only the entries that do not fit.
            for (const r of ready) {
              try {
                results[r.i] = await this.#storeEncoded(r.header, r.encoded, r.signal);
              } catch (one) {
                results[r.i] = asError(one);
              }
            }
            return results;
          }
        }
        const live = ready.filter((r) => {
          if (r.signal?.aborted !== true) return true;
          results[r.i] = asError(r.signal.reason);
          return false;
        });
        const inserts = live.map((r) => ({ header: r.header, kind: r.encoded.kind, digest: r.encoded.digest, chunks: r.encoded.chunks }));
        const outcomes = this.#open('submit reports', true).insertReports(inserts, this.options.now());
        live.forEach((r, k) => {
          const outcome = outcomes[k] as InsertOutcome | ChunkError;
          if (outcome instanceof ChunkError) results[r.i] = outcome;
          else {
            const c = r.encoded.chunks[0] as EncodedReport['chunks'][number];
            results[r.i] = this.#stored(r.header, outcome, 'whole', [{ index: 0, rawBytes: c.rawBytes, storedBytes: c.body.byteLength }], c.rawBytes);
          }
        });
        return results;
      } catch (err) {
        return fail(err, ready.filter((r) => results[r.i] === undefined));
      }
    });
  }

  async #storeEncoded(header: ReportHeader, encoded: EncodedReport, signal: AbortSignal | undefined): Promise<SubmitReceipt> {
    signal?.throwIfAborted();
    // A submission accepted while running is stored even if close() began meanwhile: close() waits for it.
    const store = this.#open('submit a report', true);
    // The same report again is a no-op: answer before asking for room.
    const existing = store.s.reportById.get(header.tenantId, header.reportId);
    if (existing === undefined || existing.state === 'dead') await this.#ensureRoom(encoded.chunks.reduce((n, c) => n + c.body.byteLength + ROW_OVERHEAD_BYTES, 0));
    signal?.throwIfAborted();
    const outcome = store.insertReport(header, encoded.kind, encoded.digest, encoded.chunks, this.options.now());
    const sizes = encoded.chunks.map((c) => ({ index: c.index, rawBytes: c.rawBytes, storedBytes: c.body.byteLength }));
    return this.#stored(header, outcome, encoded.kind, sizes, encoded.rawBytes);
  }

  /**
   * Stores a report that arrives as a stream of `{ finding }` and `{ asset }`
   * items, for reports too large for memory. Chunks are written as they fill
   * (at most a few are in memory) and the report becomes visible to the
   * uploader at once when the stream ends; if the stream throws, is aborted
   * or the process dies first, nothing of it is uploaded.
   *
   * @throws the stream's own error; the same errors as {@link submitReport}
   */
  submitReportStream(options: StreamSubmitOptions, items: AsyncIterable<StreamItem> | Iterable<StreamItem>): Promise<SubmitReceipt> {
    return this.#track(async () => {
      const header = this.#header(options);
      if (items === null || typeof items !== 'object' || (!(Symbol.asyncIterator in items) && !(Symbol.iterator in items))) {
        throw new InvalidArgumentError('`items` must be an iterable or async iterable of { finding } and { asset } items');
      }
      this.#assertRunning('submit a report');
      const store = this.#store as ChunkStore;
      const signal = options.signal === undefined ? this.#closeAbort.signal : AbortSignal.any([options.signal, this.#closeAbort.signal]);
      const existing = store.s.reportById.get(header.tenantId, header.reportId);
      if (existing !== undefined && existing.state !== 'dead') {
        // A resubmission: only the digest decides (duplicate or conflict), so store nothing and ask for no room.
        const digest = await digestStream(options.metadata, items, signal);
        // Judge against the row as it was when the stream began: the stream is consumed, so even if the
        // report completed and was deleted meanwhile, there is nothing left to store.
        if (existing.content_sha256 === digest) return this.#stored(header, { outcome: 'duplicate', existing }, existing.kind, [], existing.raw_bytes);
        throw new ChunkError('OUTPOST_REPORT_CONFLICT', `Report \`${header.reportId}\` of tenant \`${header.tenantId}\` is already stored with different content; use a new report id`);
      }
      const key = store.beginStaging(header, this.options.now());
      try {
        const staged = await stageStream(
          { store, key, header, metadata: options.metadata, settings: this.#settings, signal, now: this.options.now, ensureRoom: (bytes) => this.#ensureRoom(bytes + ROW_OVERHEAD_BYTES) },
          items,
        );
        signal.throwIfAborted();
        const outcome = store.finalize(key, header, staged.kind, staged.total, staged.digest, staged.rawBytes, staged.storedBytes, this.options.now());
        return this.#stored(header, outcome, staged.kind, staged.chunks, staged.rawBytes);
      } catch (err) {
        try {
          store.discard(key);
        } catch (discardErr) {
          this.#emitter.error(store.wrap('discard a failed stream', discardErr) as OutpostError);
        }
        throw err;
      }
    });
  }

  /** A stored report and its chunks, or `undefined` (never stored, or deleted after completing). */
  getReport(tenantId: string, reportId: string): OutboxReport | undefined {
    const store = this.#open('read a report');
    const r = store.s.reportById.get(tenantId, reportId);
    if (r === undefined || r.state === 'staging') return undefined;
    return {
      tenantId: r.tenant_id,
      reportId: r.report_id,
      state: r.state,
      chunked: r.kind === 'chunked',
      totalChunks: r.total_chunks,
      priority: r.priority,
      rawBytes: r.raw_bytes,
      storedBytes: r.stored_bytes,
      contentSha256: r.content_sha256 ?? '',
      createdAt: r.created_at,
      deadReason: r.dead_reason ?? undefined,
      chunks: store.s.chunksOf.all(r.id).map((c) => ({
        index: c.idx,
        state: c.state as 'pending' | 'uploading' | 'uploaded' | 'dead',
        attempts: c.attempts,
        rawBytes: c.raw_bytes,
        storedBytes: c.stored_bytes,
        hasBody: c.has_body === 1,
        nextAttemptAt: c.next_attempt_at,
        lastError: c.last_error ?? undefined,
      })),
    };
  }

  /** Chunks and reports by state, and bytes live, used and on disk. */
  stats(): ChunkManagerStats {
    const store = this.#open('read stats');
    const empty: ChunkStateStats = { count: 0, rawBytes: 0, liveBytes: 0 };
    const chunks: Record<string, ChunkStateStats> = { pending: empty, uploading: empty, uploaded: empty, dead: empty };
    let liveBytes = 0;
    for (const row of store.s.chunkStats.all()) {
      if (row.state === 'staging') continue;
      chunks[row.state] = { count: row.n, rawBytes: row.raw, liveBytes: row.live };
      liveBytes += row.live;
    }
    const reports: Record<string, number> = { staging: 0, pending: 0, completed: 0, dead: 0 };
    for (const row of store.s.reportStats.all()) reports[row.state] = row.n;
    const size = store.size();
    return {
      chunks: chunks as ChunkManagerStats['chunks'],
      reports: reports as ChunkManagerStats['reports'],
      liveBytes,
      onDiskBytes: size.onDiskBytes,
      usedBytes: size.usedBytes,
      limitBytes: Math.floor(this.options.maxStorageMB * MiB),
      uploadsInFlight: this.#loop?.inFlight ?? 0,
    };
  }

  /**
   * Resolves when no chunk is pending or uploading (every stored chunk is
   * uploaded or dead). Chunks waiting on a long backoff keep it waiting: pass
   * a `signal` to bound the wait.
   */
  async flush(options: { readonly signal?: AbortSignal | undefined } = {}): Promise<void> {
    this.#open('flush');
    await (this.#loop as UploadLoop).whenIdle(options.signal);
  }

  /**
   * Runs the retention cleanup now: gives up pending reports older than
   * `retentionHours` (`chunk-dead`, reason `expired`), deletes completed and
   * dead reports and frees uploaded bodies older than it, then — with
   * `aggressiveCleanup` — the storage layers if over `maxStorageMB`. Ends with
   * an incremental vacuum and a WAL checkpoint. Emits `cleanup`.
   */
  cleanup(trigger: CleanupTrigger = 'manual'): Promise<CleanupResult> {
    return this.#serial(async () => {
      const store = this.#open('clean up');
      const now = this.options.now();
      const cutoff = now - this.options.retentionHours * 3_600_000;
      const run = new CleanupRun(store.size().onDiskBytes);
      run.add(await expirePending(store, cutoff, now));
      run.add(await deleteReports(store, 'completed', cutoff));
      run.add(await deleteReports(store, 'dead', cutoff));
      run.add(freeUploadedBodies(store, cutoff));
      const limit = Math.floor(this.options.maxStorageMB * MiB);
      if (this.options.aggressiveCleanup && (store.size().usedBytes > limit || store.size().onDiskBytes > limit)) await this.#pressureLayers(run, limit);
      return this.#finishCleanup(run, trigger);
    });
  }

  /**
   * Frees space until the database uses at most `bytes` (pages in use):
   * uploaded data first, then dead and expired reports, then — only with
   * `onStorageFull: 'drop-oldest'` — the oldest pending reports. Shrinks the
   * file and emits `cleanup`.
   */
  cleanupToSize(bytes: number): Promise<CleanupResult> {
    if (!Number.isSafeInteger(bytes) || bytes < 0) return Promise.reject(new InvalidArgumentError(`\`bytes\` must be a non-negative integer, got ${String(bytes)}`));
    return this.#serial(async () => {
      const store = this.#open('clean up');
      const run = new CleanupRun(store.size().onDiskBytes);
      await this.#pressureLayers(run, bytes);
      return this.#finishCleanup(run, 'manual');
    });
  }

  /**
   * Stops accepting reports; lets `submitReport()` calls already in progress
   * finish storing (they resolve as usual); aborts streamed submissions in
   * progress (they reject and keep nothing); aborts uploads in flight (their
   * chunks stay pending for the next start, no attempt counted); rejects
   * pending `flush()` calls; and closes the database. Idempotent; leaves no
   * timer or handle behind.
   */
  close(): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    const wasRunning = this.#state === 'running';
    this.#state = 'closing';
    this.#closeAbort.abort(new IllegalStateError('submit a report', 'closing'));
    if (this.#cleanupTimer !== undefined) clearInterval(this.#cleanupTimer);
    this.#cleanupTimer = undefined;
    await Promise.allSettled([...this.#submissions]);
    await this.#loop?.stop();
    await this.#cleanupChain.catch(() => undefined);
    if (wasRunning) this.#store?.close();
    this.#store = undefined;
    this.#state = 'closed';
  }

  #header(options: SubmitOptions): ReportHeader {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('Submit options must be an object with `tenantId`');
    if (!isValidId(options.tenantId)) throw new InvalidArgumentError(`\`tenantId\` must be 1–256 characters of [A-Za-z0-9_-], got ${JSON.stringify(options.tenantId)}`);
    const reportId = options.reportId ?? randomUUID();
    if (!isValidId(reportId)) throw new InvalidArgumentError(`\`reportId\` must be 1–256 characters of [A-Za-z0-9_-], got ${JSON.stringify(reportId)}`);
    const priority = options.priority ?? 0;
    if (!Number.isSafeInteger(priority)) throw new InvalidArgumentError(`\`priority\` must be an integer, got ${String(priority)}`);
    options.signal?.throwIfAborted();
    return { tenantId: options.tenantId, reportId, priority };
  }

  #stored(header: ReportHeader, outcome: InsertOutcome, kind: 'whole' | 'chunked', chunks: readonly ChunkSizes[], rawBytes: number): SubmitReceipt {
    if (outcome.outcome === 'duplicate') {
      const e = outcome.existing;
      return { reportId: e.report_id, chunked: e.kind === 'chunked', totalChunks: e.total_chunks, rawBytes: e.raw_bytes, storedBytes: e.stored_bytes, duplicate: true };
    }
    let storedBytes = 0;
    for (const c of chunks) {
      storedBytes += c.storedBytes;
      this.#emitter.emit('chunk-created', { tenantId: header.tenantId, reportId: header.reportId, index: c.index, total: chunks.length, rawBytes: c.rawBytes, storedBytes: c.storedBytes });
    }
    // Start uploading on the next turn: the submission resolves without waiting on the claim's commit.
    const loop = this.#loop;
    setImmediate(() => loop?.wake());
    return { reportId: header.reportId, chunked: kind === 'chunked', totalChunks: chunks.length, rawBytes, storedBytes, duplicate: false };
  }

  /** Makes room for `required` more bytes, or throws {@link StorageFullError}. */
  async #ensureRoom(required: number): Promise<void> {
    const store = this.#store as ChunkStore;
    const limit = Math.floor(this.options.maxStorageMB * MiB);
    let used = store.size().usedBytes;
    if (used + required <= limit) return;
    let dropped: readonly DroppedReport[] = [];
    // `aggressiveCleanup: false` leaves data to the retention cleanup; 'drop-oldest' is an explicit
    // choice to make room, and it always deletes uploaded, dead and expired data before a pending report.
    if (required <= limit && (this.options.aggressiveCleanup || this.options.onStorageFull === 'drop-oldest')) {
      const result = await this.#serial(async () => {
        const run = new CleanupRun(store.size().onDiskBytes);
        await this.#pressureLayers(run, limit - required);
        return this.#finishCleanup(run, 'storage');
      });
      dropped = result.dropped;
      used = store.size().usedBytes;
    }
    const rejected = used + required > limit;
    if (rejected || dropped.length > 0) {
      this.#emitter.emit('storage-full', { policy: this.options.onStorageFull, usedBytes: used, limitBytes: limit, requiredBytes: required, rejected, dropped });
    }
    if (rejected) {
      throw new StorageFullError(
        `The outbox is full: it uses ${used} bytes, the report needs ${required} more, and \`maxStorageMB\` allows ${limit}; nothing stored was touched`,
        { storedBytes: used, limitBytes: limit },
      );
    }
  }

  /** The storage layers, each only while still over `target`. */
  async #pressureLayers(run: CleanupRun, target: number): Promise<void> {
    const store = this.#store as ChunkStore;
    const over = (): boolean => store.size().usedBytes > target;
    if (over()) {
      run.add(freeUploadedBodies(store));
      run.add(await deleteReports(store, 'completed', undefined));
    }
    if (over()) {
      run.add(await expirePending(store, this.options.now() - this.options.retentionHours * 3_600_000, this.options.now()));
      run.add(await deleteReports(store, 'dead', undefined));
    }
    if (this.options.onStorageFull !== 'drop-oldest') return;
    while (over()) {
      const layer = dropOldestPending(store, (this.#loop as UploadLoop).busyReports);
      if (layer === undefined) break;
      run.add(layer);
      await Promise.resolve();
    }
  }

  async #finishCleanup(run: CleanupRun, trigger: CleanupTrigger): Promise<CleanupResult> {
    const store = this.#store as ChunkStore;
    for (const e of run.expired) {
      this.#emitter.emit('chunk-dead', { tenantId: e.tenant_id, reportId: e.report_id, index: e.idx, total: e.total_chunks, reason: e.reason });
    }
    await vacuum(store);
    this.#loop?.wake(); // chunks may have gone: a flush() waiting on them resolves
    const result: CleanupResult = { trigger, layers: run.layers, onDiskBytesBefore: run.before, onDiskBytesAfter: store.size().onDiskBytes, dropped: run.dropped };
    if (run.layers.length > 0 || trigger === 'manual') this.#emitter.emit('cleanup', result);
    return result;
  }

  /** After a completed report's rows were deleted: shrink the file in the background and report the layer. */
  #afterReportDeleted(layer: CleanupLayerResult): void {
    void this.#background(() =>
      this.#serial(async () => {
        const store = this.#open('clean up');
        const before = store.size().onDiskBytes;
        await vacuum(store);
        this.#emitter.emit('cleanup', { trigger: 'report-complete', layers: [layer], onDiskBytesBefore: before, onDiskBytesAfter: store.size().onDiskBytes, dropped: [] });
      }),
    );
  }

  /** Runs cleanups one at a time. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#cleanupChain.then(fn, fn);
    this.#cleanupChain = next.catch(() => undefined);
    return next.then(
      (value) => value,
      (err: unknown) => {
        throw this.#store?.wrap('clean up', err) ?? err;
      },
    );
  }

  /** Background work never throws into the host: failures become `error` events. */
  async #background(fn: () => Promise<unknown>): Promise<void> {
    if (this.#state !== 'running') return;
    try {
      await fn();
    } catch (err) {
      if (this.#state !== 'running') return;
      this.#emitter.error(err instanceof Error && 'code' in err ? (err as OutpostError) : (this.#store?.wrap('clean up', err) as OutpostError));
    }
  }

  #track<T>(fn: () => Promise<T>): Promise<T> {
    const p = fn();
    this.#submissions.add(p);
    const forget = (): void => void this.#submissions.delete(p);
    p.then(forget, forget);
    return p;
  }

  #assertRunning(operation: string): void {
    if (this.#state !== 'running') throw new IllegalStateError(operation, this.#state);
  }

  #open(operation: string, closingToo = false): ChunkStore {
    const ok = this.#state === 'running' || (closingToo && this.#state === 'closing');
    if (!ok || this.#store === undefined) throw new IllegalStateError(operation, this.#state);
    return this.#store;
  }
}

/** Accumulates the layers of one cleanup run. */
class CleanupRun {
  readonly layers: CleanupLayerResult[] = [];
  readonly expired: Expired[] = [];
  readonly dropped: DroppedReport[] = [];
  constructor(readonly before: number) {}
  add(layer: { result: CleanupLayerResult; expired: readonly Expired[]; dropped: readonly DroppedReport[] }): void {
    if (layer.result.chunks === 0 && layer.result.reports === 0) return;
    const same = this.layers.findIndex((l) => l.layer === layer.result.layer);
    if (same >= 0) {
      const l = this.layers[same] as CleanupLayerResult;
      this.layers[same] = { layer: l.layer, chunks: l.chunks + layer.result.chunks, reports: l.reports + layer.result.reports, bytesFreed: l.bytesFreed + layer.result.bytesFreed };
    } else this.layers.push(layer.result);
    this.expired.push(...layer.expired);
    this.dropped.push(...layer.dropped);
  }
}

/** `err` as an `Error` (a signal's reason may be anything). */
function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
