/**
 * The `IngestStore` seam: where the server keeps chunks until a report is
 * whole. {@link SqliteIngestStore} is the default; a server may plug in its
 * own database by implementing this interface. Every method is keyed by
 * tenant: a store never answers about another tenant's rows.
 */
import type { BodyEncoding } from '../transport/index.js';

/** Whether a report was sent whole (`POST /v1/reports`) or in chunks. */
export type ReportKind = 'whole' | 'chunked';

/** A report's row, as the store knows it. */
export interface StoredReport {
  /** Whether the report was sent whole or in chunks (fixed by its first stored chunk). */
  readonly kind: ReportKind;
  /** Number of chunks the report has, as its first stored chunk declared; 1 for a whole report. */
  readonly totalChunks: number;
  /** Number of distinct chunks stored so far. */
  readonly receivedChunks: number;
  /** Sum of the uncompressed sizes of the chunks received, in bytes. */
  readonly receivedBytes: number;
  /** True once every chunk is stored. */
  readonly complete: boolean;
  /** True once a delivery succeeded and was recorded by {@link IngestStore.markDelivered}. */
  readonly delivered: boolean;
}

/** One chunk to store. */
export interface PutChunkInput {
  /** Tenant the chunk belongs to; every row is keyed by it. */
  readonly tenantId: string;
  /** The report the chunk belongs to. */
  readonly reportId: string;
  /** `'whole'` for `POST /v1/reports`, `'chunked'` for `POST /v1/chunks`. */
  readonly kind: ReportKind;
  /** 0-based chunk index; 0 for a whole report. */
  readonly index: number;
  /** Number of chunks in the report, as this request declares it; 1 for a whole report. */
  readonly total: number;
  /** SHA-256 of the uncompressed JSON, hex. */
  readonly sha256: string;
  /** Uncompressed size, in bytes. */
  readonly rawBytes: number;
  /** The body as received (validated), kept in its wire encoding. */
  readonly body: Uint8Array;
  /** Wire encoding of `body`. */
  readonly encoding: BodyEncoding;
  /** The report's uncompressed bytes may not exceed this. */
  readonly maxReportBytes: number;
  /** JSON values in this chunk (see `maxJsonValues`). */
  readonly values: number;
  /** The report's JSON values may not exceed this. */
  readonly maxReportValues: number;
}

/**
 * Outcome of {@link IngestStore.putChunk}, decided atomically:
 * `stored` (new), `duplicate` (same slot, same digest), `conflict` (same slot,
 * other digest), `total-mismatch`, `kind-mismatch`, `too-large` (the report
 * would exceed `maxReportBytes` or `maxReportValues`). Only `stored` writes anything.
 */
export type PutChunkOutcome = 'stored' | 'duplicate' | 'conflict' | 'total-mismatch' | 'kind-mismatch' | 'too-large';

/** Result of {@link IngestStore.putChunk}. */
export interface PutChunkResult {
  /** What the store decided; see {@link PutChunkOutcome}. */
  readonly outcome: PutChunkOutcome;
  /** The report after the call (undefined only when nothing exists, e.g. `too-large` on a first chunk). */
  readonly report: StoredReport | undefined;
  /** True for exactly one call per report: the one whose chunk completed it. */
  readonly completedNow: boolean;
}

/** A stored chunk's body, for reassembly. */
export interface StoredChunkBody {
  /** 0-based chunk index. */
  readonly index: number;
  /** The body as received, in its wire encoding. */
  readonly body: Uint8Array;
  /** Wire encoding of `body`: decompress when `'zstd'`. */
  readonly encoding: BodyEncoding;
}

/** A report that is complete but whose delivery to `onReport` has not succeeded yet. */
export interface PendingDelivery {
  /** Tenant of the report. */
  readonly tenantId: string;
  /** The report awaiting delivery. */
  readonly reportId: string;
  /** When its last chunk arrived, in milliseconds since the epoch. */
  readonly completedAt: number;
}

/** Cut-offs for {@link IngestStore.prune}, in milliseconds since the epoch. */
export interface PruneCutoffs {
  /** Delete incomplete reports created before this. */
  readonly incompleteBefore: number;
  /** Delete delivered reports delivered before this. */
  readonly deliveredBefore: number;
}

/** What {@link IngestStore.prune} deleted. */
export interface PruneResult {
  /** Incomplete reports deleted, with their chunks. */
  readonly incompleteReports: number;
  /** Delivered reports deleted, with their chunk digests. */
  readonly deliveredReports: number;
}

/** Storage behind the ingest handler. */
export interface IngestStore {
  /** The report's row for this tenant, if any. */
  getReport(tenantId: string, reportId: string): Promise<StoredReport | undefined>;
  /** Stores a chunk and updates its report in one transaction. */
  putChunk(input: PutChunkInput): Promise<PutChunkResult>;
  /** Every chunk body of a complete report, in index order. */
  readChunks(tenantId: string, reportId: string): Promise<StoredChunkBody[]>;
  /** Records a successful delivery; with `dropBodies`, frees the chunk bodies (keeping their digests for dedupe). */
  markDelivered(tenantId: string, reportId: string, options: { readonly dropBodies: boolean }): Promise<void>;
  /**
   * Complete reports not yet delivered, oldest first, at most `limit`; with
   * `after`, only those that sort after it (keyset paging by completion time,
   * tenant, report).
   */
  listPendingDeliveries(limit: number, after?: PendingDelivery): Promise<PendingDelivery[]>;
  /** Deletes abandoned incomplete reports and long-delivered ones (complete-but-undelivered reports are never pruned). */
  prune(cutoffs: PruneCutoffs): Promise<PruneResult>;
  /** Releases the database. Idempotent. */
  close(): Promise<void>;
}
