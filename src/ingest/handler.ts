/**
 * `createIngestHandler`: the server side of protocol v1 as a `(req, res)`
 * handler for `node:http` (and Express, Fastify's raw mode, etc.): routing,
 * authentication, the upload path, and the handler's lifecycle.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { IllegalStateError, IngestError, OutpostError, type OutpostErrorOptions } from '../errors.js';
import { raceDeadline } from '../internal/abort.js';
import { MAX_TIMER_MS } from '../internal/validate.js';
import { PATH_CHUNKS, PATH_REPORTS, isValidId } from '../internal/protocol.js';
import { parsePayload } from './assemble.js';
import { readBody } from './body.js';
import { decodeBody } from './decode.js';
import { Deliveries } from './delivery.js';
import { IngestEmitter, type IngestEvents, type IngestStats } from './events.js';
import { countJsonValues } from './json-values.js';
import { resolveIngestOptions, type IngestHandlerOptions, type ResolvedIngestOptions } from './options.js';
import { bearerToken, parseUploadHeaders, type UploadHeaders } from './request.js';
import { decodePathSegment, pathOf, send, statusBody } from './respond.js';
import { SqliteIngestStore } from './sqlite-store.js';
import type { IngestStore, PruneResult, PutChunkOutcome, StoredReport } from './store.js';

/** Lifecycle of an {@link IngestHandler}: it serves from creation until `close()`. */
export type IngestHandlerState = 'running' | 'closing' | 'closed';

/** Options of {@link IngestHandler.close}. */
export interface IngestCloseOptions {
  /**
   * Stops waiting for in-flight requests and deliveries (an `onReport` that
   * never settles, say) when it aborts; the store is closed all the same.
   */
  readonly signal?: AbortSignal | undefined;
}

/** The handler: call it with `(req, res)`; it also carries events, stats and `close()`. */
export interface IngestHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  /** `'running'` from creation, then `'closing'` and `'closed'`. */
  readonly state: IngestHandlerState;
  /** Subscribes to a typed event. */
  on<K extends keyof IngestEvents>(event: K, listener: (...args: IngestEvents[K]) => void): IngestHandler;
  /** Unsubscribes. */
  off<K extends keyof IngestEvents>(event: K, listener: (...args: IngestEvents[K]) => void): IngestHandler;
  /** Counters since creation. */
  stats(): IngestStats;
  /**
   * Offers every complete, undelivered report to `onReport` again, oldest
   * first, one at a time. Resolves with how many were delivered.
   * @throws {@link IllegalStateError} after `close()`
   */
  redeliverPending(): Promise<number>;
  /**
   * Deletes incomplete reports older than `incompleteReportTtlMs` and delivered
   * ones older than `deliveredReportTtlMs`. Runs hourly by itself (on an
   * unref'd timer); call it to run it now.
   * @throws {@link IllegalStateError} after `close()`
   */
  prune(): Promise<PruneResult>;
  /**
   * Refuses new requests (503), waits for in-flight requests and deliveries,
   * then closes the store if the handler opened it. Idempotent.
   */
  close(options?: IngestCloseOptions): Promise<void>;
  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void>;
  /** The store in use. */
  readonly store: IngestStore;
}

const REPORT_PATH = /^\/v1\/reports\/([^/]+)$/;
/** How often abandoned and long-delivered reports are pruned. */
const PRUNE_INTERVAL_MS = 3_600_000;

class Ingest {
  readonly #o: ResolvedIngestOptions;
  readonly store: IngestStore;
  readonly #ownsStore: boolean;
  readonly emitter = new IngestEmitter();
  readonly #counts = { requests: 0, stored: 0, duplicates: 0, rejected: 0, delivered: 0, deliveryFailures: 0, bytesReceived: 0 };
  readonly #deliveries: Deliveries;
  /** Chunk slots being processed: a second request for one gets 409. */
  readonly #slots = new Set<string>();
  /** Requests in flight, per tenant (for 429). */
  readonly #perTenant = new Map<string, number>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #pruneTimer: NodeJS.Timeout;
  #state: IngestHandlerState = 'running';
  #closing: Promise<void> | undefined;
  /** Aborted by any `close({ signal })` whose signal fires: stop waiting for in-flight work. */
  readonly #stopWaiting = new AbortController();
  /** Aborted once closed, to drop the listeners on callers' signals. */
  readonly #closedSignal = new AbortController();

  constructor(options: IngestHandlerOptions) {
    this.#o = resolveIngestOptions(options);
    this.#ownsStore = typeof this.#o.store === 'string';
    this.store = typeof this.#o.store === 'string' ? new SqliteIngestStore(this.#o.store) : this.#o.store;
    this.#deliveries = new Deliveries(this.store, this.#o.onReport, this.#o.dropChunksOnDelivery, this.emitter, this.#counts);
    this.#pruneTimer = setInterval(() => {
      if (this.#state === 'running') this.prune().catch((err: unknown) => this.reportError(err));
    }, PRUNE_INTERVAL_MS).unref();
  }

  get state(): IngestHandlerState {
    return this.#state;
  }

  stats(): IngestStats {
    return { ...this.#counts, inFlight: this.#inFlight.size };
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.#counts.requests++;
    if (this.#state !== 'running') {
      this.#reject(req, res, undefined, this.#busy('OUTPOST_INGEST_UNAVAILABLE', 'Server is shutting down'));
      return;
    }
    if (this.#inFlight.size >= this.#o.maxConcurrentRequests) {
      this.#reject(req, res, undefined, this.#busy('OUTPOST_INGEST_OVERLOADED', 'Too many requests in flight'));
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
      const tenant = tenantId;
      await this.#asTenant(tenant, async () => {
        if (statusMatch !== null) await this.#status(tenant, decodePathSegment(statusMatch[1] ?? ''), res);
        else await this.#upload(tenant, parseUploadHeaders(req.headers, isReport, this.#o.maxChunksPerReport), req, res);
      });
    } catch (err) {
      this.#reject(req, res, tenantId, this.#requestError(err));
    }
  }

  async #authenticate(req: IncomingMessage): Promise<string> {
    const token = bearerToken(req.headers);
    if (token === undefined) throw new IngestError('OUTPOST_INGEST_UNAUTHORIZED', 'Missing or malformed bearer token');
    let tenantId: string | undefined;
    try {
      const { authenticate, authenticateTimeoutMs } = this.#o;
      tenantId = await raceDeadline(Promise.resolve().then(() => authenticate(token)), undefined, authenticateTimeoutMs, () => new Error(`authenticate took longer than ${authenticateTimeoutMs} ms`));
    } catch (err) {
      throw this.#busy('OUTPOST_INGEST_UNAVAILABLE', '`authenticate` failed', { cause: err });
    }
    if (tenantId === undefined) throw new IngestError('OUTPOST_INGEST_UNAUTHORIZED', 'Invalid bearer token');
    if (!isValidId(tenantId)) throw this.#busy('OUTPOST_INGEST_UNAVAILABLE', '`authenticate` returned an invalid tenant id');
    return tenantId;
  }

  /** Runs `work` counted against the tenant's share of the server: beyond it, 429. */
  async #asTenant(tenantId: string, work: () => Promise<void>): Promise<void> {
    const current = this.#perTenant.get(tenantId) ?? 0;
    if (current >= this.#o.maxConcurrentRequestsPerTenant) throw this.#busy('OUTPOST_INGEST_RATE_LIMITED', 'Too many requests in flight for this tenant');
    this.#perTenant.set(tenantId, current + 1);
    try {
      await work();
    } finally {
      const left = (this.#perTenant.get(tenantId) ?? 1) - 1;
      if (left === 0) this.#perTenant.delete(tenantId);
      else this.#perTenant.set(tenantId, left);
    }
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
    if (this.#slots.has(slot)) throw this.#busy('OUTPOST_INGEST_IN_PROGRESS', 'The same chunk is being processed; retry shortly');
    this.#slots.add(slot);
    try {
      const body = await readBody(req, o.maxCompressedSizeBytes, o.bodyTimeoutMs);
      this.#counts.bytesReceived += body.length;
      const { raw } = await decodeBody(body, h.encoding, h.sha256, o);
      // What parsing will cost is set by the number of values, not the bytes: count before parsing.
      const values = countJsonValues(raw);
      if (values > o.maxJsonValues) throw new IngestError('OUTPOST_INGEST_TOO_LARGE', `Body holds about ${values} JSON values, over ${o.maxJsonValues}`);
      const parsed = parsePayload(raw);
      // A close that gave up waiting may have closed the store: answer 503 (retry elsewhere or later), store nothing.
      if (this.#state === 'closed') throw this.#busy('OUTPOST_INGEST_UNAVAILABLE', 'Server is shutting down');
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
          values,
          maxReportValues: o.maxJsonValues,
        }),
      );
      if (result.outcome === 'stored') this.#deliveries.remember(tenantId, h.reportId, h.index, parsed, values);
      this.#answerPut(res, tenantId, h, result.outcome, result.report, raw.length);
      if (result.completedNow) void this.#deliveries.deliver(tenantId, h.reportId);
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
        this.emitter.emit('stored', { tenantId, reportId: h.reportId, index: h.index, total: h.total, rawBytes, duplicate });
        return;
      }
      case 'conflict':
        throw new IngestError('OUTPOST_INGEST_KEY_CONFLICT', 'This chunk was already stored with a different digest');
      case 'kind-mismatch':
        throw new IngestError('OUTPOST_INGEST_KEY_CONFLICT', h.whole ? 'This report id is already used by a chunked report' : 'This report id is already used by a whole report');
      case 'total-mismatch':
        throw new IngestError('OUTPOST_INGEST_TOTAL_MISMATCH', `Outpost-Chunk-Total differs from the report's first chunk (${report?.totalChunks ?? '?'})`);
      case 'too-large':
        throw new IngestError('OUTPOST_INGEST_TOO_LARGE', `Report would exceed ${this.#o.maxReportSizeBytes} uncompressed bytes or ${this.#o.maxJsonValues} JSON values`);
      default:
        // A custom store answered something this version does not know: never leave the client hanging.
        throw this.#busy('OUTPOST_INGEST_UNAVAILABLE', 'Storage gave an unknown answer', { cause: new Error(`putChunk outcome ${String(outcome)}`) });
    }
  }

  /** A retry-later error: 409, 429 or 503 with `Retry-After`. */
  #busy(code: 'OUTPOST_INGEST_UNAVAILABLE' | 'OUTPOST_INGEST_OVERLOADED' | 'OUTPOST_INGEST_RATE_LIMITED' | 'OUTPOST_INGEST_IN_PROGRESS', message: string, options: OutpostErrorOptions = {}): IngestError {
    return new IngestError(code, message, { ...options, retryAfterSeconds: this.#o.retryAfterSeconds });
  }

  async #storeCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw this.#busy('OUTPOST_INGEST_UNAVAILABLE', 'Storage is unavailable', { cause: err });
    }
  }

  /** A request's failure as the error to answer with; server-side failures (503 UNAVAILABLE) are also emitted as `'error'`. */
  #requestError(err: unknown): IngestError {
    const error = err instanceof IngestError ? err : this.#busy('OUTPOST_INGEST_UNAVAILABLE', 'Internal error', { cause: err });
    if (error.code === 'OUTPOST_INGEST_UNAVAILABLE' && this.#state === 'running') this.emitter.error(error);
    return error;
  }

  /** Reports a failure of background work (redelivery pass, pruning) as one `'error'` event. */
  reportError(err: unknown): void {
    this.emitter.error(err instanceof OutpostError ? err : new IngestError('OUTPOST_INGEST_UNAVAILABLE', 'Background maintenance failed', { cause: err }));
  }

  #reject(req: IncomingMessage, res: ServerResponse, tenantId: string | undefined, err: IngestError): void {
    this.#counts.rejected++;
    // A body we did not read in full is not worth draining: close the connection after answering.
    if (!req.complete) res.setHeader('connection', 'close');
    if (err.retryAfterSeconds !== undefined) res.setHeader('retry-after', String(err.retryAfterSeconds));
    send(res, err.status, { error: { code: err.code, message: err.message } });
    this.emitter.emit('rejected', {
      status: err.status,
      code: err.code,
      message: err.message,
      tenantId,
      method: req.method,
      path: pathOf(req),
      remoteAddress: req.socket.remoteAddress,
    });
  }

  #assertRunning(operation: string): void {
    if (this.#state !== 'running') throw new IllegalStateError(operation, this.#state);
  }

  async redeliverPending(): Promise<number> {
    this.#assertRunning('redeliver reports');
    return this.#deliveries.redeliverPending(() => this.#state !== 'running');
  }

  async prune(): Promise<PruneResult> {
    this.#assertRunning('prune reports');
    const now = Date.now();
    return this.store.prune({ incompleteBefore: now - this.#o.incompleteReportTtlMs, deliveredBefore: now - this.#o.deliveredReportTtlMs });
  }

  close(options: IngestCloseOptions = {}): Promise<void> {
    // Any call's signal (not just the first one's) can end the wait.
    const signal = options.signal;
    if (signal !== undefined && this.#state !== 'closed') {
      if (signal.aborted) this.#stopWaiting.abort();
      else signal.addEventListener('abort', () => this.#stopWaiting.abort(), { once: true, signal: this.#closedSignal.signal });
    }
    this.#closing ??= (async () => {
      this.#state = 'closing';
      clearInterval(this.#pruneTimer);
      this.#deliveries.stop(); // queued deliveries stay pending for the next start
      const drained = (async () => {
        await Promise.allSettled([...this.#inFlight]);
        await this.#deliveries.idle();
      })();
      try {
        await raceDeadline(drained, this.#stopWaiting.signal, MAX_TIMER_MS, () => undefined).catch(() => undefined);
      } finally {
        this.#state = 'closed';
        this.#closedSignal.abort(); // removes the listeners on callers' signals
        if (this.#ownsStore) await this.store.close();
      }
    })();
    return this.#closing;
  }
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
  const events = ingest.emitter.events;
  Object.defineProperties(handler, {
    store: { value: ingest.store, enumerable: true },
    state: { get: () => ingest.state, enumerable: true },
    on: { value: (event: keyof IngestEvents, listener: (...args: never[]) => void) => (events.on(event, listener as never), handler) },
    off: { value: (event: keyof IngestEvents, listener: (...args: never[]) => void) => (events.off(event, listener as never), handler) },
    stats: { value: () => ingest.stats() },
    redeliverPending: { value: () => ingest.redeliverPending() },
    prune: { value: () => ingest.prune() },
    close: { value: (o?: IngestCloseOptions) => ingest.close(o) },
    [Symbol.asyncDispose]: { value: () => ingest.close() },
  });
  // Reports completed before a crash but never delivered are offered again, once listeners can attach.
  setImmediate(() => {
    if (ingest.state === 'running') ingest.redeliverPending().catch((err: unknown) => ingest.reportError(err));
  }).unref();
  return handler;
}
