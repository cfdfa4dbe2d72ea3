/**
 * The chunk outbox's typed events and the shapes `stats()` and
 * `getReport()` return.
 */
import type { OutpostError, UploadError } from '../errors.js';
import { SafeEmitter } from '../internal/safe-emitter.js';
import type { CleanupResult, DroppedReport } from './cleanup.js';

/** Identifies one chunk. */
export interface ChunkEventBase {
  /** Tenant of the report. */
  readonly tenantId: string;
  /** The report id. */
  readonly reportId: string;
  /** 0-based chunk index. */
  readonly index: number;
  /** Chunks in the report (1 for a report sent whole). */
  readonly total: number;
}

/** A chunk was stored (`chunk-created`). */
export interface ChunkCreatedEvent extends ChunkEventBase {
  /** Uncompressed JSON size, in bytes. */
  readonly rawBytes: number;
  /** Size as stored (compressed), in bytes. */
  readonly storedBytes: number;
}

/** The server acknowledged a chunk (`chunk-uploaded`). */
export interface ChunkUploadedEvent extends ChunkEventBase {
  /** Attempts it took, this one included. */
  readonly attempts: number;
  /** HTTP status: 201 stored, 200 the server already had it. */
  readonly status: number;
  /** True when the server already had it (a retry after a lost answer, or a restart). */
  readonly duplicate: boolean;
  /** Bytes sent (compressed). */
  readonly storedBytes: number;
}

/** An upload failed and will be retried (`chunk-retry`). */
export interface ChunkRetryEvent extends ChunkEventBase {
  /** Failed attempts so far. */
  readonly attempt: number;
  /** Wait before the next attempt, in ms. */
  readonly delayMs: number;
  /** `quick` during the first `maxRetries` retries, `long` after them (capped backoff until `retentionHours`). */
  readonly phase: 'quick' | 'long';
  /** Why the attempt failed. */
  readonly error: UploadError;
}

/** Why a chunk will never be uploaded. */
export type ChunkDeadReason = 'rejected' | 'expired' | 'report-dead' | 'dropped';

/** A chunk was given up (`chunk-dead`). */
export interface ChunkDeadEvent extends ChunkEventBase {
  /**
   * `rejected`: the server refused it for good (a 4xx other than 401/403/408/409/429, a 3xx, a non-retryable network error);
   * `expired`: not uploaded within `retentionHours`;
   * `report-dead`: another chunk of its report died, so the report cannot complete;
   * `dropped`: deleted for room under `onStorageFull: 'drop-oldest'`.
   */
  readonly reason: ChunkDeadReason;
  /** The last failure, when there was one. */
  readonly error?: OutpostError | undefined;
}

/** Every chunk of a report was acknowledged (`report-completed`). */
export interface ReportCompletedEvent {
  /** Tenant of the report. */
  readonly tenantId: string;
  /** The report id. */
  readonly reportId: string;
  /** Chunks in the report. */
  readonly totalChunks: number;
  /** Uncompressed JSON size of all chunks, in bytes. */
  readonly rawBytes: number;
  /** Time from storing to the last acknowledgement, in ms. */
  readonly durationMs: number;
}

/** A submission met a full outbox (`storage-full`). */
export interface StorageFullEvent {
  /** The `onStorageFull` policy that applied. */
  readonly policy: 'reject' | 'drop-oldest';
  /** Bytes of database pages in use after cleanup. */
  readonly usedBytes: number;
  /** `maxStorageMB` in bytes. */
  readonly limitBytes: number;
  /** Bytes the submission needed. */
  readonly requiredBytes: number;
  /** True when the submission was refused with `StorageFullError`. */
  readonly rejected: boolean;
  /** Pending reports deleted to make room (`'drop-oldest'`), oldest first. */
  readonly dropped: readonly DroppedReport[];
}

/** Events of a {@link ChunkManager}. */
export interface ChunkManagerEvents {
  /** A chunk was stored, ready to upload. */
  'chunk-created': [event: ChunkCreatedEvent];
  /** The server acknowledged a chunk. */
  'chunk-uploaded': [event: ChunkUploadedEvent];
  /** An upload failed and will be retried. */
  'chunk-retry': [event: ChunkRetryEvent];
  /** A chunk will never be uploaded. */
  'chunk-dead': [event: ChunkDeadEvent];
  /** Every chunk of a report was acknowledged. */
  'report-completed': [event: ReportCompletedEvent];
  /** A cleanup removed data; per layer, with bytes freed. */
  cleanup: [event: CleanupResult];
  /** A submission met a full outbox. */
  'storage-full': [event: StorageFullEvent];
  /** A background failure the host must see (database error, a disk full during bookkeeping); the outbox keeps running. */
  error: [error: OutpostError];
}

/** Counts and bytes of chunks in one state. */
export interface ChunkStateStats {
  /** Chunks. */
  readonly count: number;
  /** Uncompressed JSON bytes. */
  readonly rawBytes: number;
  /** Bodies still held (compressed), in bytes. */
  readonly liveBytes: number;
}

/** What `stats()` returns. */
export interface ChunkManagerStats {
  /** Chunks by state. */
  readonly chunks: Readonly<Record<'pending' | 'uploading' | 'uploaded' | 'dead', ChunkStateStats>>;
  /** Reports by state (`staging`: streaming submissions in progress). */
  readonly reports: Readonly<Record<'staging' | 'pending' | 'completed' | 'dead', number>>;
  /** Chunk bodies still held, in bytes (compressed). */
  readonly liveBytes: number;
  /** Database file + WAL on disk, in bytes. */
  readonly onDiskBytes: number;
  /** Database pages in use, in bytes (free pages and WAL overhead excluded): what counts against `maxStorageMB`. */
  readonly usedBytes: number;
  /** `maxStorageMB` in bytes. */
  readonly limitBytes: number;
  /** Uploads in flight now. */
  readonly uploadsInFlight: number;
}

/** A stored report, as `getReport()` returns it. */
export interface OutboxReport {
  /** Tenant of the report. */
  readonly tenantId: string;
  /** The report id. */
  readonly reportId: string;
  /** `pending` (uploading), `completed` (every chunk acknowledged; only seen with `cleanupOnReportComplete: false`), `dead`. */
  readonly state: 'pending' | 'completed' | 'dead';
  /** True when split into chunks, false when sent whole. */
  readonly chunked: boolean;
  /** Chunks in the report. */
  readonly totalChunks: number;
  /** Upload priority (higher first). */
  readonly priority: number;
  /** Uncompressed JSON bytes of all chunks. */
  readonly rawBytes: number;
  /** Compressed bytes as stored. */
  readonly storedBytes: number;
  /** SHA-256 (hex) of the report's content, independent of how it was split. */
  readonly contentSha256: string;
  /** When it was stored, ms since the epoch. */
  readonly createdAt: number;
  /** Why it died, when `state` is `dead`. */
  readonly deadReason: string | undefined;
  /** Its chunks, in index order. */
  readonly chunks: readonly OutboxChunk[];
}

/** One chunk of an {@link OutboxReport}. */
export interface OutboxChunk {
  /** 0-based index. */
  readonly index: number;
  /** Where it is in its life. */
  readonly state: 'pending' | 'uploading' | 'uploaded' | 'dead';
  /** Upload attempts made. */
  readonly attempts: number;
  /** Uncompressed JSON bytes. */
  readonly rawBytes: number;
  /** Compressed bytes as stored. */
  readonly storedBytes: number;
  /** Whether the body is still stored (freed after upload with `autoCleanupOnUpload`). */
  readonly hasBody: boolean;
  /** When the next attempt may start, ms since the epoch (pending chunks). */
  readonly nextAttemptAt: number;
  /** The last failure (`code: message`), if any. */
  readonly lastError: string | undefined;
}

/** The chunk manager's emitter. @internal */
export class ChunkEmitter extends SafeEmitter<ChunkManagerEvents> {
  constructor() {
    super('chunk');
  }
}
