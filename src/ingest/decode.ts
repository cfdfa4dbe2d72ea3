/**
 * Safe decompression: every bomb check runs on the zstd frame headers before
 * a byte is decompressed, and the result is checked again afterwards.
 */
import { IngestError } from '../errors.js';
import { sha256 } from '../internal/repr-digest.js';
import { scanZstdFrames } from '../internal/zstd-frame.js';
import { zstdDecompress } from '../internal/zstd.js';
import type { BodyEncoding } from '../transport/index.js';

/** Largest output of one zstd block (RFC 8878 Block_Maximum_Size): the last block of a frame may round up to it. */
const MAX_BLOCK_BYTES = 128 * 1024;

/** Limits {@link decodeBody} enforces. */
export interface DecodeLimits {
  readonly maxDecompressedSizeBytes: number;
  readonly maxCompressionRatio: number;
}

/** A decoded body: the uncompressed JSON bytes and their SHA-256. */
export interface DecodedBody {
  readonly raw: Buffer;
  readonly sha256: Buffer;
}

/**
 * Checks and decodes a body, then verifies its digest against `expectedSha256`.
 *
 * - zstd: every frame must declare its content size; the declared total must be
 *   within `maxDecompressedSizeBytes` and `maxCompressionRatio` × the bytes of
 *   the zstd frames (skippable frames do not count);
 *   only then is it decompressed, the block headers must not be able to produce more than
 *   `maxDecompressedSizeBytes` (plus one block per frame of rounding), so even
 *   a frame that lies about its size cannot grow past the limit; and the real
 *   size must equal the declared one.
 * - identity: the body itself must be within `maxDecompressedSizeBytes`.
 *
 * @throws {@link IngestError} with the code of the first check that failed
 */
export async function decodeBody(body: Buffer, encoding: BodyEncoding, expectedSha256: Buffer, limits: DecodeLimits): Promise<DecodedBody> {
  let raw: Buffer;
  if (encoding === 'identity') {
    if (body.length > limits.maxDecompressedSizeBytes) {
      throw new IngestError('OUTPOST_INGEST_TOO_LARGE', `Body of ${body.length} bytes exceeds ${limits.maxDecompressedSizeBytes}`);
    }
    raw = body;
  } else {
    const scan = scanZstdFrames(body);
    if (!scan.ok) throw new IngestError('OUTPOST_INGEST_CORRUPT_BODY', `Not a valid zstd body (${scan.reason} at byte ${scan.offset})`);
    if (scan.undeclaredFrames > 0) {
      throw new IngestError('OUTPOST_INGEST_SIZE_UNDECLARED', 'Every zstd frame must declare its content size (Frame_Content_Size)');
    }
    const declared = scan.declaredContentBytes;
    if (declared > limits.maxDecompressedSizeBytes) {
      throw new IngestError('OUTPOST_INGEST_TOO_LARGE', `Declared size ${declared} exceeds ${limits.maxDecompressedSizeBytes} bytes`);
    }
    // The ratio and the block allowance count zstd frames only: skippable padding must not stretch either.
    let compressed = 0;
    let zstdFrames = 0;
    for (const frame of scan.frames) {
      if (frame.skippable) continue;
      compressed += frame.compressedBytes;
      zstdFrames++;
    }
    if (declared > limits.maxCompressionRatio * compressed) {
      throw new IngestError('OUTPOST_INGEST_RATIO_EXCEEDED', `Compression ratio ${(declared / compressed).toFixed(1)} exceeds ${limits.maxCompressionRatio}`);
    }
    // The decoder cannot be trusted to stop at the declared size (a frame that under-declares may be
    // decompressed past it), so bound what the blocks themselves could produce, from their headers.
    let expandable = 0;
    for (const frame of scan.frames) expandable += frame.maxBlockOutputBytes;
    if (expandable > limits.maxDecompressedSizeBytes + zstdFrames * MAX_BLOCK_BYTES) {
      throw new IngestError('OUTPOST_INGEST_TOO_LARGE', `Blocks could expand to ${expandable} bytes, over ${limits.maxDecompressedSizeBytes}`);
    }
    try {
      raw = declared === 0 ? Buffer.alloc(0) : await zstdDecompress(body);
    } catch (err) {
      throw new IngestError('OUTPOST_INGEST_CORRUPT_BODY', 'zstd body could not be decompressed', { cause: err });
    }
    if (raw.length !== declared) {
      throw new IngestError('OUTPOST_INGEST_SIZE_MISMATCH', `Frames declared ${declared} bytes but held ${raw.length}`);
    }
  }
  const digest = sha256(raw);
  if (!digest.equals(expectedSha256)) throw new IngestError('OUTPOST_INGEST_DIGEST_MISMATCH', 'Repr-Digest does not match the uncompressed body');
  return { raw, sha256: digest };
}
