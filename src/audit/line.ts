/**
 * One event → one JSON line, serialized by pino into the buffer. What can be
 * done once is done once: the bindings (`agent_id`, `tenant_id`,
 * `schema_version`) and the severity prefix are pre-serialized by pino, the
 * event id prefix is drawn at construction, and the ISO timestamp is built
 * once per millisecond.
 * @internal
 */
import { randomBytes } from 'node:crypto';
import { pino, type LogFn } from 'pino';
import type { EventBuffer } from './buffer.js';
import { AUDIT_SCHEMA_VERSION, type AuditDetails, type AuditEventType, type AuditSeverity } from './event-types.js';
import { compileRedactor, type Redactor } from './redact.js';

const PINO_LEVEL: Readonly<Record<AuditSeverity, 'debug' | 'info' | 'warn' | 'error' | 'fatal'>> = { DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error', CRITICAL: 'fatal' };
const SEVERITY_OF: Readonly<Record<string, AuditSeverity>> = { debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR', fatal: 'CRITICAL' };

/** The per-event fields pino serializes after the bindings; `undefined` ones are left out. */
interface LineFields {
  type: string;
  job_id: string | undefined;
  report_id: string | undefined;
  duration_ms: number | undefined;
  details: unknown;
  event_id: string;
  seq: number;
}

/** What a serializer needs to know about its logger. */
export interface LineSettings {
  readonly agentId: string;
  readonly tenantId: string | undefined;
  readonly redactKeys: readonly string[];
}

/** Serializes events into an {@link EventBuffer}. */
export class LineSerializer {
  readonly #log: Readonly<Record<AuditSeverity, LogFn>>;
  readonly #redact: Redactor;
  /** Random per run: event ids are `<prefix><seq>`, unique across runs and agents. */
  readonly #idPrefix = `${randomBytes(12).toString('base64url')}.`;
  #lastMs = Number.NaN;
  #iso = '';
  #timeField = '';

  /**
   * @param settings - identity and redaction
   * @param buffer - pino's destination
   */
  constructor(settings: LineSettings, buffer: EventBuffer) {
    this.#redact = compileRedactor(settings.redactKeys);
    const base: Record<string, unknown> = { agent_id: settings.agentId };
    if (settings.tenantId !== undefined) base['tenant_id'] = settings.tenantId;
    base['schema_version'] = AUDIT_SCHEMA_VERSION;
    const logger = pino(
      {
        level: 'debug',
        base,
        messageKey: 'message',
        timestamp: () => this.#timeField,
        formatters: { level: (label) => ({ severity: SEVERITY_OF[label] ?? label }) },
      },
      buffer,
    );
    const method = (severity: AuditSeverity): LogFn => logger[PINO_LEVEL[severity]].bind(logger) as LogFn;
    this.#log = { DEBUG: method('DEBUG'), INFO: method('INFO'), WARN: method('WARN'), ERROR: method('ERROR'), CRITICAL: method('CRITICAL') };
  }

  /** ISO timestamp of the last event serialized. */
  get timestamp(): string {
    return this.#iso;
  }

  /**
   * Appends one line to the buffer and returns the details as written
   * (redacted). Never throws: details that cannot be serialized are replaced
   * by `{ "unserializable": true }`. `message` must be a string (see {@link textOf}).
   */
  write(seq: number, severity: AuditSeverity, type: AuditEventType, message: string, details: AuditDetails | undefined, jobId: string | undefined, reportId: string | undefined, durationMs: number | undefined): unknown {
    const now = Date.now();
    if (now !== this.#lastMs) {
      this.#lastMs = now;
      this.#iso = new Date(now).toISOString();
      this.#timeField = `,"timestamp":"${this.#iso}"`;
    }
    const fields: LineFields = { type, job_id: jobId, report_id: reportId, duration_ms: durationMs, details: undefined, event_id: this.#idPrefix + seq, seq };
    const log = this.#log[severity] ?? this.#log.INFO;
    try {
      // `null` is "no details" too: absent fields are omitted, never null.
      fields.details = details === undefined || details === null ? undefined : this.#redact(details);
      log(fields, message);
    } catch {
      // A getter or a toJSON that throws: keep the event, not its details.
      fields.details = { unserializable: true };
      log(fields, message);
    }
    return fields.details;
  }
}

/**
 * Text for a value that should have been a string (a message, an id), never
 * throwing: a Symbol, a BigInt, an object without `toString` or with one that
 * throws. `undefined` and `null` give `''`.
 */
export function textOf(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === undefined || value === null) return '';
  try {
    return String(value); // String(Symbol('s')) is 'Symbol(s)'; only implicit conversion throws
  } catch {
    try {
      return Object.prototype.toString.call(value); // '[object Object]' for a null-prototype object
    } catch {
      return '[unprintable]'; // a Proxy that throws on every trap
    }
  }
}

/** An id that is not a string (a number, a Symbol, an object), as text; `null` as absent. */
export function idOf(value: unknown): string | undefined {
  return value === null ? undefined : textOf(value);
}
