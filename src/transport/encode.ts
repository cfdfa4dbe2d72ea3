/**
 * Serialises and compresses a body once, so it can be stored and re-sent as is.
 */
import { InvalidArgumentError } from '../errors.js';
import { sha256 } from '../internal/repr-digest.js';
import * as v from '../internal/validate.js';
import { compressForWire } from '../internal/wire-compress.js';
import type { BodyEncoding, EncodedBody } from './types.js';

/** Options of {@link encodeBody}. */
export interface EncodeOptions {
  /** `'zstd'` (default) or `'identity'`. */
  readonly encoding?: BodyEncoding;
  /** zstd level, 1–22. @default 3 */
  readonly compressionLevel?: number;
}

/**
 * Serialises `value` to JSON (a `Uint8Array` is taken as JSON bytes already),
 * hashes it and compresses it with zstd. The zstd frame declares its content
 * size, as protocol v1 requires of every frame. A body that would compress
 * more than 100:1 (which servers refuse as a likely zip bomb) is sent as
 * `identity` even when `'zstd'` was asked for: check the result's `encoding`.
 *
 * @throws {@link InvalidArgumentError} when `value` cannot be serialised
 * @example
 * ```ts
 * const body = await encodeBody({ metadata, findings, assets });
 * await uploader.uploadReport({ reportId: 'r-1', ...body });
 * ```
 */
export async function encodeBody(value: unknown, options: EncodeOptions = {}): Promise<EncodedBody> {
  const encoding = options.encoding ?? 'zstd';
  if (encoding !== 'zstd' && encoding !== 'identity') v.fail('encoding', "'zstd' or 'identity'", encoding);
  const level = v.integer('compressionLevel', options.compressionLevel ?? 3, 1, 22);
  let raw: Buffer;
  if (value instanceof Uint8Array) {
    raw = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  } else {
    let json: string | undefined;
    try {
      json = JSON.stringify(value);
    } catch (err) {
      throw new InvalidArgumentError('Body cannot be serialised to JSON', { cause: err });
    }
    if (json === undefined) throw new InvalidArgumentError(`Body cannot be serialised to JSON: got ${typeof value}`);
    raw = Buffer.from(json, 'utf8');
  }
  const digest = sha256(raw).toString('hex');
  if (encoding === 'identity') return { body: raw, encoding, sha256: digest, rawBytes: raw.length };
  const wire = await compressForWire(raw, level);
  return { body: wire.body, encoding: wire.encoding, sha256: digest, rawBytes: raw.length };
}
