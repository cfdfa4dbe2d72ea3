import { createHash } from 'node:crypto';
import { compress, decompress } from '@mongodb-js/zstd';
import fc from 'fast-check';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ingestErrorStatus } from '../../src/errors.js';
import { declareContentSize } from '../../src/internal/zstd-frame.js';
import { startIngest, type IngestFixture } from '../helpers/ingest.js';
import { withDeclaredSize } from '../helpers/protocol.js';

const KNOWN_CODES = new Set(Object.keys(ingestErrorStatus));

let fx: IngestFixture;
let pool: Pool;
let seed: { raw: Buffer; frame: Buffer };
/** Bombs: 8 MiB of zeros and of `{},` (ratios far over 100), the same frames lying about their size, and an undeclared frame. */
let bombs: Buffer[] = [];

beforeAll(async () => {
  fx = await startIngest({ maxCompressedSizeBytes: 256 * 1024, maxDecompressedSizeBytes: 1024 * 1024 });
  pool = new Pool(fx.server.url, { connections: 4 });
  const raw = Buffer.from(JSON.stringify({ findings: Array.from({ length: 300 }, (_, i) => ({ id: i, rule: `R${i % 7}` })) }));
  seed = { raw, frame: declareContentSize(await compress(raw, 3), raw.length) };
  const zeros = Buffer.alloc(8 * 1024 * 1024);
  const objects = Buffer.from(`[${'{},'.repeat(2_000_000)}{}]`);
  const lie = withDeclaredSize;
  for (const data of [zeros, objects]) {
    const frame = declareContentSize(await compress(data, 3), data.length);
    bombs.push(frame, lie(frame, frame.length * 50), lie(frame, 1), lie(frame, 2 ** 40), await compress(data, 3));
  }
});

afterAll(async () => {
  await pool.close();
  await fx.close();
});

const idLike = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/),
  fc.constantFrom('../x', "a'b", 'a;DROP TABLE reports', 'x'.repeat(257), '', ' ', '%00', 'ü', 'a/b', 'a b'),
  fc.string({ maxLength: 300 }).map((s) => s.replace(/[\r\n\0]/g, '')),
);
const intLike = fc.oneof(fc.integer({ min: -5, max: 20_000 }).map(String), fc.constantFrom('', '1e3', '0x10', ' 1', '1.0', '99999999999999999999'), fc.string({ maxLength: 8 }));
const digestLike = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 40 }).map((b) => `sha-256=:${Buffer.from(b).toString('base64')}:`),
  fc.string({ maxLength: 80 }).map((s) => s.replace(/[\r\n\0]/g, '')),
  fc.constant(`sha-256=:${createHash('sha256').update('x').digest('base64')}:`),
);

/** Bodies: random bytes, truncated or bit-flipped valid frames, frames whose header lies, and raw JSON. */
const bodyLike = fc.oneof(
  fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b)),
  fc.nat().map((n) => seed.frame.subarray(0, n % (seed.frame.length + 1))),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([at, byte]) => {
    const copy = Buffer.from(seed.frame);
    copy[at % copy.length] = byte;
    return copy;
  }),
  fc.tuple(fc.nat({ max: 20 }), fc.integer({ min: 0, max: 255 })).map(([at, byte]) => {
    const copy = Buffer.from(seed.frame);
    copy[4 + (at % 12)] = byte; // the frame header: descriptor, window, content size
    return copy;
  }),
  fc.constant(0).map(() => seed.raw),
  fc.nat().map((n) => bombs[n % bombs.length] as Buffer),
);

const request = fc.record({
  path: fc.constantFrom('/v1/chunks', '/v1/reports', '/v1/reports/x', '/v1/chunks/../reports', '/'),
  method: fc.constantFrom('POST', 'POST', 'POST', 'GET', 'PUT'),
  token: fc.constantFrom('token-a', 'token-b', 'nope', ''),
  reportId: idLike,
  index: intLike,
  total: intLike,
  encoding: fc.constantFrom('zstd', 'identity', 'gzip', 'ZSTD', '', 'zstd, zstd'),
  digest: digestLike,
  key: fc.oneof(idLike, fc.constant('')),
  body: bodyLike,
  omit: fc.subarray(['authorization', 'outpost-report-id', 'outpost-chunk-index', 'outpost-chunk-total', 'repr-digest', 'idempotency-key', 'content-encoding']),
});

describe('ingest handler under fuzzing', () => {
  it('answers every malformed request with a 4xx carrying a known error code, stays up and keeps memory bounded', async () => {
    const heapBefore = process.memoryUsage().heapUsed;
    let requests = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers: Record<string, string> = {
          authorization: `Bearer ${r.token}`,
          'outpost-report-id': r.reportId,
          'outpost-chunk-index': r.index,
          'outpost-chunk-total': r.total,
          'content-encoding': r.encoding,
          'repr-digest': r.digest,
          'idempotency-key': r.key,
        };
        for (const name of r.omit) delete headers[name];
        for (const [k, value] of Object.entries(headers)) if (value === '' || /[^\t\x20-\x7e]/.test(value)) delete headers[k];
        const res = await pool.request({ path: r.path, method: r.method, headers, ...(r.method === 'GET' ? {} : { body: r.body }) });
        const text = await res.body.text();
        requests++;
        // A fuzzed request can only be valid by accident (a random digest matching): never here.
        expect(res.statusCode).toBeGreaterThanOrEqual(400);
        expect(res.statusCode).toBeLessThan(500);
        const code = (JSON.parse(text) as { error: { code: string } }).error.code;
        expect(KNOWN_CODES.has(code)).toBe(true);
        expect(ingestErrorStatus[code as keyof typeof ingestErrorStatus]).toBe(res.statusCode);
      }),
      { numRuns: 600 },
    );
    expect(requests).toBe(600);
    expect(fx.handler.stats()).toMatchObject({ stored: 0, inFlight: 0 });
    const grownMB = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024;
    expect(grownMB).toBeLessThan(64);
    // The server still works after all of it.
    const ok = await fx.client().uploadReport({ reportId: 'after-fuzz', body: seed.frame, encoding: 'zstd', sha256: createHash('sha256').update(seed.raw).digest('hex'), rawBytes: seed.raw.length });
    expect(ok.status).toBe(201);
  });

  it('accepts a body claiming a valid digest only when it really decodes to those bytes', async () => {
    await fc.assert(
      fc.asyncProperty(bodyLike, fc.constantFrom('zstd', 'identity'), async (body, encoding) => {
        const digest = createHash('sha256').update(seed.raw).digest();
        const res = await pool.request({
          path: '/v1/chunks',
          method: 'POST',
          headers: {
            authorization: 'Bearer token-b',
            'outpost-report-id': 'fuzz',
            'outpost-chunk-index': '0',
            'outpost-chunk-total': '2',
            'content-encoding': encoding,
            'repr-digest': `sha-256=:${digest.toString('base64')}:`,
            'idempotency-key': `fuzz:0:${digest.toString('hex')}`,
          },
          body,
        });
        await res.body.text();
        // Only a body that really decodes to the seed's bytes may be accepted (stored, or answered as a duplicate).
        if (res.statusCode < 300) {
          const decoded = encoding === 'zstd' ? await decompress(body) : body;
          expect(decoded.equals(seed.raw)).toBe(true);
        } else {
          expect(res.statusCode).toBeGreaterThanOrEqual(400);
          expect(res.statusCode).toBeLessThan(500);
        }
      }),
      { numRuns: 300 },
    );
  });
});
