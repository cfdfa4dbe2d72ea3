import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { compress } from '@mongodb-js/zstd';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { ingestErrorStatus } from '../../src/errors.js';
import { encodeBody } from '../../src/transport/index.js';
import { until } from '../helpers/http.js';
import { chunkHeaders, withDeclaredSize, zstdFrame } from '../helpers/protocol.js';
import { startIngest, type IngestFixture } from '../helpers/ingest.js';

let fx: IngestFixture | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

interface Sent {
  status: number;
  code: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  json: Record<string, unknown> | undefined;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest();

async function send(path: string, headers: Record<string, string>, body?: Buffer, method = body === undefined ? 'GET' : 'POST'): Promise<Sent> {
  const res = await request(`${fx?.server.url}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
  const text = await res.body.text();
  const json = text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
  const code = (json?.['error'] as { code?: string } | undefined)?.code;
  return { status: res.statusCode, code, headers: res.headers, json };
}

const zstd = zstdFrame;
const lieAboutSize = withDeclaredSize;

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('ingest handler: hostile input', () => {
  it('accepts a well-formed chunk (the baseline every case below breaks one thing of)', async () => {
    fx = await startIngest();
    const raw = json({ findings: [{ id: 1 }] });
    expect((await send('/v1/chunks', chunkHeaders(raw), await zstd(raw))).status).toBe(201);
  });

  it('refuses a 1000:1 decompression bomb before decompressing it', async () => {
    fx = await startIngest();
    const raw = Buffer.from(`{"findings":[],"pad":"${' '.repeat(4 * 1024 * 1024)}"}`);
    const body = await zstd(raw);
    expect(raw.length / body.length).toBeGreaterThan(1000);
    const res = await send('/v1/chunks', chunkHeaders(raw), body);
    expect(res).toMatchObject({ status: 422, code: 'OUTPOST_INGEST_RATIO_EXCEEDED' });
  });

  it('refuses a frame declaring more than maxDecompressedSizeBytes without decompressing it', async () => {
    fx = await startIngest();
    const raw = json({ findings: [] });
    const res = await send('/v1/chunks', chunkHeaders(raw), lieAboutSize(await zstd(raw), 5 * 1024 ** 3));
    expect(res).toMatchObject({ status: 413, code: 'OUTPOST_INGEST_TOO_LARGE' });
  });

  it('refuses a frame that does not declare its content size', async () => {
    fx = await startIngest();
    const raw = json({ findings: [{ id: 1 }] });
    const res = await send('/v1/chunks', chunkHeaders(raw), await compress(raw, 3));
    expect(res).toMatchObject({ status: 422, code: 'OUTPOST_INGEST_SIZE_UNDECLARED' });
  });

  it('refuses a frame that declares less than it holds', async () => {
    fx = await startIngest();
    const raw = Buffer.from(JSON.stringify({ findings: Array.from({ length: 2000 }, (_, i) => ({ id: i, path: `/src/file-${i % 97}.ts` })) }));
    const honest = await zstd(raw);
    const declared = Math.ceil(honest.length * 2); // keeps the ratio check happy, but far below the truth
    const res = await send('/v1/chunks', chunkHeaders(raw), lieAboutSize(honest, declared));
    expect(res).toMatchObject({ status: 400, code: 'OUTPOST_INGEST_CORRUPT_BODY' });
  });

  it('refuses a frame whose blocks could expand far past what it declares, without decompressing it', async () => {
    fx = await startIngest();
    const raw = Buffer.alloc(60 * 1024 * 1024, 0x20);
    const honest = await zstd(raw);
    const declared = honest.length * 50; // a plausible size and ratio; the blocks say otherwise
    const heapBefore = process.memoryUsage().arrayBuffers;
    const res = await send('/v1/chunks', chunkHeaders(raw), lieAboutSize(honest, declared));
    expect(res).toMatchObject({ status: 413, code: 'OUTPOST_INGEST_TOO_LARGE' });
    expect((res.json?.['error'] as { message: string }).message).toMatch(/Blocks could expand/);
    expect(process.memoryUsage().arrayBuffers - heapBefore).toBeLessThan(32 * 1024 * 1024);
  });

  it('refuses a frame that declares more than it holds', async () => {
    fx = await startIngest();
    const raw = Buffer.from(JSON.stringify({ findings: Array.from({ length: 200 }, (_, i) => ({ id: i })) }));
    const honest = await zstd(raw);
    const res = await send('/v1/chunks', chunkHeaders(raw), lieAboutSize(honest, raw.length + 10));
    expect([400, 422]).toContain(res.status);
    expect(['OUTPOST_INGEST_SIZE_MISMATCH', 'OUTPOST_INGEST_CORRUPT_BODY']).toContain(res.code);
  });

  it('sums several frames and accepts skippable frames', async () => {
    fx = await startIngest();
    const a = Buffer.from('{"findings":[1,2,3],');
    const b = Buffer.from('"assets":[]}');
    const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18]), Buffer.from([3, 0, 0, 0]), Buffer.from('abc')]);
    const raw = Buffer.concat([a, b]);
    const res = await send('/v1/chunks', chunkHeaders(raw), Buffer.concat([await zstd(a), skippable, await zstd(b)]));
    expect(res.status).toBe(201);
  });

  it('refuses garbage that is not zstd', async () => {
    fx = await startIngest();
    const raw = json({});
    const res = await send('/v1/chunks', chunkHeaders(raw), Buffer.from('definitely not zstd'));
    expect(res).toMatchObject({ status: 400, code: 'OUTPOST_INGEST_CORRUPT_BODY' });
  });

  it('cuts off a body longer than its Content-Length: the extra bytes never become part of the chunk', async () => {
    fx = await startIngest();
    const raw = json({ findings: [] });
    const body = await zstd(raw);
    const headers = chunkHeaders(raw);
    const port = new URL(fx.server.url).port;
    const socket = connect(Number(port), '127.0.0.1');
    const declared = body.length - 5;
    const head = [`POST /v1/chunks HTTP/1.1`, `host: 127.0.0.1`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), `content-length: ${declared}`, '', ''].join('\r\n');
    let reply = '';
    socket.on('data', (d: Buffer) => (reply += d.toString()));
    socket.write(Buffer.concat([Buffer.from(head), body, Buffer.from('GARBAGE-AFTER-THE-BODY\r\n\r\n')]));
    await until(() => /HTTP\/1\.1 400[\s\S]*HTTP\/1\.1 400/.test(reply) || socket.destroyed, 5_000);
    socket.destroy();
    const statuses = [...reply.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.every((s) => s >= 400 && s < 500)).toBe(true);
    expect(fx.handler.stats().stored).toBe(0);
  });

  it('refuses a streamed body that grows past maxCompressedSizeBytes', async () => {
    fx = await startIngest({ maxCompressedSizeBytes: 1024 });
    const raw = json({});
    async function* big() {
      for (let i = 0; i < 64; i++) yield Buffer.alloc(1024, 1);
    }
    const res = await request(`${fx.server.url}/v1/chunks`, { method: 'POST', headers: chunkHeaders(raw), body: Readable.from(big()) }).then(
      async (r) => ({ status: r.statusCode, text: await r.body.text() }),
      (e: unknown) => ({ status: 0, text: String(e) }),
    );
    // Either the 413 arrives, or the server cut the connection while we were still sending: never a 2xx or 5xx.
    if (res.status !== 0) expect(JSON.parse(res.text)).toMatchObject({ error: { code: 'OUTPOST_INGEST_TOO_LARGE' } });
    expect(fx.handler.stats()).toMatchObject({ stored: 0, rejected: 1 });
  });

  it('refuses a Content-Length over the limit without reading the body', async () => {
    fx = await startIngest({ maxCompressedSizeBytes: 100 });
    const raw = json({ findings: Array.from({ length: 100 }, (_, i) => i) });
    const res = await send('/v1/chunks', chunkHeaders(raw), Buffer.alloc(101));
    expect(res).toMatchObject({ status: 413, code: 'OUTPOST_INGEST_TOO_LARGE' });
  });

  it.each([
    ['../../etc/passwd', 'a path traversal'],
    ["r1'; DROP TABLE chunks; --", 'SQL metacharacters'],
    ['x'.repeat(257), 'a 257-character id'],
    ['', 'an empty id'],
    ['r1%00', 'a percent-encoded NUL'],
  ])('refuses the report id %j (%s)', async (reportId) => {
    fx = await startIngest();
    const raw = json({});
    const res = await send('/v1/chunks', chunkHeaders(raw, { 'outpost-report-id': reportId }), await zstd(raw));
    expect(res).toMatchObject({ status: 400, code: 'OUTPOST_INGEST_INVALID_ID' });
    const get = await send(`/v1/reports/${encodeURIComponent(reportId)}`, { authorization: 'Bearer token-a' });
    expect(get.status === 400 || get.status === 404).toBe(true);
  });

  it('accepts a 256-character id', async () => {
    fx = await startIngest();
    const id = 'x'.repeat(256);
    const raw = json({});
    expect((await send('/v1/chunks', chunkHeaders(raw, {}, id), await zstd(raw))).status).toBe(201);
  });

  it("answers 404 for another tenant's report, exactly as for an unknown one", async () => {
    fx = await startIngest();
    const raw = json({});
    await send('/v1/chunks', chunkHeaders(raw, {}, 'secret-report', 0, 2), await zstd(raw));
    const theirs = await send('/v1/reports/secret-report', { authorization: 'Bearer token-b' });
    const unknown = await send('/v1/reports/no-such-report', { authorization: 'Bearer token-b' });
    expect(theirs).toMatchObject({ status: 404, code: 'OUTPOST_INGEST_NOT_FOUND' });
    expect(theirs.json).toEqual(unknown.json);
    expect((await send('/v1/reports/secret-report', { authorization: 'Bearer token-a' })).status).toBe(200);
  });

  it('refuses missing, malformed and unknown tokens with 401', async () => {
    fx = await startIngest();
    const raw = json({});
    const rejected: string[] = [];
    fx.handler.on('rejected', (e) => rejected.push(e.code));
    for (const authorization of [undefined, 'Basic dXNlcjpwYXNz', 'Bearer', 'Bearer wrong-token']) {
      const res = await send('/v1/chunks', chunkHeaders(raw, { authorization }), await zstd(raw));
      expect(res).toMatchObject({ status: 401, code: 'OUTPOST_INGEST_UNAUTHORIZED' });
    }
    expect(rejected).toEqual(Array(4).fill('OUTPOST_INGEST_UNAUTHORIZED'));
  });

  it('refuses an unsupported Content-Encoding with 415', async () => {
    fx = await startIngest();
    const raw = json({});
    expect(await send('/v1/chunks', chunkHeaders(raw, { 'content-encoding': 'gzip' }), raw)).toMatchObject({ status: 415, code: 'OUTPOST_INGEST_UNSUPPORTED_ENCODING' });
  });

  it('accepts identity bodies and checks their digest', async () => {
    fx = await startIngest();
    const raw = json({ findings: [] });
    expect((await send('/v1/chunks', chunkHeaders(raw, { 'content-encoding': 'identity' }), raw)).status).toBe(201);
    const wrong = chunkHeaders(json({ other: true }), { 'content-encoding': 'identity' }, 'r2');
    expect(await send('/v1/chunks', wrong, raw)).toMatchObject({ status: 422, code: 'OUTPOST_INGEST_DIGEST_MISMATCH' });
  });

  it('refuses a body whose digest does not match Repr-Digest', async () => {
    fx = await startIngest();
    const raw = json({ findings: [1] });
    const res = await send('/v1/chunks', chunkHeaders(json({ findings: [2] })), await zstd(raw));
    expect(res).toMatchObject({ status: 422, code: 'OUTPOST_INGEST_DIGEST_MISMATCH' });
  });

  it('refuses an idempotency key that names another digest, and malformed keys', async () => {
    fx = await startIngest();
    const raw = json({});
    const other = createHash('sha256').update('x').digest('hex');
    expect(await send('/v1/chunks', chunkHeaders(raw, { 'idempotency-key': `r1:0:${other}` }), await zstd(raw))).toMatchObject({ status: 422, code: 'OUTPOST_INGEST_KEY_CONFLICT' });
    expect(await send('/v1/chunks', chunkHeaders(raw, { 'idempotency-key': 'whatever' }), await zstd(raw))).toMatchObject({ status: 400, code: 'OUTPOST_INGEST_BAD_REQUEST' });
    const quoted = `"r1:0:${sha(raw).toString('hex')}"`;
    expect((await send('/v1/chunks', chunkHeaders(raw, { 'idempotency-key': quoted }), await zstd(raw))).status).toBe(201);
  });

  it.each([
    [{ 'outpost-chunk-index': '2', 'outpost-chunk-total': '2' }, 'index not below total'],
    [{ 'outpost-chunk-total': '10001' }, 'more than 10 000 chunks'],
    [{ 'outpost-chunk-total': '0' }, 'zero chunks'],
    [{ 'outpost-chunk-index': '-1' }, 'a negative index'],
    [{ 'outpost-chunk-index': '1e3', 'outpost-chunk-total': '2000' }, 'an exponent'],
    [{ 'repr-digest': 'sha-256=:AAAA:' }, 'a short digest'],
    [{ 'repr-digest': 'md5=:1B2M2Y8AsgTpgAmY7PhCfg==:' }, 'no sha-256 member'],
    [{ 'idempotency-key': undefined }, 'no idempotency key'],
  ] as [Record<string, string | undefined>, string][])('refuses malformed chunk headers %j (%s)', async (over) => {
    fx = await startIngest();
    const raw = json({});
    const res = await send('/v1/chunks', chunkHeaders(raw, over), await zstd(raw));
    expect(res.status).toBe(400);
    expect(['OUTPOST_INGEST_BAD_REQUEST']).toContain(res.code);
  });

  it("refuses a chunk whose total differs from the report's first chunk", async () => {
    fx = await startIngest();
    const raw = json({});
    expect((await send('/v1/chunks', chunkHeaders(raw, {}, 'rt', 0, 3), await zstd(raw))).status).toBe(201);
    const res = await send('/v1/chunks', chunkHeaders(raw, {}, 'rt', 1, 4), await zstd(raw));
    expect(res).toMatchObject({ status: 400, code: 'OUTPOST_INGEST_TOTAL_MISMATCH' });
  });

  it('refuses bodies that are not a JSON object with array findings/assets', async () => {
    fx = await startIngest();
    for (const [i, text] of ['not json', '[1,2]', '"s"', '{"findings":{}}', '{"assets":1}'].entries()) {
      const raw = Buffer.from(text);
      const res = await send('/v1/chunks', chunkHeaders(raw, {}, `j${i}`), await zstd(raw));
      expect(res).toMatchObject({ status: 400, code: 'OUTPOST_INGEST_INVALID_JSON' });
    }
  });

  it('refuses a report that would exceed maxReportSizeBytes', async () => {
    fx = await startIngest({ maxReportSizeBytes: 2_000, maxDecompressedSizeBytes: 2_000 });
    const raw = Buffer.from(JSON.stringify({ findings: ['x'.repeat(1_200)] }));
    expect((await send('/v1/chunks', chunkHeaders(raw, { 'content-encoding': 'identity' }, 'big', 0, 2), raw)).status).toBe(201);
    const raw2 = Buffer.from(JSON.stringify({ findings: ['y'.repeat(1_200)] }));
    const res = await send('/v1/chunks', chunkHeaders(raw2, { 'content-encoding': 'identity' }, 'big', 1, 2), raw2);
    expect(res).toMatchObject({ status: 413, code: 'OUTPOST_INGEST_TOO_LARGE' });
  });

  it('answers 409 with Retry-After while the same chunk is being processed', async () => {
    fx = await startIngest({ bodyTimeoutMs: 5_000 });
    const raw = json({});
    const body = await zstd(raw);
    const port = Number(new URL(fx.server.url).port);
    // First request: headers and half of the body, then it stalls.
    const slow = connect(port, '127.0.0.1');
    const head = ['POST /v1/chunks HTTP/1.1', 'host: x', ...Object.entries(chunkHeaders(raw)).map(([k, v]) => `${k}: ${v}`), `content-length: ${body.length}`, '', ''].join('\r\n');
    slow.write(Buffer.concat([Buffer.from(head), body.subarray(0, 4)]));
    await until(() => fx?.handler.stats().inFlight === 1);
    const res = await send('/v1/chunks', chunkHeaders(raw), body);
    expect(res).toMatchObject({ status: 409, code: 'OUTPOST_INGEST_IN_PROGRESS' });
    expect(res.headers['retry-after']).toBe('1');
    slow.end(body.subarray(4));
    await until(() => fx?.handler.stats().stored === 1);
    slow.destroy();
  });

  it('answers 408 to a client that stops sending its body', async () => {
    fx = await startIngest({ bodyTimeoutMs: 100 });
    const raw = json({});
    const port = Number(new URL(fx.server.url).port);
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    socket.on('data', (d: Buffer) => (reply += d.toString()));
    const head = ['POST /v1/chunks HTTP/1.1', 'host: x', ...Object.entries(chunkHeaders(raw)).map(([k, v]) => `${k}: ${v}`), 'content-length: 100', '', ''].join('\r\n');
    socket.write(head);
    await until(() => reply.includes('HTTP/1.1 408'));
    expect(reply).toContain('OUTPOST_INGEST_BODY_TIMEOUT');
    socket.destroy();
  });

  it('answers 503 with Retry-After beyond maxConcurrentRequests', async () => {
    fx = await startIngest({ maxConcurrentRequests: 1, bodyTimeoutMs: 5_000 });
    const raw = json({});
    const port = Number(new URL(fx.server.url).port);
    const slow = connect(port, '127.0.0.1');
    const head = ['POST /v1/chunks HTTP/1.1', 'host: x', ...Object.entries(chunkHeaders(raw, {}, 'other')).map(([k, v]) => `${k}: ${v}`), 'content-length: 50', '', ''].join('\r\n');
    slow.write(head);
    await until(() => fx?.handler.stats().inFlight === 1);
    const res = await send('/v1/chunks', chunkHeaders(raw), await zstd(raw));
    expect(res).toMatchObject({ status: 503, code: 'OUTPOST_INGEST_OVERLOADED' });
    expect(res.headers['retry-after']).toBe('1');
    slow.destroy();
  });

  it('answers unknown paths with 404 and wrong methods with 405', async () => {
    fx = await startIngest();
    expect(await send('/v2/chunks', { authorization: 'Bearer token-a' })).toMatchObject({ status: 404, code: 'OUTPOST_INGEST_NOT_FOUND' });
    const res = await send('/v1/chunks', { authorization: 'Bearer token-a' });
    expect(res).toMatchObject({ status: 405, code: 'OUTPOST_INGEST_METHOD_NOT_ALLOWED' });
    expect(res.headers['allow']).toBe('POST');
  });

  it('answers each refusal with the HTTP status its code has in the error table', async () => {
    fx = await startIngest();
    const raw = json({});
    const answers = [
      await send('/v1/chunks', chunkHeaders(raw, { 'content-encoding': 'br' }), raw),
      await send('/nope', {}),
      await send('/v1/chunks', chunkHeaders(raw, { authorization: 'Bearer nope' }), raw),
      await send('/v1/chunks', chunkHeaders(raw, { 'outpost-report-id': '../x' }), raw),
      await send('/v1/chunks', chunkHeaders(json({ other: 1 }), { 'content-encoding': 'identity' }), raw),
    ];
    expect(answers.map((a) => a.code)).toEqual([
      'OUTPOST_INGEST_UNSUPPORTED_ENCODING',
      'OUTPOST_INGEST_NOT_FOUND',
      'OUTPOST_INGEST_UNAUTHORIZED',
      'OUTPOST_INGEST_INVALID_ID',
      'OUTPOST_INGEST_DIGEST_MISMATCH',
    ]);
    for (const a of answers) expect(a.status).toBe(ingestErrorStatus[a.code as keyof typeof ingestErrorStatus]);
    expect(answers.map((a) => a.status)).toEqual([415, 404, 401, 400, 422]);
  });

  it('stores nothing and loses nothing when a bad request follows good ones', async () => {
    fx = await startIngest();
    const client = fx.client();
    const good = await encodeBody({ findings: [{ id: 'keep' }] });
    await client.uploadChunk({ reportId: 'keep', index: 0, total: 2, ...good });
    const raw = json({ findings: [] });
    await send('/v1/chunks', chunkHeaders(raw, {}, 'keep', 0, 2), Buffer.from('junk'));
    await send('/v1/chunks', chunkHeaders(raw, {}, 'keep', 1, 2), lieAboutSize(await zstd(raw), 1e9));
    await expect(client.getReportStatus('keep')).resolves.toMatchObject({ receivedChunks: 1 });
    await expect(client.uploadChunk({ reportId: 'keep', index: 0, total: 2, ...good })).resolves.toMatchObject({ status: 200 });
  });
});
