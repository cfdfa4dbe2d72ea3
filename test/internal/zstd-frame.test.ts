import { randomBytes } from 'node:crypto';
import { compress, decompress } from '@mongodb-js/zstd';
import fc from 'fast-check';
import { describe, it, expect } from 'vitest';
import {
  declareContentSize,
  scanZstdFrames,
  type ZstdFrameInfo,
  type ZstdScanResult,
} from '../../src/internal/zstd-frame.js';

const MAGIC = [0x28, 0xb5, 0x2f, 0xfd] as const;
const KIB = 1024;
const MIB = 1024 * KIB;

/** 3-byte little-endian block header. */
function block(last: boolean, type: 0 | 1 | 2 | 3, size: number): number[] {
  const h = (last ? 1 : 0) | (type << 1) | (size << 3);
  return [h & 0xff, (h >>> 8) & 0xff, (h >>> 16) & 0xff];
}

/** A zstd frame from raw parts: descriptor, optional window byte, then the rest verbatim. */
function frame(fhd: number, ...rest: number[][]): Buffer {
  return Buffer.from([...MAGIC, fhd, ...rest.flat()]);
}

function le(value: number, bytes: number): number[] {
  const out: number[] = [];
  let v = value;
  for (let i = 0; i < bytes; i++) {
    out.push(v % 256);
    v = Math.floor(v / 256);
  }
  return out;
}

function skippable(nibble: number, payload: number[]): Buffer {
  return Buffer.from([0x50 | nibble, 0x2a, 0x4d, 0x18, ...le(payload.length, 4), ...payload]);
}

function okResult(result: ZstdScanResult): Extract<ZstdScanResult, { ok: true }> {
  if (!result.ok) throw new Error(`scan failed: ${result.reason} at ${result.offset}`);
  return result;
}

function onlyFrame(result: ZstdScanResult): ZstdFrameInfo {
  const frames = okResult(result).frames;
  expect(frames).toHaveLength(1);
  const info = frames[0];
  if (info === undefined) throw new Error('no frame');
  return info;
}

const ascii = (s: string): number[] => [...Buffer.from(s)];

/** Inserts a 4-byte Frame_Content_Size by hand, bypassing declareContentSize's plausibility check. */
function forceContentSize4(undeclared: Buffer, size: number): Buffer {
  expect(undeclared[4]).toBe(0x00);
  return Buffer.concat([undeclared.subarray(0, 4), Buffer.from([0x80, undeclared[5]!, ...le(size, 4)]), undeclared.subarray(6)]);
}

describe('scanZstdFrames on frames from compress()', () => {
  it('reports a small frame as one undeclared frame with a 2 MiB window', async () => {
    const input = Buffer.from('hello world hello world');
    const c = await compress(input, 3);
    const result = okResult(scanZstdFrames(c));
    expect(result.undeclaredFrames).toBe(1);
    expect(result.declaredContentBytes).toBe(0);
    const info = onlyFrame(result);
    expect(info).toMatchObject({
      offset: 0,
      compressedBytes: c.length,
      skippable: false,
      contentSize: undefined,
      singleSegment: false,
      windowSize: 2 * MIB,
      hasChecksum: false,
    });
    expect(info.blockCount).toBeGreaterThanOrEqual(1);
    expect(info.maxBlockOutputBytes).toBeGreaterThanOrEqual(input.length);
  });

  it('reports the empty-input frame as single-segment with content size 0', async () => {
    const c = await compress(Buffer.alloc(0), 3);
    const result = okResult(scanZstdFrames(c));
    expect(result.undeclaredFrames).toBe(0);
    expect(onlyFrame(result)).toMatchObject({
      contentSize: 0,
      singleSegment: true,
      windowSize: undefined,
      blockCount: 1,
      maxBlockOutputBytes: 0,
      compressedBytes: c.length,
    });
  });

  it('bounds 1 MiB of random bytes by the block sizes', async () => {
    const input = randomBytes(MIB);
    const c = await compress(input, 3);
    const info = onlyFrame(scanZstdFrames(c));
    expect(info.blockCount).toBeGreaterThanOrEqual(8);
    expect(info.maxBlockOutputBytes).toBeGreaterThanOrEqual(input.length);
    expect(info.compressedBytes).toBe(c.length);
  });

  it('walks the many blocks of 20 MiB of zeros and bounds their output', async () => {
    const input = Buffer.alloc(20 * MIB);
    const c = await compress(input, 3);
    const info = onlyFrame(scanZstdFrames(c));
    expect(info.blockCount).toBeGreaterThanOrEqual(160);
    expect(info.maxBlockOutputBytes).toBeGreaterThanOrEqual(input.length);
    // ~650 compressed bytes can legally produce at most blockCount * 128 KiB.
    expect(info.maxBlockOutputBytes).toBeLessThanOrEqual(info.blockCount * 128 * KIB);
  });

  it('never reports a bound below the real decompressed size', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 300_000 }),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        async (length, period, random) => {
          const input = random ? randomBytes(length) : Buffer.from(Array.from({ length }, (_, i) => i % period));
          const c = await compress(input, 3);
          const info = onlyFrame(scanZstdFrames(c));
          expect(info.maxBlockOutputBytes).toBeGreaterThanOrEqual(input.length);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('scans a frame inside a Uint8Array view relative to the view', async () => {
    const c = await compress(Buffer.from('view test view test'), 3);
    const host = new Uint8Array(c.length + 10);
    host.set(c, 7);
    const view = host.subarray(7, 7 + c.length);
    expect(onlyFrame(scanZstdFrames(view)).compressedBytes).toBe(c.length);
  });
});

describe('scanZstdFrames on hand-crafted frames', () => {
  it('reads every Frame_Content_Size width the way the real decoder does', async () => {
    const payload = Array.from({ length: 300 }, (_, i) => i & 0xff);
    const short = payload.slice(0, 200);
    const cases: { bytes: Buffer; size: number }[] = [
      { bytes: frame(0x20, [200], block(true, 0, 200), short), size: 200 }, // SS, 1 byte
      { bytes: frame(0x60, le(300 - 256, 2), block(true, 0, 300), payload), size: 300 }, // SS, 2 bytes
      { bytes: frame(0xa0, le(300, 4), block(true, 0, 300), payload), size: 300 }, // SS, 4 bytes
      { bytes: frame(0xe0, le(300, 8), block(true, 0, 300), payload), size: 300 }, // SS, 8 bytes
      { bytes: frame(0x40, [0x00], le(300 - 256, 2), block(true, 0, 300), payload), size: 300 }, // windowed, 2 bytes
      { bytes: frame(0x80, [0x00], le(200, 4), block(true, 0, 200), short), size: 200 }, // windowed, 4 bytes
      { bytes: frame(0xc0, [0x00], le(200, 8), block(true, 0, 200), short), size: 200 }, // windowed, 8 bytes
    ];
    for (const { bytes, size } of cases) {
      const info = onlyFrame(scanZstdFrames(bytes));
      expect(info.contentSize).toBe(size);
      expect(info.compressedBytes).toBe(bytes.length);
      expect((await decompress(bytes)).length).toBe(size);
    }
  });

  it('computes the window from exponent and mantissa', () => {
    // exponent 0 mantissa 1: 1024 + 128; exponent 21 mantissa 0: exactly 2^31 (allowed).
    expect(onlyFrame(scanZstdFrames(frame(0x00, [0x01], block(true, 0, 0)))).windowSize).toBe(1152);
    expect(onlyFrame(scanZstdFrames(frame(0x00, [0xa8], block(true, 0, 0)))).windowSize).toBe(2 ** 31);
  });

  it('counts an RLE block by its regenerated size and carries one byte', async () => {
    const bytes = frame(0x00, [0x00], block(true, 1, 1000), [0x61]);
    const info = onlyFrame(scanZstdFrames(bytes));
    expect(info.maxBlockOutputBytes).toBe(1000);
    expect(info.compressedBytes).toBe(bytes.length);
    expect(await decompress(bytes)).toEqual(Buffer.alloc(1000, 0x61));
  });

  it('counts a raw block by its size', () => {
    const bytes = frame(0x00, [0x00], block(false, 0, 3), ascii('abc'), block(true, 0, 2), ascii('de'));
    const info = onlyFrame(scanZstdFrames(bytes));
    expect(info.blockCount).toBe(2);
    expect(info.maxBlockOutputBytes).toBe(5);
  });

  it('counts a compressed block as the block maximum of the frame', () => {
    // window 1 KiB: each compressed block may produce up to 1 KiB.
    const small = frame(0x00, [0x00], block(false, 2, 2), [0, 0], block(true, 2, 2), [0, 0]);
    expect(onlyFrame(scanZstdFrames(small)).maxBlockOutputBytes).toBe(2 * KIB);
    // window 2 MiB: capped at 128 KiB.
    const big = frame(0x00, [0x58], block(true, 2, 2), [0, 0]);
    expect(onlyFrame(scanZstdFrames(big)).maxBlockOutputBytes).toBe(128 * KIB);
    // single-segment: window is the content size.
    const ss = frame(0x20, [50], block(true, 2, 2), [0, 0]);
    expect(onlyFrame(scanZstdFrames(ss)).maxBlockOutputBytes).toBe(50);
  });

  it('includes the 4-byte checksum in the frame size', () => {
    const bytes = frame(0x04, [0x00], block(true, 0, 3), ascii('abc'), [1, 2, 3, 4]);
    const info = onlyFrame(scanZstdFrames(bytes));
    expect(info.hasChecksum).toBe(true);
    expect(info.compressedBytes).toBe(bytes.length);
  });

  it('skips a 4-byte dictionary id before the content size', () => {
    const bytes = frame(0xa3, [1, 2, 3, 4], le(3, 4), block(true, 0, 3), ascii('abc'));
    expect(onlyFrame(scanZstdFrames(bytes)).contentSize).toBe(3);
  });

  it('accepts a skippable frame with content 0', () => {
    const bytes = skippable(0xf, [9, 9, 9]);
    const result = okResult(scanZstdFrames(bytes));
    expect(result.declaredContentBytes).toBe(0);
    expect(result.undeclaredFrames).toBe(0);
    expect(onlyFrame(result)).toEqual({
      offset: 0,
      compressedBytes: 11,
      skippable: true,
      contentSize: 0,
      singleSegment: false,
      windowSize: undefined,
      hasChecksum: false,
      blockCount: 0,
      maxBlockOutputBytes: 0,
    });
  });

  it('accepts a skippable frame between real frames, as the decoder does', async () => {
    const a = declareContentSize(await compress(Buffer.from('first part '), 3), 11);
    const b = declareContentSize(await compress(Buffer.from('second part'), 3), 11);
    const all = Buffer.concat([a, skippable(0x0, [1, 2, 3, 4, 5]), b]);
    const result = okResult(scanZstdFrames(all));
    expect(result.frames.map((f) => f.skippable)).toEqual([false, true, false]);
    expect(result.frames.map((f) => f.offset)).toEqual([0, a.length, a.length + 13]);
    expect(result.declaredContentBytes).toBe(22);
    expect((await decompress(all)).toString()).toBe('first part second part');
  });
});

describe('scanZstdFrames on several frames', () => {
  it('sums the declared content sizes of concatenated frames', async () => {
    const inputs = [Buffer.alloc(1000, 1), randomBytes(5000), Buffer.alloc(300_000, 7)];
    const frames = await Promise.all(
      inputs.map(async (input) => declareContentSize(await compress(input, 3), input.length)),
    );
    const all = Buffer.concat(frames);
    const result = okResult(scanZstdFrames(all));
    expect(result.frames).toHaveLength(3);
    expect(result.declaredContentBytes).toBe(306_000);
    expect(result.undeclaredFrames).toBe(0);
    expect(await decompress(all)).toEqual(Buffer.concat(inputs));
  });

  it('counts undeclared frames separately from declared ones', async () => {
    const declared = declareContentSize(await compress(Buffer.alloc(500), 3), 500);
    const undeclared = await compress(Buffer.alloc(700), 3);
    const result = okResult(scanZstdFrames(Buffer.concat([undeclared, declared, undeclared])));
    expect(result.declaredContentBytes).toBe(500);
    expect(result.undeclaredFrames).toBe(2);
  });
});

describe('scanZstdFrames failures', () => {
  const rawFrame = frame(0x00, [0x00], block(true, 0, 3), ascii('abc'));

  it('rejects an empty buffer as empty', () => {
    expect(scanZstdFrames(new Uint8Array(0))).toEqual({ ok: false, reason: 'empty', offset: 0 });
  });

  it('rejects every strict prefix of a real frame as truncated', async () => {
    const c = await compress(Buffer.from('a few bytes to compress, a few bytes'), 3);
    for (let n = 1; n < c.length; n++) {
      const result = scanZstdFrames(c.subarray(0, n));
      expect(result, `prefix ${n}`).toMatchObject({ ok: false, reason: 'truncated' });
    }
  });

  it('rejects a missing checksum as truncated', () => {
    const bytes = frame(0x04, [0x00], block(true, 0, 3), ascii('abc'), [1, 2]);
    expect(scanZstdFrames(bytes)).toMatchObject({ ok: false, reason: 'truncated' });
  });

  it('rejects a short skippable payload as truncated', () => {
    const bytes = skippable(0x3, [1, 2, 3]).subarray(0, 10);
    expect(scanZstdFrames(bytes)).toEqual({ ok: false, reason: 'truncated', offset: 8 });
  });

  it('rejects trailing bytes shorter than a magic number as truncated', () => {
    const bytes = Buffer.concat([rawFrame, Buffer.from([0x28, 0xb5])]);
    expect(scanZstdFrames(bytes)).toEqual({ ok: false, reason: 'truncated', offset: rawFrame.length });
  });

  it('rejects an unknown magic number as bad-magic at its offset', () => {
    expect(scanZstdFrames(Buffer.from('hello world'))).toEqual({ ok: false, reason: 'bad-magic', offset: 0 });
    const bytes = Buffer.concat([rawFrame, Buffer.from('junk')]);
    expect(scanZstdFrames(bytes)).toEqual({ ok: false, reason: 'bad-magic', offset: rawFrame.length });
  });

  it('rejects a set reserved descriptor bit as reserved-bit', () => {
    const bytes = frame(0x08, [0x00], block(true, 0, 3), ascii('abc'));
    expect(scanZstdFrames(bytes)).toEqual({ ok: false, reason: 'reserved-bit', offset: 4 });
  });

  it('rejects block type 3 as reserved-block-type', () => {
    const bytes = frame(0x00, [0x00], block(false, 0, 1), [0], block(true, 3, 1), [0]);
    expect(scanZstdFrames(bytes)).toEqual({ ok: false, reason: 'reserved-block-type', offset: 10 });
  });

  it('rejects a window just over 2^31 as window-too-large', () => {
    const bytes = frame(0x00, [0xa9], block(true, 0, 0));
    expect(scanZstdFrames(bytes)).toEqual({ ok: false, reason: 'window-too-large', offset: 5 });
    expect(scanZstdFrames(frame(0x00, [0xff], block(true, 0, 0)))).toMatchObject({ reason: 'window-too-large' });
  });

  it('rejects an 8-byte content size of 2^53 as content-size-too-large', () => {
    const bytes = frame(0xe0, le(2 ** 53, 8), block(true, 0, 0));
    expect(scanZstdFrames(bytes)).toEqual({ ok: false, reason: 'content-size-too-large', offset: 5 });
    const max = frame(0xe0, le(Number.MAX_SAFE_INTEGER, 8), block(true, 0, 0));
    expect(onlyFrame(scanZstdFrames(max)).contentSize).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('rejects declared sizes whose sum exceeds MAX_SAFE_INTEGER as content-size-too-large', () => {
    const half = frame(0xc0, [0x00], le(2 ** 52, 8), block(true, 0, 0));
    const result = scanZstdFrames(Buffer.concat([half, half, half]));
    expect(result).toEqual({ ok: false, reason: 'content-size-too-large', offset: half.length });
  });

  it('rejects a block larger than the window as block-too-large', () => {
    const payload = new Array<number>(1025).fill(0);
    const bytes = frame(0x00, [0x00], block(true, 0, 1025), payload);
    expect(scanZstdFrames(bytes)).toEqual({ ok: false, reason: 'block-too-large', offset: 6 });
  });

  it('rejects a block larger than 128 KiB as block-too-large', () => {
    const bytes = Buffer.concat([frame(0x00, [0x58], block(true, 0, 128 * KIB + 1)), Buffer.alloc(128 * KIB + 1)]);
    expect(scanZstdFrames(bytes)).toMatchObject({ ok: false, reason: 'block-too-large' });
    const fits = Buffer.concat([frame(0x00, [0x58], block(true, 0, 128 * KIB)), Buffer.alloc(128 * KIB)]);
    expect(scanZstdFrames(fits).ok).toBe(true);
  });

  it('rejects an RLE block regenerating more than the declared single segment as block-too-large', () => {
    const bytes = frame(0x20, [10], block(true, 1, 11), [0x61]);
    expect(scanZstdFrames(bytes)).toEqual({ ok: false, reason: 'block-too-large', offset: 6 });
  });

  it('rejects more frames than maxFrames as too-many-frames', () => {
    const one = skippable(0x1, []);
    const three = Buffer.concat([one, one, one]);
    expect(scanZstdFrames(three, { maxFrames: 2 })).toEqual({ ok: false, reason: 'too-many-frames', offset: 16 });
    expect(scanZstdFrames(three, { maxFrames: 3 }).ok).toBe(true);
  });

  it('caps the frame count at 1024 by default', () => {
    const one = skippable(0x1, []);
    const many = Buffer.concat(new Array<Buffer>(1024).fill(one));
    expect(okResult(scanZstdFrames(many)).frames).toHaveLength(1024);
    expect(scanZstdFrames(Buffer.concat([many, one]))).toEqual({
      ok: false,
      reason: 'too-many-frames',
      offset: 1024 * 8,
    });
  });
});

describe('declareContentSize', () => {
  it('round-trips a small frame through decompress()', async () => {
    const input = Buffer.from('hello world hello world');
    const patched = declareContentSize(await compress(input, 3), input.length);
    expect(await decompress(patched)).toEqual(input);
    expect(onlyFrame(scanZstdFrames(patched))).toMatchObject({ contentSize: input.length, windowSize: 2 * MIB });
  });

  it('round-trips 1 MiB of random bytes through decompress()', async () => {
    const input = randomBytes(MIB);
    const patched = declareContentSize(await compress(input, 3), input.length);
    expect(onlyFrame(scanZstdFrames(patched)).contentSize).toBe(MIB);
    expect(await decompress(patched)).toEqual(input);
  });

  it('round-trips 20 MiB of zeros through decompress()', async () => {
    const input = Buffer.alloc(20 * MIB);
    const c = await compress(input, 3);
    const patched = declareContentSize(c, input.length);
    const result = okResult(scanZstdFrames(patched));
    expect(result.declaredContentBytes).toBe(20 * MIB);
    expect(result.undeclaredFrames).toBe(0);
    expect(onlyFrame(result).blockCount).toBe(onlyFrame(scanZstdFrames(c)).blockCount);
    const out = await decompress(patched);
    expect(out.length).toBe(input.length);
    expect(out.every((b) => b === 0)).toBe(true);
  });

  it('uses the smallest field: 4 bytes below 256, 2 bytes up to 65791, then 4 bytes', async () => {
    const expected: [number, number, number][] = [
      // size, FCS flag, added bytes
      [1, 2, 4],
      [255, 2, 4],
      [256, 1, 2],
      [65791, 1, 2],
      [65792, 2, 4],
    ];
    for (const [size, flag, added] of expected) {
      const input = Buffer.alloc(size, 0x41);
      const c = await compress(input, 3);
      const patched = declareContentSize(c, size);
      expect(patched[4]! >>> 6, `flag for ${size}`).toBe(flag);
      expect(patched.length - c.length, `growth for ${size}`).toBe(added);
      expect(onlyFrame(scanZstdFrames(patched)).contentSize).toBe(size);
      expect(await decompress(patched)).toEqual(input);
    }
  });

  it('uses the 8-byte field from 2^32 on', () => {
    // 32769 empty compressed blocks may, by the format, produce 32769 * 128 KiB > 2^32.
    const blocks: number[] = [];
    for (let i = 0; i < 32769; i++) blocks.push(...block(i === 32768, 2, 0));
    const bytes = frame(0x00, [0x58], blocks);
    const patched = declareContentSize(bytes, 2 ** 32);
    expect(patched[4]! >>> 6).toBe(3);
    expect(patched.subarray(6, 14)).toEqual(Buffer.from(le(2 ** 32, 8)));
    expect(onlyFrame(scanZstdFrames(patched)).contentSize).toBe(2 ** 32);
  });

  it('keeps the window, dictionary id, checksum flag and blocks byte for byte', () => {
    const body = [...block(true, 0, 3), ...ascii('abc'), 0xde, 0xad, 0xbe, 0xef];
    const bytes = frame(0x05, [0x31], [0x2a], body); // checksum + 1-byte dictionary id
    const patched = declareContentSize(bytes, 3);
    expect(patched).toEqual(Buffer.from([...MAGIC, 0x85, 0x31, 0x2a, 3, 0, 0, 0, ...body]));
    expect(onlyFrame(scanZstdFrames(patched))).toMatchObject({ contentSize: 3, hasChecksum: true, windowSize: 2 ** 16 + 2 ** 13 });
  });

  it('does not modify its input', async () => {
    const c = await compress(Buffer.from('immutable input'), 3);
    const copy = Buffer.from(c);
    declareContentSize(c, 15);
    expect(c).toEqual(copy);
  });

  it('returns the same buffer when the declared size already matches', async () => {
    const empty = await compress(Buffer.alloc(0), 3);
    expect(declareContentSize(empty, 0)).toBe(empty);
    const patched = declareContentSize(await compress(Buffer.from('xyz'), 3), 3);
    expect(declareContentSize(patched, 3)).toBe(patched);
  });

  it('throws a RangeError when the declared size differs', async () => {
    const empty = await compress(Buffer.alloc(0), 3);
    expect(() => declareContentSize(empty, 5)).toThrow(RangeError);
    const patched = declareContentSize(await compress(Buffer.from('xyz'), 3), 3);
    expect(() => declareContentSize(patched, 4)).toThrow(/already declares 3/);
  });

  it('throws a RangeError for anything but exactly one zstd frame', async () => {
    const c = await compress(Buffer.from('one frame'), 3);
    expect(() => declareContentSize(Buffer.concat([c, c]), 9)).toThrow(RangeError);
    expect(() => declareContentSize(skippable(0, [1]), 0)).toThrow(RangeError);
    expect(() => declareContentSize(c.subarray(0, c.length - 1), 9)).toThrow(RangeError);
    expect(() => declareContentSize(Buffer.from('not zstd at all'), 9)).toThrow(RangeError);
    expect(() => declareContentSize(Buffer.alloc(0), 0)).toThrow(RangeError);
  });

  it('throws a RangeError for a size that is not a non-negative safe integer', async () => {
    const c = await compress(Buffer.from('size checks'), 3);
    for (const bad of [-1, 1.5, Number.NaN, Infinity, 2 ** 53]) {
      expect(() => declareContentSize(c, bad), String(bad)).toThrow(RangeError);
    }
  });

  it('throws a RangeError for a size the blocks cannot possibly produce', () => {
    const bytes = frame(0x00, [0x00], block(true, 0, 3), ascii('abc'));
    expect(declareContentSize(bytes, 3).length).toBe(bytes.length + 4);
    expect(() => declareContentSize(bytes, 4)).toThrow(/at most 3/);
  });
});

describe('frames whose header lies', () => {
  it('scans a frame declaring 1000 bytes over 20 MiB of blocks as ok', async () => {
    const liar = declareContentSize(await compress(Buffer.alloc(20 * MIB), 3), 1000);
    const result = okResult(scanZstdFrames(liar));
    expect(result.declaredContentBytes).toBe(1000);
    // The block bound still exposes the bomb.
    expect(onlyFrame(result).maxBlockOutputBytes).toBeGreaterThanOrEqual(20 * MIB);
  });

  it('decompress() rejects a 20 MiB frame declaring 1000 bytes as a too-small destination', async () => {
    const liar = declareContentSize(await compress(Buffer.alloc(20 * MIB), 3), 1000);
    await expect(decompress(liar)).rejects.toThrow(/Destination buffer is too small/);
  });

  it('decompress() rejects a small frame declaring one byte too many as corruption', async () => {
    const input = Buffer.alloc(100_000);
    const liar = forceContentSize4(await compress(input, 3), 100_001);
    await expect(decompress(liar)).rejects.toThrow(/Data corruption detected/);
  });

  // Recorded library behaviour (@mongodb-js/zstd 1.2.2): once the output no
  // longer fits its first buffer, the declared size is not enforced at all.
  it('decompress() returns all 20 MiB from a frame declaring only 10 MiB', async () => {
    const liar = declareContentSize(await compress(Buffer.alloc(20 * MIB), 3), 10 * MIB);
    expect(onlyFrame(scanZstdFrames(liar)).contentSize).toBe(10 * MIB);
    expect((await decompress(liar)).length).toBe(20 * MIB);
  });

  it('decompress() returns 20 MiB from a frame declaring 40 MiB', async () => {
    const liar = forceContentSize4(await compress(Buffer.alloc(20 * MIB), 3), 40 * MIB);
    expect(onlyFrame(scanZstdFrames(liar)).contentSize).toBe(40 * MIB);
    expect((await decompress(liar)).length).toBe(20 * MIB);
  });
});

describe('robustness', () => {
  const resultShape = (result: ZstdScanResult): void => {
    if (result.ok) {
      expect(Number.isSafeInteger(result.declaredContentBytes)).toBe(true);
      for (const f of result.frames) expect(f.compressedBytes).toBeGreaterThanOrEqual(8);
    } else {
      expect(typeof result.reason).toBe('string');
      expect(Number.isInteger(result.offset)).toBe(true);
    }
  };

  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 0, max: 4 }), (bytes, maxFrames) => {
        resultShape(scanZstdFrames(bytes));
        resultShape(scanZstdFrames(bytes, { maxFrames }));
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws on random bytes behind a zstd magic number', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        resultShape(scanZstdFrames(Buffer.concat([Buffer.from(MAGIC), bytes])));
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws on mutations of valid frames, and declareContentSize throws only RangeError', async () => {
    const seeds = [
      await compress(Buffer.from('hello world hello world hello'), 3),
      await compress(Buffer.alloc(300_000, 3), 3),
      await compress(randomBytes(2000), 3),
      declareContentSize(await compress(Buffer.alloc(5000), 3), 5000),
      Buffer.concat([frame(0x05, [0x31], [0x2a], block(true, 1, 40), [7], [1, 2, 3, 4]), skippable(2, [1, 2])]),
    ];
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom(...seeds),
        fc.array(mutation, { minLength: 1, maxLength: 6 }),
        fc.nat({ max: 1_000_000 }),
        (seed, mutations, size) => {
          let buf = Buffer.from(seed);
          for (const m of mutations) {
            const at = buf.length === 0 ? 0 : m.at % buf.length;
            if (m.kind === 'set') {
              if (buf.length > 0) buf[at] = m.value;
            } else if (m.kind === 'cut') {
              buf = buf.subarray(0, at);
            } else if (m.kind === 'insert') {
              buf = Buffer.concat([buf.subarray(0, at), m.bytes, buf.subarray(at)]);
            } else {
              buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + m.count)]);
            }
          }
          resultShape(scanZstdFrames(buf));
          try {
            const out = declareContentSize(buf, size);
            expect(onlyFrame(scanZstdFrames(out)).contentSize).toBe(size);
          } catch (error) {
            expect(error).toBeInstanceOf(RangeError);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});
