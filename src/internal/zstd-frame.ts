/**
 * Header-only inspection of zstd data (RFC 8878), so that decompression bombs
 * can be rejected before any byte is decompressed, and patching of the
 * Frame_Content_Size field into frames that were written without one.
 *
 * Nothing here decodes block contents: the scanner reads the frame headers and
 * the 3-byte block headers and skips over the block bodies.
 * @internal
 */

/** What {@link scanZstdFrames} learned about one frame from its headers. */
export interface ZstdFrameInfo {
  /** Byte offset of the frame's magic number within the scanned buffer. */
  readonly offset: number;
  /** Total size of the frame in bytes: magic, header, blocks and checksum. */
  readonly compressedBytes: number;
  /** `true` for a skippable frame (magic 0x184D2A50..0x184D2A5F). */
  readonly skippable: boolean;
  /**
   * The decompressed size declared by Frame_Content_Size; `undefined` when the
   * frame does not declare it, `0` for skippable frames.
   */
  readonly contentSize: number | undefined;
  /** The Single_Segment_Flag: the window is the whole content, no Window_Descriptor. */
  readonly singleSegment: boolean;
  /**
   * Window size from the Window_Descriptor. `undefined` for single-segment
   * frames (whose window is `contentSize`) and for skippable frames.
   */
  readonly windowSize: number | undefined;
  /** The Content_Checksum_Flag: a 4-byte checksum follows the last block. */
  readonly hasChecksum: boolean;
  /** Number of blocks in the frame (0 for skippable frames). */
  readonly blockCount: number;
  /**
   * Upper bound of the bytes the blocks can regenerate: raw blocks count their
   * size, RLE blocks their declared regenerated size, compressed blocks the
   * block maximum, min(window, 128 KiB), each. A decoder that honours the
   * format can never produce more than this from the frame.
   */
  readonly maxBlockOutputBytes: number;
}

/**
 * Why {@link scanZstdFrames} rejected a buffer.
 * - `empty`: the buffer has no bytes.
 * - `truncated`: a header, block, checksum or skippable payload is cut short.
 * - `bad-magic`: a frame starts with neither the zstd nor a skippable magic.
 * - `reserved-bit`: bit 3 of the Frame_Header_Descriptor is set.
 * - `reserved-block-type`: a block header has type 3.
 * - `window-too-large`: the Window_Descriptor declares more than 2^31 bytes.
 * - `content-size-too-large`: an 8-byte Frame_Content_Size, or the sum of all
 *   declared sizes, exceeds `Number.MAX_SAFE_INTEGER`.
 * - `block-too-large`: a block's size exceeds min(window, 128 KiB).
 * - `too-many-frames`: the buffer holds more frames than `maxFrames`.
 */
export type ZstdScanFailure =
  | 'empty'
  | 'truncated'
  | 'bad-magic'
  | 'reserved-bit'
  | 'reserved-block-type'
  | 'window-too-large'
  | 'content-size-too-large'
  | 'block-too-large'
  | 'too-many-frames';

/**
 * Outcome of {@link scanZstdFrames}. On failure, `offset` is the position of
 * the offending field (the magic number, header byte, block header, or where
 * the missing bytes should have been).
 */
export type ZstdScanResult =
  | {
      readonly ok: true;
      readonly frames: readonly ZstdFrameInfo[];
      /** Sum of the declared content sizes of all frames. */
      readonly declaredContentBytes: number;
      /** Number of zstd (non-skippable) frames without a Frame_Content_Size. */
      readonly undeclaredFrames: number;
    }
  | { readonly ok: false; readonly reason: ZstdScanFailure; readonly offset: number };

/** Limits applied by {@link scanZstdFrames}. */
export interface ZstdScanLimits {
  /** Maximum number of frames (zstd and skippable) accepted; default 1024. */
  maxFrames?: number;
}

/** Default for {@link ZstdScanLimits.maxFrames}. */
export const DEFAULT_MAX_ZSTD_FRAMES = 1024;

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC_MIN = 0x184d2a50;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const BLOCK_SIZE_MAX = 128 * 1024;
const MAX_WINDOW = 2 ** 31;
const TWO_32 = 2 ** 32;

const DICT_ID_BYTES = [0, 1, 2, 4] as const;

/** Frame_Content_Size field width for a descriptor byte (RFC 8878 §3.1.1.1.1.1). */
function fcsFieldBytes(fhd: number): number {
  const flag = fhd >>> 6;
  if (flag === 0) return (fhd & 0x20) !== 0 ? 1 : 0;
  return flag === 1 ? 2 : flag === 2 ? 4 : 8;
}

function u32le(data: Uint8Array, at: number): number {
  // Callers guarantee at + 3 < data.length.
  return (
    ((data[at] ?? 0) | ((data[at + 1] ?? 0) << 8) | ((data[at + 2] ?? 0) << 16)) +
    (data[at + 3] ?? 0) * 0x1000000
  );
}

function fail(reason: ZstdScanFailure, offset: number): ZstdScanResult {
  return { ok: false, reason, offset };
}

/**
 * Walks every frame in `data` reading headers only, and reports what the
 * frames declare and the most their blocks could produce.
 *
 * Cost is O(frames + blocks); no allocation besides the result. Never throws:
 * every malformed input yields `{ ok: false }`. The header is reported as
 * written: a frame may declare fewer bytes than its blocks decode to (a
 * conforming decoder then fails at the end of the frame), so use
 * `maxBlockOutputBytes` as the hard bound and `contentSize` as the claim.
 *
 * Single-segment frames are not subject to the 2^31 window limit (their
 * window is the declared content size; bound that via `declaredContentBytes`).
 */
export function scanZstdFrames(data: Uint8Array, limits?: ZstdScanLimits): ZstdScanResult {
  const maxFrames = limits?.maxFrames ?? DEFAULT_MAX_ZSTD_FRAMES;
  const length = data.length;
  if (length === 0) return fail('empty', 0);

  const frames: ZstdFrameInfo[] = [];
  let declaredContentBytes = 0;
  let undeclaredFrames = 0;
  let pos = 0;

  while (pos < length) {
    const start = pos;
    if (!(frames.length < maxFrames)) return fail('too-many-frames', start);
    if (length - pos < 4) return fail('truncated', pos);
    const magic = u32le(data, pos);
    pos += 4;

    if ((magic & SKIPPABLE_MAGIC_MASK) >>> 0 === SKIPPABLE_MAGIC_MIN) {
      if (length - pos < 4) return fail('truncated', pos);
      const size = u32le(data, pos);
      pos += 4;
      if (length - pos < size) return fail('truncated', pos);
      pos += size;
      frames.push({
        offset: start,
        compressedBytes: pos - start,
        skippable: true,
        contentSize: 0,
        singleSegment: false,
        windowSize: undefined,
        hasChecksum: false,
        blockCount: 0,
        maxBlockOutputBytes: 0,
      });
      continue;
    }
    if (magic !== ZSTD_MAGIC) return fail('bad-magic', start);

    // Frame_Header_Descriptor.
    if (length - pos < 1) return fail('truncated', pos);
    const fhd = data[pos] ?? 0;
    if ((fhd & 0x08) !== 0) return fail('reserved-bit', pos);
    pos += 1;
    const singleSegment = (fhd & 0x20) !== 0;
    const hasChecksum = (fhd & 0x04) !== 0;
    const dictBytes = DICT_ID_BYTES[fhd & 0x03] ?? 0;
    const fcsBytes = fcsFieldBytes(fhd);

    // Window_Descriptor.
    let windowSize: number | undefined;
    if (!singleSegment) {
      if (length - pos < 1) return fail('truncated', pos);
      const wd = data[pos] ?? 0;
      const base = 2 ** (10 + (wd >>> 3));
      windowSize = base + (base / 8) * (wd & 0x07);
      if (windowSize > MAX_WINDOW) return fail('window-too-large', pos);
      pos += 1;
    }

    // Dictionary_ID (only skipped) and Frame_Content_Size.
    if (length - pos < dictBytes + fcsBytes) return fail('truncated', pos);
    pos += dictBytes;
    let contentSize: number | undefined;
    switch (fcsBytes) {
      case 1:
        contentSize = data[pos] ?? 0;
        break;
      case 2:
        contentSize = ((data[pos] ?? 0) | ((data[pos + 1] ?? 0) << 8)) + 256;
        break;
      case 4:
        contentSize = u32le(data, pos);
        break;
      case 8: {
        const low = u32le(data, pos);
        const high = u32le(data, pos + 4);
        if (high > 0x1fffff) return fail('content-size-too-large', pos);
        contentSize = high * TWO_32 + low;
        break;
      }
      default:
        contentSize = undefined;
    }
    pos += fcsBytes;

    const window = singleSegment ? (contentSize ?? 0) : (windowSize ?? 0);
    const blockMax = Math.min(window, BLOCK_SIZE_MAX);

    // Blocks.
    let blockCount = 0;
    let maxBlockOutputBytes = 0;
    for (;;) {
      if (length - pos < 3) return fail('truncated', pos);
      const header = (data[pos] ?? 0) | ((data[pos + 1] ?? 0) << 8) | ((data[pos + 2] ?? 0) << 16);
      const last = (header & 1) !== 0;
      const type = (header >>> 1) & 3;
      const size = header >>> 3;
      if (type === 3) return fail('reserved-block-type', pos);
      if (size > blockMax) return fail('block-too-large', pos);
      pos += 3;
      const carried = type === 1 ? 1 : size;
      if (length - pos < carried) return fail('truncated', pos);
      pos += carried;
      maxBlockOutputBytes += type === 2 ? blockMax : size;
      blockCount += 1;
      if (last) break;
    }

    if (hasChecksum) {
      if (length - pos < 4) return fail('truncated', pos);
      pos += 4;
    }

    if (contentSize === undefined) {
      undeclaredFrames += 1;
    } else {
      declaredContentBytes += contentSize;
      if (declaredContentBytes > Number.MAX_SAFE_INTEGER) return fail('content-size-too-large', start);
    }
    frames.push({
      offset: start,
      compressedBytes: pos - start,
      skippable: false,
      contentSize,
      singleSegment,
      windowSize,
      hasChecksum,
      blockCount,
      maxBlockOutputBytes,
    });
  }

  return { ok: true, frames, declaredContentBytes, undeclaredFrames };
}

/**
 * Returns a copy of `frame` whose header declares `contentBytes` in
 * Frame_Content_Size, for frames written without one (as
 * `@mongodb-js/zstd`'s `compress()` does for non-empty input).
 *
 * The smallest correct field is used: 2 bytes for 256..65791, 4 bytes for
 * other values below 2^32, else 8 bytes (the 1-byte form exists only for
 * single-segment frames, which always declare a size already). The
 * Window_Descriptor, Dictionary_ID, checksum flag and blocks are kept
 * byte-for-byte; the Single_Segment_Flag stays 0.
 *
 * If the frame already declares a size, `frame` itself is returned when it
 * equals `contentBytes`.
 *
 * @throws RangeError when `frame` is not exactly one zstd frame (per
 *   {@link scanZstdFrames}), when it already declares a different size, when
 *   `contentBytes` is not a non-negative safe integer, or when `contentBytes`
 *   exceeds what the blocks could possibly produce (`maxBlockOutputBytes`).
 *   The header is not checked against the decoded blocks: a frame patched with
 *   a wrong size fails at decompression instead.
 */
export function declareContentSize(frame: Buffer, contentBytes: number): Buffer {
  if (!Number.isSafeInteger(contentBytes) || contentBytes < 0) {
    throw new RangeError(`content size must be a non-negative safe integer, got ${contentBytes}`);
  }
  const scan = scanZstdFrames(frame, { maxFrames: 1 });
  if (!scan.ok) {
    throw new RangeError(`not exactly one zstd frame: ${scan.reason} at offset ${scan.offset}`);
  }
  const info = scan.frames[0];
  if (scan.frames.length !== 1 || info === undefined || info.skippable) {
    throw new RangeError('not exactly one zstd frame: skippable frame');
  }
  if (info.contentSize !== undefined) {
    if (info.contentSize === contentBytes) return frame;
    throw new RangeError(`frame already declares ${info.contentSize} bytes, not ${contentBytes}`);
  }
  if (contentBytes > info.maxBlockOutputBytes) {
    throw new RangeError(`frame blocks can produce at most ${info.maxBlockOutputBytes} bytes, not ${contentBytes}`);
  }

  // No declared size implies Single_Segment_Flag = 0, so a Window_Descriptor is present.
  const fhd = frame[4] ?? 0;
  const headerEnd = 4 + 1 + 1 + (DICT_ID_BYTES[fhd & 0x03] ?? 0);
  let flag: number;
  let fieldBytes: number;
  if (contentBytes >= 256 && contentBytes <= 65535 + 256) {
    flag = 1;
    fieldBytes = 2;
  } else if (contentBytes < TWO_32) {
    flag = 2;
    fieldBytes = 4;
  } else {
    flag = 3;
    fieldBytes = 8;
  }

  const out = Buffer.allocUnsafe(frame.length + fieldBytes);
  frame.copy(out, 0, 0, headerEnd);
  out[4] = (fhd & 0x3f) | (flag << 6);
  if (fieldBytes === 2) {
    out.writeUInt16LE(contentBytes - 256, headerEnd);
  } else if (fieldBytes === 4) {
    out.writeUInt32LE(contentBytes, headerEnd);
  } else {
    out.writeUInt32LE(contentBytes % TWO_32, headerEnd);
    out.writeUInt32LE(Math.floor(contentBytes / TWO_32), headerEnd + 4);
  }
  frame.copy(out, headerEnd + fieldBytes, headerEnd);
  return out;
}
