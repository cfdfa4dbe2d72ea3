/**
 * `outpost-sdk/chunk`: the durable outbox. {@link ChunkManager} splits large
 * reports into chunks, compresses them, keeps them in SQLite until the server
 * acknowledged every one, and keeps the disk bounded with layered cleanup.
 *
 * @module
 */
export {
  ChunkManager,
  type ChunkManagerState,
  type EncodedSubmission,
  type StreamSubmitOptions,
  type SubmitOptions,
  type SubmitReceipt,
} from './chunk-manager.js';
export {
  chunkManagerDefaults,
  defaultFindingAssetIds,
  resolveChunkManagerOptions,
  type ChunkManagerOptions,
  type ResolvedChunkManagerOptions,
  type StorageFullPolicy,
  type UploaderSource,
} from './options.js';
export type { Report } from './encode.js';
export type { WholeReportBody } from './whole-body.js';
export { encodeWholeReport } from './whole.js';
export type { StreamAsset, StreamFinding, StreamItem } from './stream.js';
export type { CleanupLayer, CleanupLayerResult, CleanupResult, CleanupTrigger, DroppedReport } from './cleanup.js';
export type {
  ChunkCreatedEvent,
  ChunkDeadEvent,
  ChunkDeadReason,
  ChunkEventBase,
  ChunkManagerEvents,
  ChunkManagerStats,
  ChunkRetryEvent,
  ChunkStateStats,
  ChunkUploadedEvent,
  ReportCompletedEvent,
  OutboxChunk,
  OutboxReport,
  StorageFullEvent,
} from './events.js';
export { CHUNK_SCHEMA_VERSION } from './schema.js';
export { ChunkError, DiskFullError, StorageFullError, type ChunkErrorCode } from '../errors.js';
