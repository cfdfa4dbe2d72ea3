/**
 * `outpost-sdk/ingest`: the server side of protocol v1 — safe decompression,
 * validation, dedupe, reassembly and tenant isolation, as a `(req, res)` handler.
 *
 * @module
 */
export { createIngestHandler, type IngestCloseOptions, type IngestHandler, type IngestHandlerState } from './handler.js';
export type { DeliveredEvent, IngestEvents, IngestStats, RejectedEvent, StoredEvent } from './events.js';
export { ingestDefaults, type Authenticate, type IngestHandlerOptions, type IngestedReport, type ReportInfo, type ResolvedIngestOptions } from './options.js';
export { staticTokenAuthenticator } from './auth.js';
export { SqliteIngestStore, INGEST_SCHEMA_VERSION } from './sqlite-store.js';
export { assembleReport } from './assemble.js';
export type {
  IngestStore,
  PendingDelivery,
  PruneCutoffs,
  PruneResult,
  PutChunkInput,
  PutChunkOutcome,
  PutChunkResult,
  ReportKind,
  StoredChunkBody,
  StoredReport,
} from './store.js';
export { IngestDeliveryError, IngestError, ListenerError, ingestErrorStatus, type IngestErrorCode } from '../errors.js';
