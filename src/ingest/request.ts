/**
 * Validation of protocol v1 request headers, before the body is read.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { IngestError } from '../errors.js';
import { HEADER, idempotencyKey, isValidId, parseHeaderInteger, unquote } from '../internal/protocol.js';
import { parseReprDigest } from '../internal/repr-digest.js';
import type { BodyEncoding } from '../transport/index.js';

/** A validated upload request (headers only). */
export interface UploadHeaders {
  readonly reportId: string;
  /** 0 for a whole report. */
  readonly index: number;
  /** 1 for a whole report. */
  readonly total: number;
  readonly whole: boolean;
  readonly sha256: Buffer;
  readonly sha256Hex: string;
  readonly encoding: BodyEncoding;
  readonly contentLength: number | undefined;
}

const TOKEN = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i; // the token part is TOKEN68

/** The bearer token of `Authorization`, or `undefined` when absent or malformed. */
export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const value = headers.authorization;
  if (value === undefined || value.length > 8192) return undefined;
  return TOKEN.exec(value)?.[1];
}

function single(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  if (Array.isArray(value)) throw new IngestError('OUTPOST_INGEST_BAD_REQUEST', `Header ${name} given more than once`);
  return value;
}

/** Validates the headers of `POST /v1/chunks` (`whole` false) or `POST /v1/reports` (`whole` true). */
export function parseUploadHeaders(headers: IncomingHttpHeaders, whole: boolean, maxChunks: number): UploadHeaders {
  const rawEncoding = (single(headers, HEADER.contentEncoding) ?? 'identity').trim().toLowerCase();
  if (rawEncoding !== 'zstd' && rawEncoding !== 'identity') {
    throw new IngestError('OUTPOST_INGEST_UNSUPPORTED_ENCODING', 'Content-Encoding must be zstd or identity');
  }
  const reportId = single(headers, HEADER.reportId);
  if (!isValidId(reportId)) throw new IngestError('OUTPOST_INGEST_INVALID_ID', 'Outpost-Report-Id must be 1–256 characters of [A-Za-z0-9_-]');
  let index = 0;
  let total = 1;
  if (!whole) {
    const i = parseHeaderInteger(single(headers, HEADER.chunkIndex));
    const t = parseHeaderInteger(single(headers, HEADER.chunkTotal));
    if (t === undefined || t < 1 || t > maxChunks) {
      throw new IngestError('OUTPOST_INGEST_BAD_REQUEST', `Outpost-Chunk-Total must be an integer from 1 to ${maxChunks}`);
    }
    if (i === undefined || i >= t) throw new IngestError('OUTPOST_INGEST_BAD_REQUEST', 'Outpost-Chunk-Index must be an integer below Outpost-Chunk-Total');
    index = i;
    total = t;
  } else if (headers[HEADER.chunkIndex] !== undefined || headers[HEADER.chunkTotal] !== undefined) {
    throw new IngestError('OUTPOST_INGEST_BAD_REQUEST', 'A whole report carries no Outpost-Chunk-Index or Outpost-Chunk-Total');
  }
  const sha256 = parseReprDigest(single(headers, HEADER.reprDigest));
  if (sha256 === undefined) throw new IngestError('OUTPOST_INGEST_BAD_REQUEST', 'Repr-Digest must carry sha-256=:<base64>:');
  const sha256Hex = sha256.toString('hex');
  const key = single(headers, HEADER.idempotencyKey);
  if (key === undefined) throw new IngestError('OUTPOST_INGEST_BAD_REQUEST', 'Idempotency-Key is missing');
  if (key.length > 600) throw new IngestError('OUTPOST_INGEST_BAD_REQUEST', 'Idempotency-Key is longer than 600 characters');
  const expected = idempotencyKey(reportId, whole ? undefined : index, sha256Hex);
  const given = unquote(key);
  if (given !== expected) {
    const prefix = whole ? `${reportId}:` : `${reportId}:${index}:`;
    if (given.startsWith(prefix) && /^[0-9a-f]{64}$/.test(given.slice(prefix.length))) {
      throw new IngestError('OUTPOST_INGEST_KEY_CONFLICT', 'Idempotency-Key names a different digest than Repr-Digest');
    }
    throw new IngestError('OUTPOST_INGEST_BAD_REQUEST', `Idempotency-Key must be ${whole ? '<reportId>:<sha256hex>' : '<reportId>:<index>:<sha256hex>'}`);
  }
  const lengthHeader = single(headers, 'content-length');
  const contentLength = lengthHeader === undefined ? undefined : Number(lengthHeader);
  return { reportId, index, total, whole, sha256, sha256Hex, encoding: rawEncoding, contentLength };
}
