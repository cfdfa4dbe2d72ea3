/**
 * Every error Outpost throws or emits is an {@link OutpostError} with a stable
 * `code`. Match on `err.code` (or `instanceof`), never on the message text.
 * `docs/errors.md` lists each code with what it means and what to do.
 *
 * @module
 */

/** Options accepted by every {@link OutpostError} constructor. */
export interface OutpostErrorOptions {
  /** The lower-level error that caused this one. */
  readonly cause?: unknown;
}

/**
 * Root of the Outpost error family.
 *
 * @example
 * ```ts
 * try { await uploader.uploadChunk(chunk); }
 * catch (err) { if (err instanceof OutpostError && err.code === 'OUTPOST_UPLOAD_TIMEOUT') retryLater(); }
 * ```
 */
export class OutpostError extends Error {
  /** Stable, machine-readable code, e.g. `OUTPOST_INVALID_OPTION`. */
  readonly code: string;

  /**
   * @param code - stable code (see `docs/errors.md`)
   * @param message - human-readable explanation
   * @param options - `{ cause }`
   */
  constructor(code: string, message: string, options: OutpostErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
}

/** An option passed to a constructor or factory is missing, of the wrong type or out of range. */
export class InvalidOptionError extends OutpostError {
  /** @param message - what was expected and what came */
  constructor(message: string, options?: OutpostErrorOptions) {
    super('OUTPOST_INVALID_OPTION', message, options);
  }
}

/** An argument to a method (an id, a report, a chunk) is malformed. Nothing was stored or sent. */
export class InvalidArgumentError extends OutpostError {
  /** @param message - what was expected and what came */
  constructor(message: string, options?: OutpostErrorOptions) {
    super('OUTPOST_INVALID_ARGUMENT', message, options);
  }
}

/** A method was called in a lifecycle state that does not allow it (e.g. upload after `close()`). */
export class IllegalStateError extends OutpostError {
  /** The state the object was in. */
  readonly state: string;
  /**
   * @param operation - what was attempted
   * @param state - the object's state at the time
   */
  constructor(operation: string, state: string) {
    super('OUTPOST_ILLEGAL_STATE', `Cannot ${operation} while ${state}`);
    this.state = state;
  }
}

/**
 * An event listener threw. The library catches it so that it cannot break a
 * response or crash the process, and reports it with `process.emitWarning`.
 */
export class ListenerError extends OutpostError {
  /**
   * @param where - which emitter and event, e.g. `ingest 'stored'`
   * @param cause - what the listener threw
   */
  constructor(where: string, cause: unknown) {
    super('OUTPOST_LISTENER_FAILED', `A listener of the ${where} event threw`, { cause });
  }
}

/** The codes a {@link StoreError} can carry. */
export type StoreErrorCode = 'OUTPOST_STORE_SCHEMA_TOO_NEW' | 'OUTPOST_STORE_DATA_MISSING' | 'OUTPOST_STORE_FAILED';

/**
 * A database holds something this version cannot use (a newer schema, a body
 * already freed; nothing was changed), or a database operation failed for a
 * reason other than a full disk (`OUTPOST_STORE_FAILED`, the SQLite error as `cause`).
 */
export class StoreError extends OutpostError {
  declare readonly code: StoreErrorCode;
  /**
   * @param code - one of {@link StoreErrorCode}
   * @param message - what is wrong
   */
  constructor(code: StoreErrorCode, message: string, options?: OutpostErrorOptions) {
    super(code, message, options);
  }
}

/** The codes an {@link UploadError} can carry. */
export type UploadErrorCode = 'OUTPOST_UPLOAD_HTTP_STATUS' | 'OUTPOST_UPLOAD_NETWORK' | 'OUTPOST_UPLOAD_TIMEOUT';

/** Details every {@link UploadError} carries. */
export interface UploadErrorDetails extends OutpostErrorOptions {
  /** Whether the shared retry policy considers this failure worth retrying. */
  readonly retryable: boolean;
  /** HTTP status, when the server answered. */
  readonly status?: number;
  /** Delay the server asked for with `Retry-After`, in milliseconds (already parsed, not capped). */
  readonly retryAfterMs?: number;
  /** The server's own error code from the response body (`error.code`), when it sent one. */
  readonly serverCode?: string;
}

/**
 * An upload attempt failed. `retryable` says whether the shared retry policy
 * would try again; `retryAfterMs` carries the server's `Retry-After`.
 */
export class UploadError extends OutpostError {
  /** Whether the failure is transient (network error, timeout, 408/409/429/5xx listed in the retry policy). */
  readonly retryable: boolean;
  /** HTTP status, when the server answered. */
  readonly status: number | undefined;
  /** The server's `Retry-After`, in milliseconds, when it sent one. */
  readonly retryAfterMs: number | undefined;
  /** The server's error code from the response body, when it sent one. */
  readonly serverCode: string | undefined;

  /**
   * @param code - one of {@link UploadErrorCode}
   * @param message - human-readable explanation
   * @param details - classification and cause
   */
  constructor(code: UploadErrorCode, message: string, details: UploadErrorDetails) {
    super(code, message, details);
    this.retryable = details.retryable;
    this.status = details.status;
    this.retryAfterMs = details.retryAfterMs;
    this.serverCode = details.serverCode;
  }
}

/** The server answered with a status outside 2xx. */
export class UploadHttpError extends UploadError {
  /** HTTP status the server answered with. */
  declare readonly status: number;
  /**
   * @param status - HTTP status
   * @param details - classification and server code
   */
  constructor(status: number, details: Omit<UploadErrorDetails, 'status'>) {
    const server = details.serverCode === undefined ? '' : ` (${details.serverCode})`;
    super('OUTPOST_UPLOAD_HTTP_STATUS', `Server answered ${status}${server}`, { ...details, status });
  }
}

/** The request never got an HTTP answer: connection refused or reset, DNS, TLS, socket error. */
export class UploadNetworkError extends UploadError {
  /**
   * @param message - what went wrong
   * @param details - classification and the underlying error as `cause`
   */
  constructor(message: string, details: UploadErrorDetails) {
    super('OUTPOST_UPLOAD_NETWORK', message, details);
  }
}

/** One attempt took longer than its per-attempt timeout and was aborted. Always retryable. */
export class UploadTimeoutError extends UploadError {
  /** The per-attempt timeout that elapsed, in milliseconds. */
  readonly timeoutMs: number;
  /** @param timeoutMs - the per-attempt timeout that elapsed */
  constructor(timeoutMs: number) {
    super('OUTPOST_UPLOAD_TIMEOUT', `Upload attempt timed out after ${timeoutMs} ms`, { retryable: true });
    this.timeoutMs = timeoutMs;
  }
}

/**
 * `onReport` threw or rejected (or the store failed while reassembling). The
 * report stays complete-but-undelivered and is offered again by
 * `redeliverPending()`. Emitted as the ingest handler's `'error'` event.
 */
export class IngestDeliveryError extends OutpostError {
  declare readonly code: 'OUTPOST_INGEST_DELIVERY_FAILED';
  /** Tenant of the report. */
  readonly tenantId: string;
  /** The report that was not delivered. */
  readonly reportId: string;
  /**
   * @param tenantId - tenant of the report
   * @param reportId - the report
   * @param options - `{ cause }`: what `onReport` threw
   */
  constructor(tenantId: string, reportId: string, options?: OutpostErrorOptions) {
    super('OUTPOST_INGEST_DELIVERY_FAILED', `Delivering report ${reportId} of tenant ${tenantId} failed; it stays pending`, options);
    this.tenantId = tenantId;
    this.reportId = reportId;
  }
}

/** Stable codes the ingest server answers with; each maps to one HTTP status. */
export const ingestErrorStatus = Object.freeze({
  /** 400: a protocol header is missing, repeated or malformed, or the body could not be read. */
  OUTPOST_INGEST_BAD_REQUEST: 400,
  /** 400: the report id is not 1–256 characters of `[A-Za-z0-9_-]`. */
  OUTPOST_INGEST_INVALID_ID: 400,
  /** 400: the body is not a JSON object, or its `findings` / `assets` are not arrays. */
  OUTPOST_INGEST_INVALID_JSON: 400,
  /** 400: the body is not valid zstd or could not be decompressed. */
  OUTPOST_INGEST_CORRUPT_BODY: 400,
  /** 400: `Outpost-Chunk-Total` differs from the total set by the report's first stored chunk. */
  OUTPOST_INGEST_TOTAL_MISMATCH: 400,
  /** 401: the bearer token is missing, malformed or refused by `authenticate`. */
  OUTPOST_INGEST_UNAUTHORIZED: 401,
  /** 404: no such endpoint, or (on `GET /v1/reports/<id>`) no such report for this tenant. */
  OUTPOST_INGEST_NOT_FOUND: 404,
  /** 405: wrong method for the endpoint; the `Allow` header names the right one. */
  OUTPOST_INGEST_METHOD_NOT_ALLOWED: 405,
  /** 408: the body did not arrive within `bodyTimeoutMs`. */
  OUTPOST_INGEST_BODY_TIMEOUT: 408,
  /** 409: another request for the same chunk is being processed; retry after `Retry-After`. */
  OUTPOST_INGEST_IN_PROGRESS: 409,
  /** 413: the body, its (declared or possible) decompressed size, or the report total exceeds a limit. */
  OUTPOST_INGEST_TOO_LARGE: 413,
  /** 415: `Content-Encoding` is neither `zstd` nor `identity`. */
  OUTPOST_INGEST_UNSUPPORTED_ENCODING: 415,
  /** 422: `Repr-Digest` does not match the uncompressed body. */
  OUTPOST_INGEST_DIGEST_MISMATCH: 422,
  /** 422: the chunk is stored with another digest, the report id is used by the other kind, or `Idempotency-Key` names another digest. */
  OUTPOST_INGEST_KEY_CONFLICT: 422,
  /** 422: the declared compression ratio exceeds `maxCompressionRatio`. */
  OUTPOST_INGEST_RATIO_EXCEEDED: 422,
  /** 422: a zstd frame does not declare its content size. */
  OUTPOST_INGEST_SIZE_UNDECLARED: 422,
  /** 422: the decompressed size differs from the size the zstd frames declared. */
  OUTPOST_INGEST_SIZE_MISMATCH: 422,
  /** 429: the tenant already has `maxConcurrentRequestsPerTenant` requests in flight; retry after `Retry-After`. */
  OUTPOST_INGEST_RATE_LIMITED: 429,
  /** 503: `maxConcurrentRequests` requests are already in flight; retry after `Retry-After`. */
  OUTPOST_INGEST_OVERLOADED: 503,
  /** 503: shutting down, or storage, `authenticate` or the handler itself failed; retry after `Retry-After`. */
  OUTPOST_INGEST_UNAVAILABLE: 503,
} as const);

/** A code the ingest server answers with. */
export type IngestErrorCode = keyof typeof ingestErrorStatus;

/**
 * A request to the ingest handler was refused. The handler turns it into an
 * HTTP response `{ "error": { "code", "message" } }` with {@link IngestError.status}.
 */
export class IngestError extends OutpostError {
  declare readonly code: IngestErrorCode;
  /** HTTP status this error is answered with. */
  readonly status: number;
  /** Seconds to put in `Retry-After`, for 409/503. */
  readonly retryAfterSeconds: number | undefined;

  /**
   * @param code - one of {@link IngestErrorCode}
   * @param message - safe to show to the client (never echoes secrets)
   * @param options - cause and `retryAfterSeconds`
   */
  constructor(code: IngestErrorCode, message: string, options: OutpostErrorOptions & { readonly retryAfterSeconds?: number } = {}) {
    super(code, message, options);
    this.status = ingestErrorStatus[code];
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** A chunk outbox submission the caller must change: an item too large for one chunk, too many chunks, or a report id reused with different content. */
export type ChunkErrorCode = 'OUTPOST_CHUNK_ITEM_TOO_LARGE' | 'OUTPOST_CHUNK_TOO_MANY' | 'OUTPOST_REPORT_CONFLICT';

/**
 * A report the chunk outbox refused before storing anything: retrying the same
 * call cannot succeed. Nothing already stored was changed.
 */
export class ChunkError extends OutpostError {
  declare readonly code: ChunkErrorCode;
  /**
   * @param code - one of {@link ChunkErrorCode}
   * @param message - what is wrong and what limit was hit
   */
  constructor(code: ChunkErrorCode, message: string, options?: OutpostErrorOptions) {
    super(code, message, options);
  }
}

/**
 * The chunk outbox is over `maxStorageMB` and cleanup could not make room
 * (`onStorageFull: 'reject'`): the submission was refused and nothing stored
 * was touched. Retry once uploads drain. Code `OUTPOST_STORAGE_FULL`; the
 * subclass {@link DiskFullError} (`OUTPOST_DISK_FULL`) means the disk itself is full.
 */
export class StorageFullError extends OutpostError {
  /** Bytes of database pages in use when the submission was refused (on-disk size for {@link DiskFullError}). */
  readonly storedBytes: number;
  /** The limit in bytes (`maxStorageMB` × 1 MiB); `undefined` for a real disk-full. */
  readonly limitBytes: number | undefined;
  /**
   * @param message - what was refused
   * @param details - sizes, and the SQLite or filesystem error as `cause`
   * @param code - `OUTPOST_STORAGE_FULL` (the default) or `OUTPOST_DISK_FULL`
   */
  constructor(
    message: string,
    details: OutpostErrorOptions & { readonly storedBytes: number; readonly limitBytes?: number | undefined },
    code: 'OUTPOST_STORAGE_FULL' | 'OUTPOST_DISK_FULL' = 'OUTPOST_STORAGE_FULL',
  ) {
    super(code, message, details);
    this.storedBytes = details.storedBytes;
    this.limitBytes = details.limitBytes;
  }
}

/**
 * The filesystem holding the database is full (`SQLITE_FULL`, `ENOSPC`). The
 * write was rolled back as a whole: nothing stored is lost or corrupted, and
 * writes succeed again once space is freed. Code `OUTPOST_DISK_FULL`.
 */
export class DiskFullError extends StorageFullError {
  /**
   * @param message - what could not be written
   * @param details - on-disk size and the SQLite error as `cause`
   */
  constructor(message: string, details: OutpostErrorOptions & { readonly storedBytes: number }) {
    super(message, { ...details, limitBytes: undefined }, 'OUTPOST_DISK_FULL');
  }
}

/** Which resource reading failed: a signal, or the reading as a whole (a custom source that threw). */
export type ResourceReadTarget = 'cpu' | 'memory' | 'disk' | 'source';

/**
 * A resource sample could not read one of its inputs (a cgroup or `/proc`
 * file missing, unreadable or malformed; the data directory gone). Emitted in
 * the resource controller's `sample-failed` event, never thrown: the signal
 * is unknown for that sample. It never causes a throttle, and holds back
 * resuming for at most one `cooldownMs` from when it started failing. Code
 * `OUTPOST_RESOURCE_READ_FAILED`; the I/O error is the `cause`.
 */
export class ResourceReadError extends OutpostError {
  declare readonly code: 'OUTPOST_RESOURCE_READ_FAILED';
  /** The signal that is unknown because of this failure. */
  readonly target: ResourceReadTarget;
  /** The file or directory that could not be read, when there is one. */
  readonly path: string | undefined;
  /**
   * @param target - the signal left unknown
   * @param message - what could not be read
   * @param details - the path and the I/O or parse error as `cause`
   */
  constructor(target: ResourceReadTarget, message: string, details: OutpostErrorOptions & { readonly path?: string | undefined } = {}) {
    super('OUTPOST_RESOURCE_READ_FAILED', message, details);
    this.target = target;
    this.path = details.path;
  }
}

/**
 * A job started with the resource controller's `run()` did not settle within
 * its `timeoutMs`: its signal was aborted with this error and `run()`
 * rejected with it. Code `OUTPOST_RESOURCE_JOB_TIMEOUT`.
 */
export class JobTimeoutError extends OutpostError {
  declare readonly code: 'OUTPOST_RESOURCE_JOB_TIMEOUT';
  /** The timeout that elapsed, in milliseconds. */
  readonly timeoutMs: number;
  /** @param timeoutMs - the timeout that elapsed */
  constructor(timeoutMs: number) {
    super('OUTPOST_RESOURCE_JOB_TIMEOUT', `Job timed out after ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

/** The codes an {@link AuditError} can carry. */
export type AuditErrorCode = 'OUTPOST_AUDIT_OPEN_FAILED' | 'OUTPOST_AUDIT_WRITE_FAILED' | 'OUTPOST_AUDIT_ROTATE_FAILED' | 'OUTPOST_AUDIT_RETENTION_FAILED';

/**
 * The audit logger could not use its files. Only `OUTPOST_AUDIT_OPEN_FAILED`
 * is thrown (by `start()`); the others are reported in events while logging
 * goes on: `OUTPOST_AUDIT_WRITE_FAILED` in `write-failed` (the events are held
 * and retried), `OUTPOST_AUDIT_ROTATE_FAILED` and
 * `OUTPOST_AUDIT_RETENTION_FAILED` as `error`. The filesystem error is the `cause`.
 */
export class AuditError extends OutpostError {
  declare readonly code: AuditErrorCode;
  /** The file or directory concerned. */
  readonly file: string | undefined;
  /**
   * @param code - one of {@link AuditErrorCode}
   * @param message - what failed
   * @param details - the file and the filesystem error as `cause`
   */
  constructor(code: AuditErrorCode, message: string, details: OutpostErrorOptions & { readonly file?: string | undefined } = {}) {
    super(code, message, details);
    this.file = details.file;
  }
}

/**
 * A job declared more memory (`memoryBytes`) than the resource controller can
 * ever admit: more than `memoryThreshold` × the tightest memory limit that
 * applies to the process (its cgroup's, an ancestor's, or the host's).
 * `tryAcquire()` throws it, `acquire()` and `run()` reject with it — at once,
 * or, for a waiting job, as soon as a sample shows a limit it cannot fit.
 * Code `OUTPOST_RESOURCE_JOB_TOO_LARGE`.
 */
export class JobTooLargeError extends OutpostError {
  declare readonly code: 'OUTPOST_RESOURCE_JOB_TOO_LARGE';
  /** The memory the job declared, in bytes. */
  readonly memoryBytes: number;
  /** The most any job may declare now: `memoryThreshold` × the tightest limit, in bytes. */
  readonly budgetBytes: number;
  /**
   * @param memoryBytes - what the job declared
   * @param budgetBytes - the most it could have declared
   */
  constructor(memoryBytes: number, budgetBytes: number) {
    super('OUTPOST_RESOURCE_JOB_TOO_LARGE', `A job declaring ${memoryBytes} bytes can never be admitted: at most ${Math.floor(budgetBytes)} bytes fit under the memory threshold`);
    this.memoryBytes = memoryBytes;
    this.budgetBytes = budgetBytes;
  }
}

/**
 * The resource controller's `close()` stopped waiting after `closeTimeoutMs`:
 * `run()` jobs that ignore their abort signal were still running (they keep
 * their slots until they end), or a sample's read never finished. `close()`
 * resolves anyway; this error is emitted as an `error` event (a process
 * warning when nobody listens). Code `OUTPOST_RESOURCE_CLOSE_TIMEOUT`.
 */
export class CloseTimeoutError extends OutpostError {
  declare readonly code: 'OUTPOST_RESOURCE_CLOSE_TIMEOUT';
  /** The grace `close()` gave, in ms. */
  readonly closeTimeoutMs: number;
  /** `run()` jobs that had not settled. */
  readonly runningJobs: number;
  /** Whether a sample's read was still in flight. */
  readonly sampleInFlight: boolean;
  /**
   * @param closeTimeoutMs - the grace that elapsed
   * @param runningJobs - jobs left running
   * @param sampleInFlight - whether a read was left in flight
   */
  constructor(closeTimeoutMs: number, runningJobs: number, sampleInFlight: boolean) {
    const left = [runningJobs > 0 ? `${runningJobs} run() job(s) still running` : '', sampleInFlight ? 'a sample still reading' : ''].filter(Boolean).join(' and ');
    super('OUTPOST_RESOURCE_CLOSE_TIMEOUT', `close() gave up after ${closeTimeoutMs} ms with ${left}`);
    this.closeTimeoutMs = closeTimeoutMs;
    this.runningJobs = runningJobs;
    this.sampleInFlight = sampleInFlight;
  }
}

/** Which bound of the upload pipeline was reached. */
export type QueueFullBound = 'count' | 'bytes' | 'spill-backlog';

/**
 * `UploadPipeline.submit()` refused a report: the in-memory queue holds
 * `queueSize` reports or `maxQueueBytes` bytes and there is no running outbox
 * to spill to (none configured, or not started yet), or the outbox has
 * `queueSize` spills still being written (`'spill-backlog'`). Nothing was
 * accepted; the caller still owns the report. Code `OUTPOST_QUEUE_FULL`.
 */
export class QueueFullError extends OutpostError {
  declare readonly code: 'OUTPOST_QUEUE_FULL';
  /** The bound that was reached. */
  readonly bound: QueueFullBound;
  /** The limit of that bound (reports, or bytes for `'bytes'`). */
  readonly limit: number;
  /**
   * @param bound - which bound was reached
   * @param limit - its limit
   */
  constructor(bound: QueueFullBound, limit: number) {
    const what = bound === 'bytes' ? `${limit} bytes` : bound === 'count' ? `${limit} reports` : `${limit} reports being written to the outbox`;
    super('OUTPOST_QUEUE_FULL', `The upload queue is full (${what})`);
    this.bound = bound;
    this.limit = limit;
  }
}

/**
 * The upload pipeline stopped before a report was sent and had no outbox to
 * keep it: the `failed` event's error, with reason `'stopped'`. Also the
 * abort reason of uploads still in flight when `stopTimeoutMs` ran out.
 * Code `OUTPOST_PIPELINE_STOPPED`.
 */
export class PipelineStoppedError extends OutpostError {
  declare readonly code: 'OUTPOST_PIPELINE_STOPPED';
  /** @param message - what was stopped */
  constructor(message = 'The upload pipeline stopped before this report was sent') {
    super('OUTPOST_PIPELINE_STOPPED', message);
  }
}
