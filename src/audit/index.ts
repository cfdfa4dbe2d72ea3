/**
 * `outpost-sdk/audit`: the agent's audit trail. {@link AuditLogger} writes
 * every event as one JSON line (built on pino, in-process), in call order,
 * to files rotated by size and day and deleted by age, and optionally ships
 * them in batches to a remote endpoint. Logging never throws into the caller.
 *
 * @module
 */
export { AuditLogger, type AuditFlushOptions } from './logger.js';
export { AuditContextLogger, type AuditContext, type AuditEventInput } from './context.js';
export type { AuditLoggerState } from './core.js';
export {
  auditLoggerDefaults,
  resolveAuditLoggerOptions,
  type AuditLoggerOptions,
  type ResolvedAuditLoggerOptions,
} from './options.js';
export {
  AUDIT_EVENT_TYPES,
  AUDIT_SCHEMA_VERSION,
  AUDIT_SEVERITIES,
  IMMEDIATE_EVENT_TYPES,
  type AuditDetails,
  type AuditEventType,
  type AuditRecord,
  type AuditSeverity,
} from './event-types.js';
export { REDACTED } from './redact.js';
export { shutdownHandlerDefaults, type ShutdownHandlerOptions } from './shutdown.js';
export type { ShipDropReason } from './remote.js';
export type {
  AuditDroppedEvent,
  AuditFilesDeletedEvent,
  AuditLoggerEvents,
  AuditRemoteStats,
  AuditRotatedEvent,
  AuditShipDroppedEvent,
  AuditShippedEvent,
  AuditShipRetryEvent,
  AuditStats,
  AuditWriteFailedEvent,
  AuditWriteRecoveredEvent,
} from './events.js';
export { AuditError, type AuditErrorCode } from '../errors.js';
