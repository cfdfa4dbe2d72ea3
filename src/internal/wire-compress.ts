/**
 * The bytes a sender puts on the wire for a JSON body: one zstd frame that
 * declares its size, or the JSON itself when zstd would compress it more
 * than a server accepts.
 * @internal
 */
import type { BodyEncoding } from '../transport/types.js';
import { MAX_COMPRESSION_RATIO } from './protocol.js';
import { declareContentSize } from './zstd-frame.js';
import { zstdCompress } from './zstd.js';

/**
 * Largest body sent as `identity` in place of zstd: an ingest server's
 * default body limit (10 MiB). Past it, identity would be refused for its size
 * anyway, and a server that raised its ratio limit still takes the zstd frame.
 */
export const IDENTITY_MAX_BYTES = 10 * 1024 * 1024;

/**
 * Compresses `raw` with zstd at `level` on libuv's thread pool. A body that
 * compresses more than {@link MAX_COMPRESSION_RATIO}:1 (a server refuses it
 * as a likely zip bomb, permanently) is sent as `identity` instead, unless it
 * is over {@link IDENTITY_MAX_BYTES}.
 */
export async function compressForWire(raw: Buffer, level: number): Promise<{ body: Buffer; encoding: BodyEncoding }> {
  const frame = await zstdCompress(raw, level);
  if (raw.length > MAX_COMPRESSION_RATIO * frame.length && raw.length <= IDENTITY_MAX_BYTES) return { body: raw, encoding: 'identity' };
  return { body: declareContentSize(frame, raw.length), encoding: 'zstd' };
}
