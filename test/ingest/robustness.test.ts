import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { IllegalStateError, StoreError } from '../../src/errors.js';
import { SqliteIngestStore, createIngestHandler, type IngestStore } from '../../src/ingest/index.js';
import { encodeBody, type ChunkUpload } from '../../src/transport/index.js';
import { startServer, until } from '../helpers/http.js';
import { startIngest, tempDir, type IngestFixture } from '../helpers/ingest.js';
import { chunkHeaders, withDeclaredSize, zstdFrame } from '../helpers/protocol.js';

let fx: IngestFixture | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await fx?.close();
  fx = undefined;
});

function headers(raw: Buffer, reportId = 'r1', index = 0, total = 1, token = 'token-a'): Record<string, string> {
  return chunkHeaders(raw, { authorization: `Bearer ${token}` }, reportId, index, total);
}

async function post(url: string, h: Record<string, string>, body: Buffer): Promise<{ status: number; code: string | undefined; message: string | undefined }> {
  const res = await request(`${url}/v1/chunks`, { method: 'POST', headers: h, body });
  const json = (await res.body.json()) as { error?: { code: string; message: string } };
  return { status: res.statusCode, code: json.error?.code, message: json.error?.message };
}

const zstd = zstdFrame;

/** A store that behaves like SQLite except where a test overrides it. */
function storeWith(overrides: Partial<IngestStore>): IngestStore {
  const real = new SqliteIngestStore(':memory:');
  return {
    getReport: (t, r) => real.getReport(t, r),
    putChunk: (i) => real.putChunk(i),
    readChunks: (t, r) => real.readChunks(t, r),
    markDelivered: (t, r, o) => real.markDelivered(t, r, o),
    listPendingDeliveries: (l, a) => real.listPendingDeliveries(l, a),
    prune: (c) => real.prune(c),
    close: () => real.close(),
    ...overrides,
  };
}

describe('ingest handler: cost and abuse bounds', () => {
  it('refuses a body whose JSON values would be too costly to parse, before parsing it', async () => {
    fx = await startIngest({ maxJsonValues: 100_000 });
    // 300 000 empty objects (tiny on the wire), padded with random text so the ratio check passes.
    const raw = Buffer.from(`{"findings":[${'{},'.repeat(300_000)}{}],"pad":"${randomBytes(30_000).toString('base64')}"}`);
    const body = await zstd(raw);
    expect(raw.length / body.length).toBeLessThan(100);
    const res = await post(fx.server.url, headers(raw), body);
    expect(res).toMatchObject({ status: 413, code: 'OUTPOST_INGEST_TOO_LARGE' });
    expect(res.message).toMatch(/Body holds about \d+ JSON values/); // the pre-parse check, not the store's
  });

  it('counts JSON values across a report, not just per chunk', async () => {
    fx = await startIngest({ maxJsonValues: 1_000 });
    const part = Buffer.from(JSON.stringify({ findings: Array.from({ length: 300 }, (_, i) => i) }));
    expect((await post(fx.server.url, headers(part, 'many', 0, 4), await zstd(part))).status).toBe(201);
    expect((await post(fx.server.url, headers(part, 'many', 1, 4), await zstd(part))).status).toBe(201);
    expect((await post(fx.server.url, headers(part, 'many', 2, 4), await zstd(part))).status).toBe(201);
    expect(await post(fx.server.url, headers(part, 'many', 3, 4), await zstd(part))).toMatchObject({ status: 413, code: 'OUTPOST_INGEST_TOO_LARGE' });
  });

  it('does not let skippable frames stretch the block allowance', async () => {
    fx = await startIngest({ maxDecompressedSizeBytes: 1024 * 1024 });
    const raw = Buffer.alloc(3 * 1024 * 1024, 0x20);
    const honest = await zstd(raw);
    // Claim a plausible 50:1 size; the blocks can really produce 3 MiB.
    const lying = withDeclaredSize(honest, honest.length * 50);
    const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0])]);
    const padded = Buffer.concat([lying, ...Array<Buffer>(1000).fill(skippable)]);
    const res = await post(fx.server.url, headers(raw), padded);
    expect(res).toMatchObject({ status: 413, code: 'OUTPOST_INGEST_TOO_LARGE' });
    expect(res.message).toMatch(/Blocks could expand/);
  });

  it('refuses frames that are each under the limit but sum past it', async () => {
    fx = await startIngest({ maxDecompressedSizeBytes: 100_000 });
    const part = Buffer.from(`"${'x'.repeat(60_000)}"`);
    const raw = Buffer.concat([Buffer.from('{"a":'), part, Buffer.from(',"b":'), part, Buffer.from('}')]);
    const frames = Buffer.concat([await zstd(raw.subarray(0, 60_000)), await zstd(raw.subarray(60_000))]);
    const res = await post(fx.server.url, headers(raw), frames);
    expect(res).toMatchObject({ status: 413, code: 'OUTPOST_INGEST_TOO_LARGE' });
  });

  it('answers 429 once a tenant has maxConcurrentRequestsPerTenant requests in flight, leaving other tenants served', async () => {
    fx = await startIngest({ maxConcurrentRequestsPerTenant: 1, bodyTimeoutMs: 5_000 });
    const raw = Buffer.from('{}');
    const port = Number(new URL(fx.server.url).port);
    const slow = connect(port, '127.0.0.1');
    const head = ['POST /v1/chunks HTTP/1.1', 'host: x', ...Object.entries(headers(raw, 'slow')).map(([k, v]) => `${k}: ${v}`), 'content-length: 50', '', ''].join('\r\n');
    slow.write(head);
    await until(() => fx?.handler.stats().inFlight === 1);
    const res = await request(`${fx.server.url}/v1/chunks`, { method: 'POST', headers: headers(raw, 'other'), body: await zstd(raw) });
    expect(res.statusCode).toBe(429);
    expect(res.headers['retry-after']).toBe('1');
    expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('OUTPOST_INGEST_RATE_LIMITED');
    expect((await post(fx.server.url, headers(raw, 'b1', 0, 1, 'token-b'), await zstd(raw))).status).toBe(201);
    slow.destroy();
  });

  it('frees the slot of a client that goes away while it is being authenticated', async () => {
    let release: (tenant: string) => void = () => undefined;
    fx = await startIngest({ authenticate: () => new Promise<string>((r) => (release = r)), bodyTimeoutMs: 60_000 });
    const raw = Buffer.from('{}');
    const socket = connect(Number(new URL(fx.server.url).port), '127.0.0.1');
    socket.write(['POST /v1/chunks HTTP/1.1', 'host: x', ...Object.entries(headers(raw)).map(([k, v]) => `${k}: ${v}`), 'content-length: 50', '', ''].join('\r\n'));
    await until(() => fx?.handler.stats().inFlight === 1);
    socket.destroy();
    await new Promise((r) => setTimeout(r, 20));
    release('tenant-a');
    await until(() => fx?.handler.stats().inFlight === 0, 1_000);
  });

  it('frees the slot at once when a client sends its whole body and leaves while being authenticated', async () => {
    let release: (tenant: string) => void = () => undefined;
    fx = await startIngest({ authenticate: () => new Promise<string>((r) => (release = r)), bodyTimeoutMs: 60_000 });
    const raw = Buffer.from('{}');
    const body = await zstd(raw);
    const serverSide = new Promise<import('node:net').Socket>((r) => fx?.server.server.once('connection', r));
    const socket = connect(Number(new URL(fx.server.url).port), '127.0.0.1');
    socket.write(['POST /v1/chunks HTTP/1.1', 'host: x', ...Object.entries(headers(raw)).map(([k, v]) => `${k}: ${v}`), `content-length: ${body.length}`, '', ''].join('\r\n'));
    await new Promise<void>((r) => socket.write(body, () => r()));
    await until(() => fx?.handler.stats().inFlight === 1);
    const closed = new Promise((r) => void serverSide.then((s) => s.once('close', r)));
    socket.destroy();
    await closed; // the server saw the client go while authenticate was still pending
    release('tenant-a');
    await until(() => fx?.handler.stats().inFlight === 0, 1_000);
    expect(fx.handler.stats().stored).toBe(0);
  });

  it('answers 503 when authenticate hangs past authenticateTimeoutMs, and frees the slot', async () => {
    const errors: unknown[] = [];
    fx = await startIngest({ authenticate: () => new Promise<string>(() => undefined), authenticateTimeoutMs: 50 });
    fx.handler.on('error', (e) => errors.push(e));
    const raw = Buffer.from('{}');
    expect(await post(fx.server.url, headers(raw), await zstd(raw))).toMatchObject({ status: 503, code: 'OUTPOST_INGEST_UNAVAILABLE' });
    expect(fx.handler.stats().inFlight).toBe(0);
    expect(errors).toHaveLength(1);
  });

  it('answers 503 with one error event when authenticate throws or the store fails', async () => {
    const errors: unknown[] = [];
    let authFails = true;
    fx = await startIngest({
      authenticate: (t) => {
        if (authFails) throw new Error('identity provider down');
        return t === 'token-a' ? 'tenant-a' : undefined;
      },
      store: storeWith({ putChunk: () => Promise.reject(new Error('disk on fire')) }),
    });
    fx.handler.on('error', (e) => errors.push(e));
    const raw = Buffer.from('{}');
    expect(await post(fx.server.url, headers(raw), await zstd(raw))).toMatchObject({ status: 503, code: 'OUTPOST_INGEST_UNAVAILABLE' });
    authFails = false;
    expect(await post(fx.server.url, headers(raw), await zstd(raw))).toMatchObject({ status: 503, code: 'OUTPOST_INGEST_UNAVAILABLE' });
    expect(errors).toHaveLength(2);
    expect(errors.map((e) => (e as Error & { cause: Error }).cause.message)).toEqual(['identity provider down', 'disk on fire']);
  });

  it('answers 503 instead of hanging when a custom store gives an unknown outcome', async () => {
    fx = await startIngest({ store: storeWith({ putChunk: async () => ({ outcome: 'stored-v2' as never, report: undefined, completedNow: false }) }) });
    const raw = Buffer.from('{}');
    expect(await post(fx.server.url, headers(raw), await zstd(raw))).toMatchObject({ status: 503, code: 'OUTPOST_INGEST_UNAVAILABLE' });
  });

  it('turns an error without listeners into a process warning, not a crash', async () => {
    const handler = createIngestHandler({ store: storeWith({ putChunk: () => Promise.reject(new Error('boom')) }), authenticate: () => 'tenant-a', onReport: () => undefined });
    const server = await startServer(handler);
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const raw = Buffer.from('{}');
      expect((await post(server.url, headers(raw), await zstd(raw))).status).toBe(503);
      await until(() => warnings.some((w) => (w as { code?: string }).code === 'OUTPOST_INGEST_UNAVAILABLE'));
    } finally {
      process.off('warning', onWarning);
      await server.close();
      await handler.close();
    }
  });

  it('reports a failing background prune as an error event', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setImmediate'] });
    const errors: unknown[] = [];
    const handler = createIngestHandler({ store: storeWith({ prune: () => Promise.reject(new Error('locked')) }), authenticate: () => undefined, onReport: () => undefined });
    handler.on('error', (e) => errors.push(e));
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error & { cause: Error }).cause.message).toBe('locked');
    await handler.close();
  });
});

describe('ingest handler: concurrency and lifecycle', () => {
  it('delivers a report exactly once when all its chunks and repeats arrive at the same time', async () => {
    fx = await startIngest();
    const client = fx.client();
    const chunks: ChunkUpload[] = [];
    for (let i = 0; i < 8; i++) chunks.push({ reportId: 'race', index: i, total: 8, ...(await encodeBody({ findings: [i] })) });
    const results = await Promise.allSettled([...chunks, ...chunks, ...chunks].map((c) => client.uploadChunk(c)));
    // Each attempt was stored, a duplicate, or told to retry (409); retrying the 409s completes the picture.
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ status: 409, retryable: true });
    for (const c of chunks) await client.uploadChunk(c);
    await until(() => fx?.delivered.length === 1);
    await fx.handler.redeliverPending();
    expect(fx.delivered).toHaveLength(1);
    expect(fx.delivered[0]?.report['findings']).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(fx.handler.stats().stored).toBe(8);
  });

  it('finishes an in-flight request before closing, and refuses new ones while closing', async () => {
    fx = await startIngest({ bodyTimeoutMs: 5_000 });
    const raw = Buffer.from('{"findings":[]}');
    const body = await zstd(raw);
    const socket = connect(Number(new URL(fx.server.url).port), '127.0.0.1');
    let reply = '';
    socket.on('data', (d: Buffer) => (reply += d.toString()));
    socket.write(['POST /v1/chunks HTTP/1.1', 'host: x', ...Object.entries(headers(raw)).map(([k, v]) => `${k}: ${v}`), `content-length: ${body.length}`, '', ''].join('\r\n'));
    await until(() => fx?.handler.stats().inFlight === 1);
    const closed = fx.handler.close();
    expect(fx.handler.state).toBe('closing');
    expect((await post(fx.server.url, headers(raw, 'late'), body)).status).toBe(503);
    socket.write(body);
    await closed;
    await until(() => reply.length > 0);
    expect(reply).toMatch(/^HTTP\/1\.1 201/);
    expect(fx.handler.state).toBe('closed');
    await expect(fx.handler.redeliverPending()).rejects.toBeInstanceOf(IllegalStateError);
    await expect(fx.handler.prune()).rejects.toBeInstanceOf(IllegalStateError);
    socket.destroy();
  });

  it('starts no queued delivery once closing, and none at all after close gave up waiting', async () => {
    const started: string[] = [];
    let release: () => void = () => undefined;
    const store = new SqliteIngestStore(':memory:');
    fx = await startIngest({
      store,
      onReport: (_r, { reportId }) => {
        started.push(reportId);
        return new Promise<void>((r) => (release = r));
      },
    });
    const client = fx.client();
    for (const id of ['first', 'second', 'third']) await client.uploadReport({ reportId: id, ...(await encodeBody({})) });
    await until(() => started.length === 1);
    const closing = fx.handler.close(); // no signal: would wait for 'first' forever
    await fx.handler.close({ signal: AbortSignal.timeout(50) }); // a later call's signal bounds the wait
    await closing;
    release();
    await new Promise((r) => setTimeout(r, 50));
    expect(started).toEqual(['first']);
    // The queued reports are still pending in the store, for the next start.
    expect((await store.listPendingDeliveries(10)).map((p) => p.reportId).sort()).toEqual(['second', 'third']);
    await store.close();
  });

  it('stops waiting for a hung onReport when the close signal aborts', async () => {
    fx = await startIngest({ onReport: () => new Promise<void>(() => undefined) });
    await fx.client().uploadReport({ reportId: 'stuck', ...(await encodeBody({})) });
    await until(() => fx?.handler.stats().stored === 1);
    await fx.handler.close({ signal: AbortSignal.timeout(100) });
    expect(fx.handler.state).toBe('closed');
  });
});

describe('SqliteIngestStore', () => {
  it('closes idempotently and refuses use afterwards', async () => {
    const store = new SqliteIngestStore(':memory:');
    await store.close();
    await store.close();
    await expect(store.getReport('t', 'r')).rejects.toBeInstanceOf(IllegalStateError);
  });

  it('refuses a database written by a newer schema, leaving it untouched', () => {
    const tmp = tempDir();
    try {
      const path = join(tmp.dir, 'ingest.db');
      new SqliteIngestStore(path).close();
      const db = new Database(path);
      db.pragma('user_version = 99');
      db.close();
      expect(() => new SqliteIngestStore(path)).toThrow(StoreError);
      const again = new Database(path);
      expect(again.pragma('user_version', { simple: true })).toBe(99);
      again.close();
    } finally {
      tmp.cleanup();
    }
  });
});
