/**
 * The ingest handler's typed events, and an emitter that never lets a
 * listener's throw break a response or crash the process.
 */
import type { IngestErrorCode, OutpostError } from '../errors.js';
import { SafeEmitter } from '../internal/safe-emitter.js';

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

/** The ingest handler's emitter. @internal */
export class IngestEmitter extends SafeEmitter<IngestEvents> {
  constructor() {
    super('ingest');
  }
}
