/**
 * The logging methods: by severity, the specialised helpers, and context
 * loggers that stamp a job and a report on every event. An `AuditLogger` is
 * the context logger with an empty context.
 */
import { InvalidArgumentError } from '../errors.js';
import type { AuditCore } from './core.js';
import type { AuditDetails, AuditEventType, AuditSeverity } from './event-types.js';
import { textOf } from './line.js';
import { errorFields } from './redact.js';

/** What {@link AuditContextLogger.withContext} stamps on every event. */
export interface AuditContext {
  /** Written as `job_id`. */
  readonly jobId?: string | undefined;
  /** Written as `report_id`. */
  readonly reportId?: string | undefined;
}

/** One event in object form, for {@link AuditContextLogger.log}. */
export interface AuditEventInput {
  /** What happened. */
  readonly type: AuditEventType;
  /** Human-readable message. */
  readonly message: string;
  /** Severity. @default 'INFO' */
  readonly severity?: AuditSeverity | undefined;
  /** Free-form details; secrets are redacted. */
  readonly details?: AuditDetails | undefined;
  /** How long the thing took, in ms (`duration_ms`). */
  readonly durationMs?: number | undefined;
  /** `job_id`; overrides the context's. */
  readonly jobId?: string | undefined;
  /** `report_id`; overrides the context's. */
  readonly reportId?: string | undefined;
}

function checkId(name: string, value: unknown): string | undefined {
  if (value !== undefined && (typeof value !== 'string' || value.length === 0)) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be a non-empty string, got ${typeof value === 'string' ? '""' : typeof value}`);
  }
  return value;
}

/**
 * Logs audit events, stamping its context (`jobId`, `reportId`) on each.
 * No method throws or waits: events are buffered and written in call order,
 * `ERROR`, `CRITICAL`, `auth_failed` and `agent_stop` at once.
 *
 * @example
 * ```ts
 * const job = audit.withContext({ jobId: 'job-42' });
 * job.info('scan_started', 'Scan started', { tool: 'semgrep' });
 * job.jobCompleted('job-42', 1520, { findings: 3 });
 * ```
 */
export class AuditContextLogger {
  readonly #core: AuditCore;
  readonly #jobId: string | undefined;
  readonly #reportId: string | undefined;

  /** @internal */
  constructor(core: AuditCore, context: AuditContext) {
    this.#core = core;
    this.#jobId = context.jobId;
    this.#reportId = context.reportId;
  }

  /** The job and report stamped on every event of this logger. */
  get context(): AuditContext {
    return { jobId: this.#jobId, reportId: this.#reportId };
  }

  /**
   * A logger that stamps `jobId` and `reportId` (over this logger's own) on
   * every event. It shares this logger's buffer, file and lifecycle.
   * @throws {@link InvalidArgumentError} when an id is not a non-empty string
   */
  withContext(context: AuditContext): AuditContextLogger {
    if (typeof context !== 'object' || context === null) throw new InvalidArgumentError('Expected the context to be an object `{ jobId?, reportId? }`');
    const jobId = checkId('jobId', context.jobId) ?? this.#jobId;
    const reportId = checkId('reportId', context.reportId) ?? this.#reportId;
    return new AuditContextLogger(this.#core, { jobId, reportId });
  }

  /** Logs a `DEBUG` event. */
  debug(type: AuditEventType, message: string, details?: AuditDetails): void {
    this.#core.record('DEBUG', type, message, details, this.#jobId, this.#reportId, undefined);
  }

  /** Logs an `INFO` event. */
  info(type: AuditEventType, message: string, details?: AuditDetails): void {
    this.#core.record('INFO', type, message, details, this.#jobId, this.#reportId, undefined);
  }

  /** Logs a `WARN` event. */
  warn(type: AuditEventType, message: string, details?: AuditDetails): void {
    this.#core.record('WARN', type, message, details, this.#jobId, this.#reportId, undefined);
  }

  /** Logs an `ERROR` event, written at once. An `Error` in `details` is written as `{ name, message, code }`. */
  error(type: AuditEventType, message: string, details?: AuditDetails): void {
    this.#core.record('ERROR', type, message, details, this.#jobId, this.#reportId, undefined);
  }

  /** Logs a `CRITICAL` event, written at once. */
  critical(type: AuditEventType, message: string, details?: AuditDetails): void {
    this.#core.record('CRITICAL', type, message, details, this.#jobId, this.#reportId, undefined);
  }

  /** Logs an event given as an object (any severity, with `durationMs` and ids). */
  log(event: AuditEventInput): void {
    try {
      if (typeof event !== 'object' || event === null) {
        this.#core.record('WARN', 'validation_error', 'log() was called without an event object', { value: String(event) }, this.#jobId, this.#reportId, undefined);
        return;
      }
      const { severity, type, message, details, durationMs, jobId, reportId } = event;
      this.#core.record(severity ?? 'INFO', type, message, details, jobId ?? this.#jobId, reportId ?? this.#reportId, durationMs);
    } catch (err) {
      this.#invalid('log', err);
    }
  }

  /** `INFO job_started`, with `details.job_type`. */
  jobStarted(jobId: string, jobType: string, details?: AuditDetails): void {
    try {
      const id = textOf(jobId);
      this.#core.record('INFO', 'job_started', `Job ${id} started`, withFields({ job_type: textOf(jobType) }, details), id, this.#reportId, undefined);
    } catch (err) {
      this.#invalid('jobStarted', err);
    }
  }

  /** `INFO job_completed`, with `duration_ms`. */
  jobCompleted(jobId: string, durationMs: number, details?: AuditDetails): void {
    try {
      const id = textOf(jobId);
      this.#core.record('INFO', 'job_completed', `Job ${id} completed in ${textOf(durationMs)} ms`, details, id, this.#reportId, durationMs);
    } catch (err) {
      this.#invalid('jobCompleted', err);
    }
  }

  /** `ERROR job_failed` (written at once), with the error as `details.error` `{ name, message, code }`. */
  jobFailed(jobId: string, err: unknown, details?: AuditDetails): void {
    try {
      const id = textOf(jobId);
      const error = describeError(err);
      this.#core.record('ERROR', 'job_failed', `Job ${id} failed: ${error.message}`, withFields({ error }, details, true), id, this.#reportId, undefined);
    } catch (e) {
      this.#invalid('jobFailed', e);
    }
  }

  /** `INFO chunk_uploaded`, with `details.chunk_index` (0-based), `total_chunks` and `bytes`. */
  chunkUploaded(reportId: string, index: number, total: number, bytes: number): void {
    try {
      const id = textOf(reportId);
      const position = typeof index === 'number' ? index + 1 : typeof index === 'bigint' ? index + 1n : textOf(index);
      this.#core.record('INFO', 'chunk_uploaded', `Chunk ${textOf(position)} of ${textOf(total)} of report ${id} uploaded`, { chunk_index: index, total_chunks: total, bytes }, this.#jobId, id, undefined);
    } catch (err) {
      this.#invalid('chunkUploaded', err);
    }
  }

  /** `WARN resource_throttle`: `reason` is the message, `metrics` the details. */
  resourceThrottle(reason: string, metrics?: AuditDetails): void {
    this.#core.record('WARN', 'resource_throttle', reason, metrics, this.#jobId, this.#reportId, undefined);
  }

  /** A method's arguments made it throw (a getter, a proxy): record that instead, never throw into the caller. */
  #invalid(method: string, err: unknown): void {
    try {
      this.#core.record('WARN', 'validation_error', `${method}() could not record its event: ${errorText(err)}`, { reason: 'audit_invalid_arguments', method }, this.#jobId, this.#reportId, undefined);
    } catch {
      // record() never throws; nothing else to do
    }
  }
}

/**
 * `fields` then the caller's `details` (the fields win when `fieldsWin`).
 * Details that cannot be read (a getter that throws) are marked, not thrown.
 */
function withFields(fields: Record<string, unknown>, details: AuditDetails | undefined, fieldsWin = false): AuditDetails {
  if (details === undefined || details === null) return fields;
  try {
    return fieldsWin ? { ...details, ...fields } : { ...fields, ...details };
  } catch {
    return { ...fields, unserializable: true };
  }
}

/** `{ name, message, code }` of an `Error`, `{ message }` of anything else; never throws. */
function describeError(err: unknown): { name?: string; message: string; code?: string } {
  if (err instanceof Error) {
    try {
      const fields = errorFields(err);
      return { ...fields, name: textOf(fields.name), message: textOf(fields.message) };
    } catch {
      return { message: '[unreadable error]' };
    }
  }
  return { message: textOf(err) };
}

/** The message of what a method threw, never throwing itself. */
function errorText(err: unknown): string {
  try {
    return err instanceof Error ? textOf(err.message) : textOf(err);
  } catch {
    return '[unreadable error]';
  }
}
