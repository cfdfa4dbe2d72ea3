/**
 * `createIngestHandler`: the server side of protocol v1 as a `(req, res)`
 * handler for `node:http` (and Express, Fastify's raw mode, etc.).
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { IngestDeliveryError, IngestError, ListenerError, OutpostError, type IngestErrorCode } from '../errors.js';
import { PATH_CHUNKS, PATH_REPORTS, isValidId } from '../internal/protocol.js';
import { zstdDecompress } from '../internal/zstd.js';
import { assembleReport, parsePayload } from './assemble.js';
import { readBody } from './body.js';
import { decodeBody } from './decode.js';
import { resolveIngestOptions, type IngestHandlerOptions, type IngestedReport, type ResolvedIngestOptions } from './options.js';
import { bearerToken, parseUploadHeaders, type UploadHeaders } from './request.js';
import { ParsedChunkCache } from './parsed-cache.js';
import { SqliteIngestStore } from './sqlite-store.js';
import type { IngestStore, PendingDelivery, PruneResult, PutChunkOutcome, StoredReport } from './store.js';

/** A request the handler refused: 401s, validation failures, overload, and so on. */
export interface RejectedEvent {
  /** HTTP status the request was answered with. */
  readonly status: number;
  /** Stable error code sent in the response body. */
  readonly code: IngestErrorCode;
  /** Error message sent in the response body. */
  readonly message: string;
  /** Known once the token was accepted. */
  readonly tenantId: string | undefined;
  /** HTTP method of the request. */
  readonly method: string | undefined;
  /** Request path without the query string, truncated to 2048 characters. */
  readonly path: string;
  /** Client IP address of the socket; `undefined` when the socket is already gone. */
  readonly remoteAddress: string | undefined;
}

/** A chunk (or whole report) accepted. */
export interface StoredEvent {
  /** Tenant the token authenticated as. */
  readonly tenantId: string;
  /** The report the chunk belongs to. */
  readonly reportId: string;
  /** 0-based chunk index; 0 for a whole report. */
  readonly index: number;
  /** Number of chunks in the report; 1 for a whole report. */
  readonly total: number;
  /** Uncompressed size of this chunk's JSON, in bytes. */
  readonly rawBytes: number;
  /** True when the server already had this chunk with the same digest (answered 200, nothing written). */
  readonly duplicate: boolean;
}

/** A report handed to `onReport` successfully. */
export interface DeliveredEvent {
  /** Tenant of the report. */
  readonly tenantId: string;
  /** The report that was delivered. */
  readonly reportId: string;
  /** Number of chunks the report had; 1 for a whole report. */
  readonly totalChunks: number;
  /** Uncompressed size of the report's JSON, in bytes (sum over chunks). */
  readonly rawBytes: number;
}

/** Events of an {@link IngestHandler}. */
export interface IngestEvents {
  /** A chunk or whole report was accepted, newly stored or as a duplicate. */
  stored: [event: StoredEvent];
  /** A request was refused with a 4xx or 5xx answer. */
  rejected: [event: RejectedEvent];
  /** A complete report was passed to `onReport`, which succeeded, and marked delivered in the store. */
  delivered: [event: DeliveredEvent];
  /** Failures the server operator must see: `onReport` threw, the store failed, `authenticate` threw. */
  error: [error: OutpostError];
}

/** Counters of an {@link IngestHandler}. */
export interface IngestStats {
  /** Requests received, including those refused. */
  readonly requests: number;
  /** Chunks and whole reports newly stored. */
  readonly stored: number;
  /** Chunks and whole reports accepted as duplicates of what was already stored. */
  readonly duplicates: number;
  /** Requests refused with an error answer. */
  readonly rejected: number;
  /** Reports marked delivered, after `onReport` succeeded. */
  readonly delivered: number;
  /** Delivery attempts that failed because `onReport`, reassembly or the store threw. */
  readonly deliveryFailures: number;
  /** Requests being processed right now. */
  readonly inFlight: number;
  /** Request body bytes received as sent on the wire (before decompression), counting only bodies read in full. */
  readonly bytesReceived: number;
}

/** The handler: call it with `(req, res)`; it also carries events, stats and `close()`. */
export interface IngestHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  /** Subscribes to a typed event. */
  on<K extends keyof IngestEvents>(event: K, listener: (...args: IngestEvents[K]) => void): IngestHandler;
  /** Unsubscribes. */
  off<K extends keyof IngestEvents>(event: K, listener: (...args: IngestEvents[K]) => void): IngestHandler;
  /** Counters since creation. */
  stats(): IngestStats;
  /** Offers every complete, undelivered report to `onReport` again, oldest first. Resolves with how many were delivered. */
  redeliverPending(): Promise<number>;
  /**
   * Deletes incomplete reports older than `incompleteReportTtlMs` and delivered
   * ones older than `deliveredReportTtlMs`. Runs hourly by itself (on an
   * unref'd timer); call it to run it now.
   */
  prune(): Promise<PruneResult>;
  /** Waits for in-flight requests and deliveries, then closes the store if the handler opened it. Idempotent. */
  close(): Promise<void>;
  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void>;
  /** The store in use. */
  readonly store: IngestStore;
}

const REPORT_PATH = /^\/v1\/reports\/([^/]+)$/;
/** How often abandoned and long-delivered reports are pruned. */
const PRUNE_INTERVAL_MS = 3_600_000;
/** Uncompressed bytes of parsed chunks kept for delivery (their objects take a few times that). */
const PARSED_CACHE_BYTES = 64 * 1024 * 1024;
/** Reports fetched per page when redelivering. */
const REDELIVERY_PAGE = 500;

class Ingest {
  readonly #o: ResolvedIngestOptions;
  readonly store: IngestStore;
  readonly #ownsStore: boolean;
  readonly events = new EventEmitter<IngestEvents>();
  readonly #slots = new Set<string>();
  readonly #delivering = new Map<string, Promise<boolean>>();
  readonly #inFlight = new Set<Promise<void>>();
  #closing: Promise<void> | undefined;
  #counts = { requests: 0, stored: 0, duplicates: 0, rejected: 0, delivered: 0, deliveryFailures: 0, bytesReceived: 0 };
  readonly #pruneTimer: NodeJS.Timeout;
  /** Chunks parsed on arrival, reused by delivery. */
  readonly #parsed = new ParsedChunkCache(PARSED_CACHE_BYTES);

  constructor(options: IngestHandlerOptions) {
    this.#o = resolveIngestOptions(options);
    this.#ownsStore = typeof this.#o.store === 'string';
    this.store = typeof this.#o.store === 'string' ? new SqliteIngestStore(this.#o.store) : this.#o.store;
    this.#pruneTimer = setInterval(() => {
      this.prune().catch((err: unknown) => this.reportError(err));
    }, PRUNE_INTERVAL_MS).unref();
  }

  /** Emits an event; a listener that throws is reported, never allowed to break a response or crash the process. */
  #emit<K extends keyof IngestEvents>(event: K, ...args: IngestEvents[K]): void {
    try {
      (this.events.emit as (name: string, ...values: unknown[]) => boolean).call(this.events, event, ...args);
    } catch (err) {
      process.emitWarning(new ListenerError(`ingest '${event}'`, err));
    }
  }

  stats(): IngestStats {
    return { ...this.#counts, inFlight: this.#inFlight.size };
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.#counts.requests++;
    if (this.#closing !== undefined || this.#inFlight.size >= this.#o.maxConcurrentRequests) {
      const closing = this.#closing !== undefined;
      this.#reject(req, res, undefined, new IngestError(closing ? 'OUTPOST_INGEST_UNAVAILABLE' : 'OUTPOST_INGEST_OVERLOADED',
        closing ? 'Server is shutting down' : 'Too many requests in flight', { retryAfterSeconds: this.#o.retryAfterSeconds }));
      return;
    }
    const work = this.#route(req, res).finally(() => this.#inFlight.delete(work));
    this.#inFlight.add(work);
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let tenantId: string | undefined;
    try {
      const path = pathOf(req);
      const isChunk = path === PATH_CHUNKS;
      const isReport = path === PATH_REPORTS;
      const statusMatch = REPORT_PATH.exec(path);
      if (!isChunk && !isReport && statusMatch === null) throw new IngestError('OUTPOST_INGEST_NOT_FOUND', 'No such endpoint');
      const method = statusMatch === null ? 'POST' : 'GET';
      if (req.method !== method) {
        res.setHeader('allow', method);
        throw new IngestError('OUTPOST_INGEST_METHOD_NOT_ALLOWED', `Use ${method}`);
      }
      tenantId = await this.#authenticate(req);
      if (statusMatch !== null) await this.#status(tenantId, decodeURIComponentSafe(statusMatch[1] ?? ''), res);
      else await this.#upload(tenantId, parseUploadHeaders(req.headers, isReport, this.#o.maxChunksPerReport), req, res);
    } catch (err) {
      this.#reject(req, res, tenantId, this.#requestError(err));
    }
  }

  async #authenticate(req: IncomingMessage): Promise<string> {
    const token = bearerToken(req.headers);
    if (token === undefined) throw new IngestError('OUTPOST_INGEST_UNAUTHORIZED', 'Missing or malformed bearer token');
    let tenantId: string | undefined;
    try {
      tenantId = await this.#o.authenticate(token);
    } catch (err) {
      throw new IngestError('OUTPOST_INGEST_UNAVAILABLE', '`authenticate` failed', { cause: err, retryAfterSeconds: this.#o.retryAfterSeconds });
    }
    if (tenantId === undefined) throw new IngestError('OUTPOST_INGEST_UNAUTHORIZED', 'Invalid bearer token');
    if (!isValidId(tenantId)) {
      throw new IngestError('OUTPOST_INGEST_UNAVAILABLE', '`authenticate` returned an invalid tenant id', { retryAfterSeconds: this.#o.retryAfterSeconds });
    }
    return tenantId;
  }

  async #status(tenantId: string, reportId: string, res: ServerResponse): Promise<void> {
    if (!isValidId(reportId)) throw new IngestError('OUTPOST_INGEST_INVALID_ID', 'Report id must be 1–256 characters of [A-Za-z0-9_-]');
    const report = await this.#storeCall(() => this.store.getReport(tenantId, reportId));
    if (report === undefined) throw new IngestError('OUTPOST_INGEST_NOT_FOUND', 'Unknown report');
    send(res, 200, statusBody(reportId, report));
  }

  async #upload(tenantId: string, h: UploadHeaders, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const o = this.#o;
    if (h.contentLength !== undefined && h.contentLength > o.maxCompressedSizeBytes) {
      throw new IngestError('OUTPOST_INGEST_TOO_LARGE', `Content-Length ${h.contentLength} exceeds ${o.maxCompressedSizeBytes} bytes`);
    }
    const slot = `${tenantId}\u0000${h.reportId}\u0000${h.index}`;
    if (this.#slots.has(slot)) {
      throw new IngestError('OUTPOST_INGEST_IN_PROGRESS', 'The same chunk is being processed; retry shortly', { retryAfterSeconds: o.retryAfterSeconds });
    }
    this.#slots.add(slot);
    try {
      const body = await readBody(req, o.maxCompressedSizeBytes, o.bodyTimeoutMs);
      this.#counts.bytesReceived += body.length;
      const { raw } = await decodeBody(body, h.encoding, h.sha256, o);
      const parsed = parsePayload(raw);
      const result = await this.#storeCall(() =>
        this.store.putChunk({
          tenantId,
          reportId: h.reportId,
          kind: h.whole ? 'whole' : 'chunked',
          index: h.index,
          total: h.total,
          sha256: h.sha256Hex,
          rawBytes: raw.length,
          body,
          encoding: h.encoding,
          maxReportBytes: o.maxReportSizeBytes,
        }),
      );
      if (result.outcome === 'stored') this.#parsed.set(tenantId, h.reportId, h.index, parsed, raw.length);
      this.#answerPut(res, tenantId, h, result.outcome, result.report, raw.length);
      if (result.completedNow) void this.#deliver(tenantId, h.reportId);
    } finally {
      this.#slots.delete(slot);
    }
  }

  #answerPut(res: ServerResponse, tenantId: string, h: UploadHeaders, outcome: PutChunkOutcome, report: StoredReport | undefined, rawBytes: number): void {
    switch (outcome) {
      case 'stored':
      case 'duplicate': {
        const duplicate = outcome === 'duplicate';
        if (duplicate) this.#counts.duplicates++;
        else this.#counts.stored++;
        send(res, duplicate ? 200 : 201, report === undefined ? { reportId: h.reportId } : { ...statusBody(h.reportId, report), index: h.index });
        this.#emit('stored', { tenantId, reportId: h.reportId, index: h.index, total: h.total, rawBytes, duplicate });
        return;
      }
      case 'conflict':
        throw new IngestError('OUTPOST_INGEST_KEY_CONFLICT', 'This chunk was already stored with a different digest');
      case 'kind-mismatch':
        throw new IngestError('OUTPOST_INGEST_KEY_CONFLICT', h.whole ? 'This report id is already used by a chunked report' : 'This report id is already used by a whole report');
      case 'total-mismatch':
        throw new IngestError('OUTPOST_INGEST_TOTAL_MISMATCH', `Outpost-Chunk-Total differs from the report's first chunk (${report?.totalChunks ?? '?'})`);
      case 'too-large':
        throw new IngestError('OUTPOST_INGEST_TOO_LARGE', `Report would exceed ${this.#o.maxReportSizeBytes} uncompressed bytes`);
    }
  }

  async #storeCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw new IngestError('OUTPOST_INGEST_UNAVAILABLE', 'Storage is unavailable', { cause: err, retryAfterSeconds: this.#o.retryAfterSeconds });
    }
  }

  /** A request's failure as the error to answer with; server-side failures (503 UNAVAILABLE) are also emitted as `'error'`. */
  #requestError(err: unknown): IngestError {
    const error =
      err instanceof IngestError ? err : new IngestError('OUTPOST_INGEST_UNAVAILABLE', 'Internal error', { cause: err, retryAfterSeconds: this.#o.retryAfterSeconds });
    if (error.code === 'OUTPOST_INGEST_UNAVAILABLE') this.#emitError(error);
    return error;
  }

  /** Reports a failure of background work (redelivery pass, pruning) as one `'error'` event. */
  reportError(err: unknown): void {
    this.#emitError(err instanceof OutpostError ? err : new IngestError('OUTPOST_INGEST_UNAVAILABLE', 'Background maintenance failed', { cause: err }));
  }

  #emitError(err: OutpostError): void {
    if (this.events.listenerCount('error') > 0) this.#emit('error', err);
    else process.emitWarning(err);
  }

  #reject(req: IncomingMessage, res: ServerResponse, tenantId: string | undefined, err: IngestError): void {
    this.#counts.rejected++;
    // A body we did not read in full is not worth draining: close the connection after answering.
    if (!req.complete) res.setHeader('connection', 'close');
    if (err.retryAfterSeconds !== undefined) res.setHeader('retry-after', String(err.retryAfterSeconds));
    send(res, err.status, { error: { code: err.code, message: err.message } });
    this.#emit('rejected', {
      status: err.status,
      code: err.code,
      message: err.message,
      tenantId,
      method: req.method,
      path: pathOf(req),
      remoteAddress: req.socket.remoteAddress,
    });
  }

  /** Delivers one report; resolves true when `onReport` succeeded. Concurrent calls share one attempt. */
  #deliver(tenantId: string, reportId: string): Promise<boolean> {
    const key = `${tenantId}\u0000${reportId}`;
    const running = this.#delivering.get(key);
    if (running !== undefined) return running;
    const attempt = this.#deliverOnce(tenantId, reportId).finally(() => this.#delivering.delete(key));
    this.#delivering.set(key, attempt);
    return attempt;
  }

  async #deliverOnce(tenantId: string, reportId: string): Promise<boolean> {
    try {
      const report = await this.store.getReport(tenantId, reportId);
      if (report === undefined || !report.complete || report.delivered) return false;
      let parts = this.#parsed.take(tenantId, reportId, report.totalChunks);
      if (parts === undefined) {
        parts = [];
        for (const chunk of await this.store.readChunks(tenantId, reportId)) {
          const raw = chunk.encoding === 'zstd' ? await decompressStored(chunk.body) : Buffer.from(chunk.body);
          parts.push(parsePayload(raw));
        }
      }
      this.#parsed.drop(tenantId, reportId, report.totalChunks);
      // Whole reports go through the same assembly, so `onReport` always sees `findings` and `assets` arrays.
      const assembled = assembleReport(parts);
      await this.#o.onReport(assembled, { tenantId, reportId, totalChunks: report.totalChunks, rawBytes: report.receivedBytes });
      await this.store.markDelivered(tenantId, reportId, { dropBodies: this.#o.dropChunksOnDelivery });
      this.#counts.delivered++;
      this.#emit('delivered', { tenantId, reportId, totalChunks: report.totalChunks, rawBytes: report.receivedBytes });
      return true;
    } catch (err) {
      this.#counts.deliveryFailures++;
      this.#emitError(new IngestDeliveryError(tenantId, reportId, { cause: err }));
      return false;
    }
  }

  async redeliverPending(): Promise<number> {
    let delivered = 0;
    let after: PendingDelivery | undefined;
    // Keyset paging: a report that fails again is passed over, never fetched twice in one call.
    while (this.#closing === undefined) {
      const page = await this.store.listPendingDeliveries(REDELIVERY_PAGE, after);
      for (const pending of page) {
        if (this.#closing !== undefined) break;
        if (await this.#deliver(pending.tenantId, pending.reportId)) delivered++;
      }
      if (page.length < REDELIVERY_PAGE) break;
      after = page[page.length - 1];
    }
    return delivered;
  }

  async prune(): Promise<PruneResult> {
    if (this.#closing !== undefined) return { incompleteReports: 0, deliveredReports: 0 };
    const now = Date.now();
    return this.store.prune({ incompleteBefore: now - this.#o.incompleteReportTtlMs, deliveredBefore: now - this.#o.deliveredReportTtlMs });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#pruneTimer);
      await Promise.allSettled([...this.#inFlight]);
      await Promise.allSettled([...this.#delivering.values()]);
      if (this.#ownsStore) await this.store.close();
    })();
    return this.#closing;
  }
}

function decompressStored(body: Uint8Array): Promise<Buffer> {
  return zstdDecompress(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return (q === -1 ? url : url.slice(0, q)).slice(0, 2048);
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function statusBody(reportId: string, r: StoredReport): Record<string, unknown> {
  return { reportId, totalChunks: r.totalChunks, receivedChunks: r.receivedChunks, complete: r.complete };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.end(text);
}

/**
 * Creates the ingest handler. Mount it before any body parser (it reads the raw body).
 *
 * @throws {@link InvalidOptionError} when an option is invalid
 * @example
 * ```ts
 * const ingest = createIngestHandler({
 *   store: '/var/lib/outpost/ingest.db',
 *   authenticate: staticTokenAuthenticator({ [process.env.AGENT_TOKEN!]: 'tenant-a' }),
 *   onReport: async (report, { tenantId, reportId }) => saveFindings(tenantId, reportId, report),
 * });
 * http.createServer(ingest).listen(8443);
 * ```
 */
export function createIngestHandler(options: IngestHandlerOptions): IngestHandler {
  const ingest = new Ingest(options);
  const handler = ((req: IncomingMessage, res: ServerResponse) => ingest.handle(req, res)) as IngestHandler;
  Object.defineProperties(handler, {
    store: { value: ingest.store, enumerable: true },
    on: { value: (event: keyof IngestEvents, listener: (...args: never[]) => void) => (ingest.events.on(event, listener as never), handler) },
    off: { value: (event: keyof IngestEvents, listener: (...args: never[]) => void) => (ingest.events.off(event, listener as never), handler) },
    stats: { value: () => ingest.stats() },
    redeliverPending: { value: () => ingest.redeliverPending() },
    prune: { value: () => ingest.prune() },
    close: { value: () => ingest.close() },
    [Symbol.asyncDispose]: { value: () => ingest.close() },
  });
  // Reports completed before a crash but never delivered are offered again, once listeners can attach.
  setImmediate(() => {
    ingest.redeliverPending().catch((err: unknown) => ingest.reportError(err));
  }).unref();
  return handler;
}
