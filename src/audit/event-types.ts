/**
 * The audit trail's vocabulary: event types, severities, and the shape of one
 * line on disk.
 */

/** Every event type, grouped as in the reference agent SDK: agent, job, scan, upload, chunk, resource, security. */
export const AUDIT_EVENT_TYPES = Object.freeze([
  'agent_start',
  'agent_stop',
  'agent_error',
  'job_received',
  'job_started',
  'job_completed',
  'job_failed',
  'job_timeout',
  'scan_started',
  'scan_completed',
  'scan_failed',
  'upload_started',
  'upload_completed',
  'upload_failed',
  'upload_retry',
  'chunk_created',
  'chunk_uploaded',
  'chunk_failed',
  'chunk_cleanup',
  'resource_throttle',
  'resource_resume',
  'resource_warning',
  'auth_failed',
  'rate_limited',
  'validation_error',
] as const);

/** The `type` of an audit event. */
export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

/** Severities, lowest first. */
export const AUDIT_SEVERITIES = Object.freeze(['DEBUG', 'INFO', 'WARN', 'ERROR', 'CRITICAL'] as const);

/** The `severity` of an audit event. `ERROR` and `CRITICAL` are written to the file at once. */
export type AuditSeverity = (typeof AUDIT_SEVERITIES)[number];

/** Event types written to the file at once whatever their severity (besides every `ERROR` and `CRITICAL`). */
export const IMMEDIATE_EVENT_TYPES: ReadonlySet<AuditEventType> = new Set<AuditEventType>(['auth_failed', 'agent_stop']);

/** Version of the line format below; bumped when a field changes meaning or disappears. */
export const AUDIT_SCHEMA_VERSION = 1;

/** Free-form details of an event. Secrets in it are redacted at any depth (see `redactKeys`). */
export type AuditDetails = Readonly<Record<string, unknown>>;

/**
 * One line of the audit file, parsed. Fields that do not apply are absent,
 * never `null`.
 */
export interface AuditRecord {
  /** Severity. */
  readonly severity: AuditSeverity;
  /** When the event was logged: ISO 8601 in UTC with milliseconds, e.g. `2025-01-15T10:30:00.000Z`. */
  readonly timestamp: string;
  /** `agentId` of the logger. */
  readonly agent_id: string;
  /** `tenantId` of the logger, when it has one. */
  readonly tenant_id?: string;
  /** {@link AUDIT_SCHEMA_VERSION} when the line was written. */
  readonly schema_version: number;
  /** What happened. */
  readonly type: AuditEventType;
  /** The job the event is about (from a helper or `withContext`). */
  readonly job_id?: string;
  /** The report the event is about (from a helper or `withContext`). */
  readonly report_id?: string;
  /** How long the thing took, in milliseconds. */
  readonly duration_ms?: number;
  /** Free-form details, secrets redacted. */
  readonly details?: Readonly<Record<string, unknown>>;
  /** Unique id of the event (`<run id>.<seq>`), for dedupe downstream. */
  readonly event_id: string;
  /** Position of the event in this logger's run: 1, 2, 3, … with no gap unless `stats().droppedEvents` says so. */
  readonly seq: number;
  /** Human-readable message. */
  readonly message: string;
}
