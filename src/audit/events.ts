/**
 * The audit logger's typed events and the shape `stats()` returns.
 */
import type { AuditError, OutpostError, UploadError } from '../errors.js';
import { SafeEmitter } from '../internal/safe-emitter.js';
import type { ShipDropReason } from './remote.js';

/** A write to the audit file failed, or the active file was found deleted (`write-failed`). The events stay in memory and are retried. */
export interface AuditWriteFailedEvent {
  /** `OUTPOST_AUDIT_WRITE_FAILED`, with the filesystem error (`ENOSPC`, `EIO`, …; `ENOENT` for a file found deleted) as `cause`. */
  readonly error: AuditError;
  /** The file that could not be written. */
  readonly file: string;
  /** Failed attempts since the last successful write, this one included. */
  readonly failedAttempts: number;
  /** Events in memory waiting for the file. */
  readonly heldEvents: number;
}

/** The audit file is writable again and everything held was written (`write-recovered`). */
export interface AuditWriteRecoveredEvent {
  /** The file written. */
  readonly file: string;
  /** Failed attempts before this success. */
  readonly failedAttempts: number;
  /** Time since the first failure, in ms. */
  readonly downtimeMs: number;
  /** Events dropped meanwhile because the memory limit was reached (see `docs/audit.md`). */
  readonly droppedEvents: number;
}

/** The logger moved to a new file (`rotated`). */
export interface AuditRotatedEvent {
  /** The file closed. */
  readonly from: string;
  /** The file now written. */
  readonly to: string;
}

/** Rotated files older than `maxAgeDays` were deleted (`files-deleted`). */
export interface AuditFilesDeletedEvent {
  /** Deleted files, as absolute paths. */
  readonly files: readonly string[];
}

/** A batch reached `remoteEndpoint` (`shipped`). */
export interface AuditShippedEvent {
  /** Events in the batch. */
  readonly events: number;
  /** Bytes of the request body. */
  readonly bytes: number;
  /** Attempts it took, this one included. */
  readonly attempts: number;
}

/** A POST to `remoteEndpoint` failed and will be retried (`ship-retry`). */
export interface AuditShipRetryEvent {
  /** Why the attempt failed. */
  readonly error: UploadError;
  /** Consecutive failed POSTs since the last 2xx (across batches), from 1. */
  readonly retry: number;
  /** Time during which nothing is sent to the endpoint, in ms (the policy's delay, or `Retry-After`). */
  readonly delayMs: number;
  /** Events in the batch. */
  readonly events: number;
}

/** Batches were given up without reaching `remoteEndpoint` (`ship-dropped`); they remain in the local file. */
export interface AuditShipDroppedEvent {
  /** Batches given up. */
  readonly batches: number;
  /** Events in them. */
  readonly events: number;
  /**
   * `queue-full`: `remoteQueueBatches` were waiting, so the oldest went;
   * `rejected`: the endpoint refused the batch for good (a 4xx other than 408/409/429);
   * `closed`: still queued when `close()` stopped waiting (`remoteCloseTimeoutMs`), or logged after it.
   */
  readonly reason: ShipDropReason;
  /** The refusal, for `rejected`. */
  readonly error?: UploadError | undefined;
}

/** Events that never reached the file (`dropped`). */
export interface AuditDroppedEvent {
  /** Events lost. */
  readonly events: number;
  /**
   * `memory-limit`: the file was failing (or the logger not started) and the
   * events held in memory reached the limit, so new ones were not kept;
   * `unwritable`: the file still failed when the logger closed (or the
   * process exited before `start()` opened it);
   * `after-close`: logged after `close()`.
   */
  readonly reason: 'memory-limit' | 'unwritable' | 'after-close';
}

/** Events of an {@link AuditLogger}. */
export interface AuditLoggerEvents {
  /** A write to the audit file failed (or the file was found deleted); the events are held and retried every second. */
  'write-failed': [event: AuditWriteFailedEvent];
  /** The audit file is writable again. */
  'write-recovered': [event: AuditWriteRecoveredEvent];
  /** The active file changed (size or day). */
  rotated: [event: AuditRotatedEvent];
  /** Old rotated files were deleted. */
  'files-deleted': [event: AuditFilesDeletedEvent];
  /** A batch reached the remote endpoint. */
  shipped: [event: AuditShippedEvent];
  /** A POST to the remote endpoint will be retried. */
  'ship-retry': [event: AuditShipRetryEvent];
  /** Batches were given up by remote shipping (they stay in the local file). */
  'ship-dropped': [event: AuditShipDroppedEvent];
  /** Events were lost (counted in `stats().droppedEvents`). */
  dropped: [event: AuditDroppedEvent];
  /** A background failure the host should see: a rotation or retention failure (`OUTPOST_AUDIT_*`). Logging goes on. */
  error: [error: OutpostError];
}

/** Remote shipping counters in {@link AuditStats}. */
export interface AuditRemoteStats {
  /** Batches waiting or being sent. */
  readonly queuedBatches: number;
  /** Events in them. */
  readonly queuedEvents: number;
  /** Batches acknowledged. */
  readonly shippedBatches: number;
  /** Events in them. */
  readonly shippedEvents: number;
  /** Batches given up (queue full, refused, or left at close). */
  readonly droppedBatches: number;
  /** Events in them. */
  readonly droppedEvents: number;
  /** Failed POSTs that were retried. */
  readonly retries: number;
}

/** What `stats()` returns. */
export interface AuditStats {
  /** File being written, or `undefined` before `start()`. */
  readonly file: string | undefined;
  /** Events logged (the last `seq`). */
  readonly loggedEvents: number;
  /** Events written to the file. */
  readonly writtenEvents: number;
  /** Events in memory: buffered, or held by a failing file. */
  readonly pendingEvents: number;
  /** Failed write attempts. */
  readonly writeErrors: number;
  /** Events that never reached the file (see the `dropped` event), after-close ones included. */
  readonly droppedEvents: number;
  /** Rotations so far. */
  readonly rotations: number;
  /** Files deleted by age retention. */
  readonly deletedFiles: number;
  /** Remote shipping, when `remoteEndpoint` is set. */
  readonly remote: AuditRemoteStats | undefined;
}

/** The audit logger's emitter. @internal */
export class AuditEmitter extends SafeEmitter<AuditLoggerEvents> {
  constructor() {
    super('audit');
  }
}
