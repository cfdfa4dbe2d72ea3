/**
 * Redaction of secrets in an event's `details`, at any depth. Copy on write:
 * details without a secret (the usual case) are passed through as they are,
 * and the caller's object is never changed.
 */
import type { AuditDetails } from './event-types.js';

/** What a redacted value becomes. */
export const REDACTED = '[REDACTED]';
/** Objects nested deeper than this are cut (their value becomes `[Truncated]`). */
export const MAX_DETAILS_DEPTH = 32;

/** Returns `details` with secrets replaced; the same object when there was nothing to replace. */
export type Redactor = (details: AuditDetails) => AuditDetails;

/**
 * Builds the pattern of `keys`: each key split into words (camelCase, `-`,
 * `_`, `.`, spaces), matched case-insensitively anywhere in a key with a
 * separator or nothing between the words. `apiKey` matches `apikey`,
 * `api_key`, `X-API-KEY`; `token` matches `accessToken`.
 */
export function redactPattern(keys: readonly string[]): RegExp | undefined {
  const parts = keys
    .map((key) =>
      key
        .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
        .split(/[-_.\s]+/)
        .filter((word) => word.length > 0)
        .map((word) => word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('[-_.\\s]?'),
    )
    .filter((part) => part.length > 0);
  return parts.length === 0 ? undefined : new RegExp(parts.join('|'), 'i');
}

/**
 * A {@link Redactor} for `keys`. Also turns `Error`s into `{ name, message, code }`
 * and cycles into `[Circular]`, walks what `toJSON()` returns (so an ORM record
 * is redacted like the plain object it serializes to), and hides the password
 * of a `URL`.
 */
export function compileRedactor(keys: readonly string[]): Redactor {
  const pattern = redactPattern(keys);
  // The walk is synchronous, so one stack of ancestors serves every call.
  const ancestors: object[] = [];
  const walk = (value: unknown, depth: number, ownKeysOnly = false): unknown => {
    if (typeof value !== 'object' || value === null) return value;
    if (value instanceof Error) return errorFields(value);
    if (ancestors.includes(value)) return '[Circular]';
    if (depth >= MAX_DETAILS_DEPTH) return '[Truncated]';
    if (!ownKeysOnly && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
      // Dates and Buffers serialize to what they hold; nothing to redact there.
      if (value instanceof Date || Buffer.isBuffer(value)) return value;
      if (value instanceof URL) return value.password === '' ? value : redactUrl(value);
      // An ORM record, a model: JSON.stringify would write what toJSON returns, so redact that.
      // A toJSON that throws makes the details unserializable (the caller's try keeps the event).
      const json: unknown = (value as { toJSON(key?: string): unknown }).toJSON();
      if (json === value) return walk(value, depth, true); // `toJSON() { return this }`: its own keys are written
      ancestors.push(value);
      try {
        return walk(json, depth + 1);
      } finally {
        ancestors.pop();
      }
    }
    ancestors.push(value);
    try {
      if (Array.isArray(value)) {
        let copy: unknown[] | undefined;
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i];
          const out = walk(item, depth + 1);
          if (out !== item) {
            copy ??= value.slice();
            copy[i] = out;
          }
        }
        return copy ?? value;
      }
      const record = value as Record<string, unknown>;
      let copy: Record<string, unknown> | undefined;
      for (const key in record) {
        if (!Object.prototype.hasOwnProperty.call(record, key)) continue;
        const item = record[key];
        const out = pattern !== undefined && item !== undefined && item !== null && pattern.test(key) ? REDACTED : walk(item, depth + 1);
        if (out !== item) {
          copy ??= { ...record };
          copy[key] = out;
        }
      }
      return copy ?? value;
    } finally {
      ancestors.pop();
    }
  };
  return (details) => {
    if (typeof details !== 'object' || details === null || Array.isArray(details)) return { value: walk(details, 1) };
    ancestors.length = 0;
    return walk(details, 0) as AuditDetails;
  };
}

/** A URL as JSON writes it (its `href`), with the password replaced. */
function redactUrl(url: URL): string {
  return `${url.protocol}//${url.username}:${REDACTED}@${url.host}${url.pathname}${url.search}${url.hash}`;
}

/** The JSON-worthy fields of an error (its own properties are not enumerable). */
export function errorFields(err: Error): { name: string; message: string; code?: string } {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? { name: err.name, message: err.message, code } : { name: err.name, message: err.message };
}
