/**
 * The `Uploader` seam: the chunk outbox and the pipeline upload through it,
 * never through an HTTP client directly.
 */

/** How a body is encoded on the wire. */
export type BodyEncoding = 'zstd' | 'identity';

/** A body ready to send: the bytes on the wire plus what the protocol says about them. */
export interface EncodedBody {
  /** Bytes sent as the request body (compressed when `encoding` is `'zstd'`). Re-sendable as is. */
  readonly body: Uint8Array;
  /** `Content-Encoding` of `body`. */
  readonly encoding: BodyEncoding;
  /** SHA-256 of the uncompressed JSON, 64 lower-case hex characters. */
  readonly sha256: string;
  /** Length of the uncompressed JSON, in bytes. */
  readonly rawBytes: number;
}

/** One chunk of a report, as `POST /v1/chunks` sends it. */
export interface ChunkUpload extends EncodedBody {
  /** Report id: 1–256 characters of `[A-Za-z0-9_-]`. */
  readonly reportId: string;
  /** 0-based chunk index, `< total`. */
  readonly index: number;
  /** Number of chunks in the report, 1–10 000. */
  readonly total: number;
}

/** A whole (small) report, as `POST /v1/reports` sends it. */
export interface ReportUpload extends EncodedBody {
  /** Report id: 1–256 characters of `[A-Za-z0-9_-]`. */
  readonly reportId: string;
}

/** What the server said about an accepted upload. */
export interface UploadResult {
  /** 201 when stored now, 200 when the server already had it. */
  readonly status: number;
  /** True when the server already had this exact body (status 200): success all the same. */
  readonly duplicate: boolean;
  /** Chunks of the report the server holds, when it said. */
  readonly receivedChunks?: number;
  /** Chunks the report has, when the server said. */
  readonly totalChunks?: number;
  /** Whether the server holds every chunk of the report, when it said. */
  readonly complete?: boolean;
}

/** A report's progress on the server (`GET /v1/reports/<id>`). */
export interface ReportStatus {
  /** The report id. */
  readonly reportId: string;
  /** Chunks the report has. */
  readonly totalChunks: number;
  /** Chunks the server holds. */
  readonly receivedChunks: number;
  /** Whether every chunk has arrived. */
  readonly complete: boolean;
}

/** Per-call options of an {@link Uploader}. */
export interface UploadCallOptions {
  /** Aborts the attempt; the call rejects with `signal.reason`. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Sends chunks and whole reports to a server: **one attempt per call**. It
 * rejects with an {@link UploadError} whose `retryable` and `retryAfterMs` tell
 * the caller's {@link RetryPolicy} what to do. Implement it to send somewhere
 * other than HTTP (tests, a message bus).
 */
export interface Uploader {
  /** Uploads one chunk (`POST /v1/chunks`). Resolves on any 2xx (201 stored, 200 duplicate). */
  uploadChunk(chunk: ChunkUpload, options?: UploadCallOptions): Promise<UploadResult>;
  /** Uploads a whole report (`POST /v1/reports`). Resolves on any 2xx (201 stored, 200 duplicate). */
  uploadReport(report: ReportUpload, options?: UploadCallOptions): Promise<UploadResult>;
}
