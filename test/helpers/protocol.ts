import { createHash } from 'node:crypto';
import { compress } from '@mongodb-js/zstd';
import { declareContentSize } from '../../src/internal/zstd-frame.js';

/** Headers of a well-formed chunk request for `raw` (uncompressed JSON bytes); `over` replaces any of them (undefined removes one). */
export function chunkHeaders(raw: Buffer, over: Record<string, string | undefined> = {}, reportId = 'r1', index = 0, total = 1): Record<string, string> {
  const digest = createHash('sha256').update(raw).digest();
  const h: Record<string, string | undefined> = {
    authorization: 'Bearer token-a',
    'content-encoding': 'zstd',
    'outpost-report-id': reportId,
    'outpost-chunk-index': String(index),
    'outpost-chunk-total': String(total),
    'repr-digest': `sha-256=:${digest.toString('base64')}:`,
    'idempotency-key': `${reportId}:${index}:${digest.toString('hex')}`,
    ...over,
  };
  return Object.fromEntries(Object.entries(h).filter(([, v]) => v !== undefined)) as Record<string, string>;
}

/** `raw` as one zstd frame that declares its content size, as protocol v1 wants. */
export async function zstdFrame(raw: Buffer): Promise<Buffer> {
  return declareContentSize(await compress(raw, 3), raw.length);
}

/** Rewrites a frame's header to declare `size` in an 8-byte Frame_Content_Size, whatever it declared before: a lying frame. */
export function withDeclaredSize(frame: Buffer, size: number): Buffer {
  const fhd = frame[4] as number;
  const single = (fhd >> 5) & 1;
  const fcsLength = [single ? 1 : 0, 2, 4, 8][fhd >> 6] as number;
  const dictLength = [0, 1, 2, 4][fhd & 3] as number;
  const keep = frame.subarray(5, 5 + (single ? 0 : 1) + dictLength);
  const rest = frame.subarray(5 + keep.length + fcsLength);
  const fcs = Buffer.alloc(8);
  fcs.writeBigUInt64LE(BigInt(size));
  return Buffer.concat([frame.subarray(0, 4), Buffer.from([(fhd & 0x3f) | 0xc0]), keep, fcs, rest]);
}
