/**
 * `HttpUploader`: protocol v1 over undici, one attempt per call.
 */
import { Pool, type Dispatcher } from 'undici';
import { performance } from 'node:perf_hooks';
import { IllegalStateError, InvalidArgumentError, UploadError, UploadHttpError, UploadTimeoutError } from '../errors.js';
import { raceDeadline } from '../internal/abort.js';
import { HEADER, MAX_CHUNKS_PER_REPORT, PATH_CHUNKS, PATH_REPORTS, TOKEN68, idempotencyKey, isValidId } from '../internal/protocol.js';
import { formatReprDigest } from '../internal/repr-digest.js';
import { isRetryableStatus, toUploadError } from './classify.js';
import { resolveHttpUploaderOptions, type HttpUploaderOptions, type ResolvedHttpUploaderOptions } from './options.js';
import { parseRetryAfter } from './retry-after.js';
import { exchange, type Exchange } from './exchange.js';
import type { ChunkUpload, EncodedBody, ReportStatus, ReportUpload, UploadCallOptions, UploadResult, Uploader } from './types.js';

/** Lifecycle of an {@link HttpUploader}. */
export type HttpUploaderState = 'idle' | 'running' | 'closing' | 'closed';

/** Responses are small JSON documents; anything longer is cut off (and the socket dropped). */
const MAX_RESPONSE_BYTES = 64 * 1024;
const SHA256_HEX = /^[0-9a-f]{64}$/;

interface Answer {
  readonly status: number;
  readonly json: Record<string, unknown> | undefined;
}

/**
 * Uploads over HTTP(S) with a keep-alive pool. Each call is **one attempt**
 * bounded by `uploadTimeoutMs`; failures reject with a classified
 * {@link UploadError} so the caller's {@link RetryPolicy} decides what next.
 * Bodies are `Uint8Array`s, so the same bytes can be re-sent on a retry.
 *
 * @example
 * ```ts
 * await using uploader = new HttpUploader({ url: 'https://ingest.example.com', token: process.env.TOKEN! });
 * const body = await encodeBody(report);
 * await uploader.uploadReport({ reportId: 'scan-42', ...body });
 * ```
 */
export class HttpUploader implements Uploader {
  /** Resolved options. */
  readonly options: ResolvedHttpUploaderOptions;
  #dispatcher: Dispatcher | undefined;
  #state: HttpUploaderState = 'idle';
  /** `Bearer <token>` for a fixed token, built once. */
  readonly #staticAuthorization: string;
  #closing: Promise<void> | undefined;

  /** @throws {@link InvalidOptionError} when an option is missing or out of range */
  constructor(options: HttpUploaderOptions) {
    this.options = resolveHttpUploaderOptions(options);
    this.#staticAuthorization = typeof this.options.token === 'string' ? `Bearer ${this.options.token}` : '';
  }

  /** `'idle'` until the first request or `start()`, then `'running'`, `'closing'`, `'closed'`. */
  get state(): HttpUploaderState {
    return this.#state;
  }

  /** Opens the connection pool (done lazily by the first upload too). Idempotent. */
  start(): this {
    if (this.#state === 'closing' || this.#state === 'closed') throw new IllegalStateError('start', this.#state);
    if (this.#state === 'idle') {
      const o = this.options;
      this.#dispatcher =
        o.dispatcher ??
        new Pool(o.origin, {
          connections: o.connections,
          pipelining: 1,
          keepAliveTimeout: o.keepAliveTimeoutMs,
          connect: { timeout: o.connectTimeoutMs, ...(o.ca === undefined ? {} : { ca: o.ca as string | Buffer | (string | Buffer)[] }) },
        });
      this.#state = 'running';
    }
    return this;
  }

  /** {@inheritDoc Uploader.uploadChunk} @throws {@link UploadError}, {@link InvalidArgumentError} */
  async uploadChunk(chunk: ChunkUpload, options: UploadCallOptions = {}): Promise<UploadResult> {
    checkBody(chunk);
    if (!Number.isInteger(chunk.total) || chunk.total < 1 || chunk.total > MAX_CHUNKS_PER_REPORT) {
      throw new InvalidArgumentError(`Expected chunk \`total\` to be an integer from 1 to ${MAX_CHUNKS_PER_REPORT}, got ${String(chunk.total)}`);
    }
    if (!Number.isInteger(chunk.index) || chunk.index < 0 || chunk.index >= chunk.total) {
      throw new InvalidArgumentError(`Expected chunk \`index\` to be an integer from 0 to ${chunk.total - 1}, got ${String(chunk.index)}`);
    }
    const answer = await this.#send(
      'POST',
      PATH_CHUNKS,
      // One flat literal per request: this is the uploader's hot path.
      {
        'content-type': 'application/json',
        'content-encoding': chunk.encoding,
        'repr-digest': formatReprDigest(Buffer.from(chunk.sha256, 'hex')),
        'outpost-report-id': chunk.reportId,
        'outpost-chunk-index': String(chunk.index),
        'outpost-chunk-total': String(chunk.total),
        'idempotency-key': idempotencyKey(chunk.reportId, chunk.index, chunk.sha256),
        'user-agent': this.options.userAgent,
        accept: 'application/json',
        authorization: '',
      },
      chunk.body,
      options.signal,
    );
    return toResult(answer);
  }

  /** {@inheritDoc Uploader.uploadReport} @throws {@link UploadError}, {@link InvalidArgumentError} */
  async uploadReport(report: ReportUpload, options: UploadCallOptions = {}): Promise<UploadResult> {
    checkBody(report);
    const answer = await this.#send(
      'POST',
      PATH_REPORTS,
      {
        'content-type': 'application/json',
        'content-encoding': report.encoding,
        'repr-digest': formatReprDigest(Buffer.from(report.sha256, 'hex')),
        'outpost-report-id': report.reportId,
        'idempotency-key': idempotencyKey(report.reportId, undefined, report.sha256),
        'user-agent': this.options.userAgent,
        accept: 'application/json',
        authorization: '',
      },
      report.body,
      options.signal,
    );
    return toResult(answer);
  }

  /**
   * Asks the server how far a report has got (`GET /v1/reports/<id>`).
   * Resolves `undefined` when the server does not know it (404).
   */
  async getReportStatus(reportId: string, options: UploadCallOptions = {}): Promise<ReportStatus | undefined> {
    if (!isValidId(reportId)) throw new InvalidArgumentError(`Invalid report id ${JSON.stringify(String(reportId)).slice(0, 80)}`);
    try {
      const headers = { 'user-agent': this.options.userAgent, accept: 'application/json', authorization: '' };
      const answer = await this.#send('GET', `${PATH_REPORTS}/${reportId}`, headers, undefined, options.signal);
      const j = answer.json ?? {};
      const { totalChunks, receivedChunks, complete } = j;
      if (!Number.isInteger(totalChunks) || !Number.isInteger(receivedChunks) || typeof complete !== 'boolean') {
        throw new UploadError('OUTPOST_UPLOAD_HTTP_STATUS', `Server answered ${answer.status} with a body that is not a report status`, {
          retryable: false,
          status: answer.status,
        });
      }
      return { reportId, totalChunks: totalChunks as number, receivedChunks: receivedChunks as number, complete };
    } catch (err) {
      if (err instanceof UploadHttpError && err.status === 404 && err.serverCode === 'OUTPOST_INGEST_NOT_FOUND') return undefined;
      throw err;
    }
  }

  /** Closes the pool after in-flight requests finish. Idempotent; later uploads throw {@link IllegalStateError}. */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    const dispatcher = this.options.dispatcher === undefined ? this.#dispatcher : undefined;
    this.#state = 'closing';
    this.#closing = (async () => {
      try {
        await dispatcher?.close();
      } finally {
        this.#state = 'closed';
      }
    })();
    return this.#closing;
  }

  #assertOpen(): void {
    if (this.#state === 'closing' || this.#state === 'closed') throw new IllegalStateError('upload', this.#state);
  }

  /** Same as {@link HttpUploader.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #send(method: 'GET' | 'POST', path: string, headers: Record<string, string>, body: Uint8Array | undefined, signal: AbortSignal | undefined): Promise<Answer> {
    this.#assertOpen();
    signal?.throwIfAborted();
    const o = this.options;
    const deadline = performance.now() + o.uploadTimeoutMs;
    const timeoutError = (): UploadTimeoutError => new UploadTimeoutError(o.uploadTimeoutMs);
    if (typeof o.token === 'function') {
      // The token fetch is part of the attempt: same deadline, same signal. A token
      // function's own failure is not an upload failure: it propagates unchanged.
      const fetchToken = o.token;
      const token = await raceDeadline(Promise.resolve().then(fetchToken), signal, o.uploadTimeoutMs, timeoutError);
      this.#assertOpen(); // close() may have run meanwhile
      if (typeof token !== 'string' || !TOKEN68.test(token)) {
        throw new InvalidArgumentError('The bearer token must be token68 characters ([A-Za-z0-9-._~+/] then optional =)');
      }
      headers['authorization'] = `Bearer ${token}`;
    } else {
      headers['authorization'] = this.#staticAuthorization; // validated by the constructor
    }
    const dispatcher = this.start().#dispatcher as Dispatcher;
    let res: Exchange;
    try {
      res = await exchange(
        dispatcher,
        {
          origin: o.origin,
          path: o.pathPrefix + path,
          method,
          headers,
          ...(body === undefined ? {} : { body }),
        },
        { timeoutMs: Math.max(1, Math.ceil(deadline - performance.now())), timeoutError, signal, maxResponseBytes: MAX_RESPONSE_BYTES },
      );
    } catch (err) {
      if (err instanceof UploadError) throw err;
      if (signal?.aborted) throw signal.reason;
      throw toUploadError(err);
    }
    const json = parseJson(res.body);
    if (res.status >= 200 && res.status < 300) return { status: res.status, json };
    const error = json?.['error'];
    const serverCode = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
    const retryAfterMs = parseRetryAfter(res.headers[HEADER.retryAfter]);
    throw new UploadHttpError(res.status, {
      retryable: isRetryableStatus(res.status),
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      ...(typeof serverCode === 'string' ? { serverCode: serverCode.slice(0, 100) } : {}),
    });
  }
}

function checkBody(b: EncodedBody & { readonly reportId: string }): void {
  if (!isValidId(b.reportId)) {
    throw new InvalidArgumentError(`Expected \`reportId\` to be 1–256 characters of [A-Za-z0-9_-], got ${JSON.stringify(String(b.reportId)).slice(0, 80)}`);
  }
  if (!(b.body instanceof Uint8Array)) throw new InvalidArgumentError('Expected `body` to be a Buffer or Uint8Array');
  if (b.encoding !== 'zstd' && b.encoding !== 'identity') {
    throw new InvalidArgumentError(`Expected \`encoding\` to be 'zstd' or 'identity', got ${String(b.encoding)}`);
  }
  if (typeof b.sha256 !== 'string' || !SHA256_HEX.test(b.sha256)) {
    throw new InvalidArgumentError('Expected `sha256` to be 64 lower-case hex characters (SHA-256 of the uncompressed JSON)');
  }
}

function toResult(answer: Answer): UploadResult {
  const j = answer.json ?? {};
  const num = (key: string): { [k: string]: number } => (typeof j[key] === 'number' ? { [key]: j[key] } : {});
  return {
    status: answer.status,
    duplicate: answer.status === 200,
    ...num('receivedChunks'),
    ...num('totalChunks'),
    ...(typeof j['complete'] === 'boolean' ? { complete: j['complete'] } : {}),
  };
}

function parseJson(body: Buffer | undefined): Record<string, unknown> | undefined {
  if (body === undefined || body.length === 0) return undefined;
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
