/**
 * Protocol v1 constants and the pure functions both ends share: id rules,
 * header names and the idempotency key. See `docs/protocol.md`.
 * @internal
 */

/** Report ids and tenant ids: 1–256 characters of `[A-Za-z0-9_-]`. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,256}$/;
/** Most chunks one report may have. */
export const MAX_CHUNKS_PER_REPORT = 10_000;
/**
 * Largest uncompressed/compressed ratio of a zstd body an ingest server
 * accepts by default; senders fall back to `identity` above it.
 */
export const MAX_COMPRESSION_RATIO = 100;

/** Request paths. */
export const PATH_CHUNKS = '/v1/chunks';
export const PATH_REPORTS = '/v1/reports';

/** Header names (lower case, as node:http and undici present them). */
export const HEADER = Object.freeze({
  reportId: 'outpost-report-id',
  chunkIndex: 'outpost-chunk-index',
  chunkTotal: 'outpost-chunk-total',
  reprDigest: 'repr-digest',
  idempotencyKey: 'idempotency-key',
  contentEncoding: 'content-encoding',
  authorization: 'authorization',
  retryAfter: 'retry-after',
} as const);

/** Bearer tokens (RFC 6750 b64token / token68). */
export const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Whether `id` is a valid report or tenant id. */
export function isValidId(id: unknown): id is string {
  return typeof id === 'string' && ID_PATTERN.test(id);
}

/**
 * The idempotency key of a chunk (`<reportId>:<index>:<sha256hex>`) or, with
 * `index` undefined, of a whole report (`<reportId>:<sha256hex>`).
 */
export function idempotencyKey(reportId: string, index: number | undefined, sha256Hex: string): string {
  return index === undefined ? `${reportId}:${sha256Hex}` : `${reportId}:${index}:${sha256Hex}`;
}

/** Unwraps an RFC 8941 sf-string (`"abc"`) when quoted; bare tokens pass through. */
export function unquote(value: string): string {
  const v = value.trim();
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

/** Strict non-negative decimal integer parse for headers (no signs, no exponents, no blanks). */
export function parseHeaderInteger(value: string | undefined): number | undefined {
  if (value === undefined || !/^[0-9]{1,9}$/.test(value.trim())) return undefined;
  return Number(value.trim());
}
