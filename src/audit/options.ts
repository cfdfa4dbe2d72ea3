/**
 * Options of the {@link AuditLogger}: declared, defaulted and validated here, once.
 */
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { InvalidOptionError } from '../errors.js';
import * as v from '../internal/validate.js';
import { RetryPolicy, type RetryPolicyOptions } from '../transport/index.js';

/** Options of {@link AuditLogger}. Sizes in MiB (1 MB here = 1 MiB = 1 048 576 bytes). */
export interface AuditLoggerOptions {
  /** Agent identifier, stamped on every event as `agent_id`. Required. */
  readonly agentId: string;
  /** Tenant identifier, stamped on every event as `tenant_id`; omitted from the lines when absent. */
  readonly tenantId?: string | undefined;
  /**
   * Base path of the audit files. The files are named with the local date and a
   * counter before the extension: `audit.log` → `audit.2025-01-15.1.log`,
   * `audit.2025-01-15.2.log`, … Created 0600; a missing directory is created 0700.
   * Give the logger a directory of its own: the counter continues from the
   * highest number among the directory's files with the same extension.
   * @default `~/.outpost/audit.log`
   */
  readonly logFile?: string | undefined;
  /** Size at which the active file is rotated, in MiB; approximate (see `docs/audit.md`). From 1/1024 (1 KiB), rounded to whole KiB. @default 100 */
  readonly maxSizeMB?: number | undefined;
  /** Rotated files whose last write is older than this are deleted (at start, then hourly), in days; 0 keeps them forever. @default 30 */
  readonly maxAgeDays?: number | undefined;
  /** Events held in memory before they are written; 1 writes every event at once. @default 100 */
  readonly bufferSize?: number | undefined;
  /** Longest time an event waits in memory before it is written, in ms. @default 5000 (5 s) */
  readonly flushIntervalMs?: number | undefined;
  /** URL that batches of lines are POSTed to (`application/x-ndjson`); no shipping when absent. */
  readonly remoteEndpoint?: string | URL | undefined;
  /** Extra request headers for `remoteEndpoint`, e.g. `{ authorization: 'Bearer …' }`; no two names that differ only in case. @default {} */
  readonly remoteHeaders?: Readonly<Record<string, string>> | undefined;
  /** Batches waiting to be shipped, at most; beyond it the oldest batch is dropped (and counted). @default 100 */
  readonly remoteQueueBatches?: number | undefined;
  /** Timeout of one POST, in ms. @default 10000 (10 s) */
  readonly remoteTimeoutMs?: number | undefined;
  /** How long `close()` keeps shipping what is queued before it gives up on it, in ms. @default 5000 (5 s) */
  readonly remoteCloseTimeoutMs?: number | undefined;
  /** Backoff of failed POSTs: a {@link RetryPolicy} or its options. @default new RetryPolicy({ retryDelayMs: 1000, maxRetryDelayMs: 60000 }) */
  readonly remoteRetryPolicy?: RetryPolicy | RetryPolicyOptions | undefined;
  /**
   * Keys whose values are replaced by `[REDACTED]` anywhere in `details`.
   * Matched case-insensitively as a part of the key, with `-`, `_`, `.` or
   * nothing between words: `apiKey` also catches `api_key` and `X-Api-Key`,
   * `token` also catches `accessToken`. `[]` turns redaction off.
   * @default ['authorization', 'token', 'password', 'apiKey', 'secret']
   */
  readonly redactKeys?: readonly string[] | undefined;
  /** Also print every event as one human-readable line on stderr. @default false */
  readonly verbose?: boolean | undefined;
}

/** Defaults of {@link AuditLoggerOptions}. */
export const auditLoggerDefaults = Object.freeze({
  /** `~/.outpost/audit.log`. */
  logFile: join(homedir(), '.outpost', 'audit.log'),
  /** 100 MiB. */
  maxSizeMB: 100,
  /** 30 days. */
  maxAgeDays: 30,
  /** 100 events. */
  bufferSize: 100,
  /** 5 s. */
  flushIntervalMs: 5_000,
  /** No extra headers. */
  remoteHeaders: Object.freeze({}) as Readonly<Record<string, string>>,
  /** 100 batches. */
  remoteQueueBatches: 100,
  /** 10 s. */
  remoteTimeoutMs: 10_000,
  /** 5 s. */
  remoteCloseTimeoutMs: 5_000,
  /** Retry delay 1 s doubling to 60 s, full jitter, `Retry-After` honoured. */
  remoteRetryPolicy: Object.freeze({ retryDelayMs: 1_000, maxRetryDelayMs: 60_000 }) as RetryPolicyOptions,
  /** The usual names of secrets. */
  redactKeys: Object.freeze(['authorization', 'token', 'password', 'apiKey', 'secret']) as readonly string[],
  /** Off. */
  verbose: false,
});

/** {@link AuditLoggerOptions} after defaults and validation. */
export interface ResolvedAuditLoggerOptions {
  /** Agent identifier. */
  readonly agentId: string;
  /** Tenant identifier, or `undefined`. */
  readonly tenantId: string | undefined;
  /** Absolute base path of the audit files. */
  readonly logFile: string;
  /** Rotation size, in MiB. */
  readonly maxSizeMB: number;
  /** Age after which rotated files are deleted, in days; 0 keeps them. */
  readonly maxAgeDays: number;
  /** Events held in memory before a write. */
  readonly bufferSize: number;
  /** Longest wait of an event in memory, in ms. */
  readonly flushIntervalMs: number;
  /** Where batches are shipped, or `undefined`. */
  readonly remoteEndpoint: URL | undefined;
  /** Extra request headers for shipping, names in lower case. */
  readonly remoteHeaders: Readonly<Record<string, string>>;
  /** Most batches waiting to be shipped. */
  readonly remoteQueueBatches: number;
  /** Timeout of one POST, in ms. */
  readonly remoteTimeoutMs: number;
  /** How long `close()` keeps shipping, in ms. */
  readonly remoteCloseTimeoutMs: number;
  /** The retry policy of shipping. */
  readonly remoteRetryPolicy: RetryPolicy;
  /** Keys redacted in `details`. */
  readonly redactKeys: readonly string[];
  /** Human-readable copy on stderr. */
  readonly verbose: boolean;
}

const REMOTE_KEYS = ['remoteHeaders', 'remoteQueueBatches', 'remoteTimeoutMs', 'remoteCloseTimeoutMs', 'remoteRetryPolicy'] as const;
const KEYS = ['agentId', 'tenantId', 'logFile', 'maxSizeMB', 'maxAgeDays', 'bufferSize', 'flushIntervalMs', 'remoteEndpoint', ...REMOTE_KEYS, 'redactKeys', 'verbose'];
/** File names the rotation can number: safe characters in dot-separated parts (the extension needs 2+ characters, checked apart). */
const FILE_NAME = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;
/** Characters pino-roll refuses in a path (Windows restrictions). */
const BAD_PATH_CHARS = /[<>"|?*:\0]/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const RESERVED_HEADERS = new Set(['content-type', 'content-length', 'transfer-encoding', 'host', 'connection', 'keep-alive', 'upgrade', 'expect']);
/** 1 KiB: pino-roll rotates at whole KiB. */
const MIN_SIZE_MB = 1 / 1024;
const MAX_SIZE_MB = 1024 * 1024;
const MAX_AGE_DAYS = 36_500;

/**
 * Merges `options` over {@link auditLoggerDefaults} and validates every field.
 * @throws {@link InvalidOptionError} naming the field, what was expected and what came
 */
export function resolveAuditLoggerOptions(options: AuditLoggerOptions): ResolvedAuditLoggerOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('AuditLogger options must be an object with at least `agentId`');
  v.knownKeys('AuditLogger', options, KEYS);
  const o = options;
  const agentId = v.nonEmptyString('agentId', o.agentId);
  const tenantId = o.tenantId === undefined ? undefined : v.nonEmptyString('tenantId', o.tenantId);
  const logFile = resolveLogFile(o.logFile ?? auditLoggerDefaults.logFile);

  const maxSizeMB = o.maxSizeMB ?? auditLoggerDefaults.maxSizeMB;
  if (typeof maxSizeMB !== 'number' || !Number.isFinite(maxSizeMB) || maxSizeMB < MIN_SIZE_MB || maxSizeMB > MAX_SIZE_MB) {
    v.fail('maxSizeMB', `a number of MiB from 1/1024 = 0.0009765625 (1 KiB) to ${MAX_SIZE_MB} (1 TiB)`, maxSizeMB);
  }
  const maxAgeDays = v.number('maxAgeDays', o.maxAgeDays ?? auditLoggerDefaults.maxAgeDays, 0, MAX_AGE_DAYS);
  const bufferSize = v.integer('bufferSize', o.bufferSize ?? auditLoggerDefaults.bufferSize, 1, 100_000);
  const flushIntervalMs = v.timerMs('flushIntervalMs', o.flushIntervalMs ?? auditLoggerDefaults.flushIntervalMs, 1);

  const remoteEndpoint = o.remoteEndpoint === undefined ? undefined : resolveEndpoint(o.remoteEndpoint);
  if (remoteEndpoint === undefined) {
    for (const key of REMOTE_KEYS) {
      if (o[key] !== undefined) throw new InvalidOptionError(`\`${key}\` is set but \`remoteEndpoint\` is not: set \`remoteEndpoint\` to ship events, or drop \`${key}\``);
    }
  }
  const remoteHeaders = resolveHeaders(o.remoteHeaders ?? auditLoggerDefaults.remoteHeaders);
  const remoteQueueBatches = v.integer('remoteQueueBatches', o.remoteQueueBatches ?? auditLoggerDefaults.remoteQueueBatches, 1, 1_000_000);
  const remoteTimeoutMs = v.timerMs('remoteTimeoutMs', o.remoteTimeoutMs ?? auditLoggerDefaults.remoteTimeoutMs, 1);
  const remoteCloseTimeoutMs = v.timerMs('remoteCloseTimeoutMs', o.remoteCloseTimeoutMs ?? auditLoggerDefaults.remoteCloseTimeoutMs, 0);
  const policy: unknown = o.remoteRetryPolicy ?? auditLoggerDefaults.remoteRetryPolicy;
  let remoteRetryPolicy: RetryPolicy;
  if (policy instanceof RetryPolicy) remoteRetryPolicy = policy;
  else if (typeof policy === 'object' && policy !== null && !Array.isArray(policy)) remoteRetryPolicy = new RetryPolicy(policy as RetryPolicyOptions);
  else v.fail('remoteRetryPolicy', 'a RetryPolicy or its options', policy);

  const keys: unknown = o.redactKeys ?? auditLoggerDefaults.redactKeys;
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string' && /[A-Za-z0-9]/.test(k))) {
    v.fail('redactKeys', 'an array of key names (strings with at least one letter or digit)', keys);
  }
  const verbose = v.boolean('verbose', o.verbose ?? auditLoggerDefaults.verbose);

  return Object.freeze({
    agentId,
    tenantId,
    logFile,
    maxSizeMB,
    maxAgeDays,
    bufferSize,
    flushIntervalMs,
    remoteEndpoint,
    remoteHeaders,
    remoteQueueBatches,
    remoteTimeoutMs,
    remoteCloseTimeoutMs,
    remoteRetryPolicy,
    redactKeys: Object.freeze([...(keys as string[])]),
    verbose,
  });
}

function resolveLogFile(value: unknown): string {
  const file = v.nonEmptyString('logFile', value);
  const name = basename(file);
  if (/[\\/]$/.test(file) || !FILE_NAME.test(name) || /\.[^.]$/.test(name)) {
    v.fail('logFile', 'a file path whose name is letters, digits, `-`, `_` and dots, with an extension of 2+ characters if any (e.g. `/var/lib/agent/audit.log`)', file);
  }
  if (BAD_PATH_CHARS.test(dirname(file).replace(/^[A-Za-z]:/, ''))) v.fail('logFile', 'a path without < > " | ? * : or NUL', file);
  return resolve(file);
}

function resolveEndpoint(value: unknown): URL {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    v.fail('remoteEndpoint', 'an absolute http(s) URL', value);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') v.fail('remoteEndpoint', 'an http: or https: URL', String(value));
  if (url.username !== '' || url.password !== '') v.fail('remoteEndpoint', 'a URL without credentials (put them in `remoteHeaders`)', url.origin);
  if (url.hash !== '') v.fail('remoteEndpoint', 'a URL without a fragment', String(value));
  return url;
}

function resolveHeaders(value: unknown): Readonly<Record<string, string>> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) v.fail('remoteHeaders', 'an object of header names to string values', value);
  const out: Record<string, string> = {};
  const given = new Map<string, string>();
  for (const [name, text] of Object.entries(value)) {
    const lower = name.toLowerCase();
    if (!HEADER_NAME.test(name)) v.fail('remoteHeaders', 'header names made of token characters', name);
    // Header names are case-insensitive: `Authorization` and `authorization` are one header, and one value would silently win.
    const twin = given.get(lower);
    if (twin !== undefined) v.fail('remoteHeaders', `header names that differ in more than case (\`${twin}\` is given too)`, name);
    given.set(lower, name);
    if (RESERVED_HEADERS.has(lower)) v.fail('remoteHeaders', `headers other than ${[...RESERVED_HEADERS].join(', ')} (the logger sets those)`, name);
    // Never echo a header value: it is usually a credential.
    if (typeof text !== 'string' || /[\r\n\0]/.test(text)) throw new InvalidOptionError(`Expected \`remoteHeaders.${name}\` to be a string without CR, LF or NUL`);
    out[lower] = text;
  }
  return Object.freeze(out);
}
