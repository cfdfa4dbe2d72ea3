import { readFileSync } from 'node:fs';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { IllegalStateError, InvalidArgumentError, InvalidOptionError, UploadError } from '../../src/errors.js';
import { HttpUploader, encodeBody, type ChunkUpload } from '../../src/transport/index.js';
import { answer, readAll, startServer, until, type TestServer } from '../helpers/http.js';

let server: TestServer | undefined;
let uploader: HttpUploader | undefined;
afterEach(async () => {
  await uploader?.close();
  await server?.close();
  uploader = undefined;
  server = undefined;
});

async function chunk(value: unknown = { findings: [{ id: 1 }] }): Promise<ChunkUpload> {
  return { reportId: 'report-1', index: 0, total: 2, ...(await encodeBody(value)) };
}

async function failWith(status: number, headers: Record<string, string> = {}, body: unknown = { error: { code: 'X_CODE', message: 'm' } }): Promise<UploadError> {
  server = await startServer((req, res) => void readAll(req).then(() => answer(res, status, body, headers)));
  uploader = new HttpUploader({ url: server.url, token: 't' });
  const err = await uploader.uploadChunk(await chunk()).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UploadError);
  return err as UploadError;
}

describe('HttpUploader', () => {
  it('sends the protocol v1 headers and the body bytes unchanged', async () => {
    let seen: { headers: Record<string, unknown>; body: Buffer; path: string | undefined } | undefined;
    server = await startServer(async (req, res) => {
      seen = { headers: req.headers, body: await readAll(req), path: req.url };
      answer(res, 201, { reportId: 'report-1', totalChunks: 2, receivedChunks: 1, complete: false });
    });
    uploader = new HttpUploader({ url: `${server.url}/base/`, token: 'secret-token' });
    const c = await chunk();
    const result = await uploader.uploadChunk(c);
    expect(result).toEqual({ status: 201, duplicate: false, totalChunks: 2, receivedChunks: 1, complete: false });
    expect(seen?.path).toBe('/base/v1/chunks');
    expect(seen?.headers).toMatchObject({
      authorization: 'Bearer secret-token',
      'content-encoding': 'zstd',
      'outpost-report-id': 'report-1',
      'outpost-chunk-index': '0',
      'outpost-chunk-total': '2',
      'repr-digest': `sha-256=:${Buffer.from(c.sha256, 'hex').toString('base64')}:`,
      'idempotency-key': `report-1:0:${c.sha256}`,
    });
    expect(seen?.body.equals(Buffer.from(c.body))).toBe(true);
  });

  it('lets a token function’s failure through unchanged and refuses a malformed token before sending', async () => {
    server = await startServer((_req, res) => answer(res, 201, {}));
    const boom = new Error('vault unreachable');
    uploader = new HttpUploader({ url: server.url, token: () => { throw boom; } });
    await expect(uploader.uploadChunk(await chunk())).rejects.toBe(boom);
    const other = new HttpUploader({ url: server.url, token: () => 'bad token' });
    await expect(other.uploadChunk(await chunk())).rejects.toBeInstanceOf(InvalidArgumentError);
    await other.close();
    expect(server.requests).toHaveLength(0);
  });

  it('tells an unknown report (404 from the ingest server) from a wrong URL (a bare 404)', async () => {
    server = await startServer((req, res) =>
      req.url === '/v1/reports/known-404' ? answer(res, 404, { error: { code: 'OUTPOST_INGEST_NOT_FOUND', message: 'Unknown report' } }) : answer(res, 404, 'not here'),
    );
    uploader = new HttpUploader({ url: server.url, token: 't' });
    await expect(uploader.getReportStatus('known-404')).resolves.toBeUndefined();
    await expect(uploader.getReportStatus('other')).rejects.toMatchObject({ status: 404, retryable: false });
  });

  it('treats 200 as a duplicate success', async () => {
    server = await startServer((req, res) => void readAll(req).then(() => answer(res, 200, {})));
    uploader = new HttpUploader({ url: server.url, token: async () => 'rotating' });
    const body = await encodeBody({ a: 1 });
    await expect(uploader.uploadReport({ reportId: 'r', ...body })).resolves.toMatchObject({ status: 200, duplicate: true });
    expect(server.requests[0]?.headers['idempotency-key']).toBe(`r:${body.sha256}`);
    expect(server.requests[0]?.headers.authorization).toBe('Bearer rotating');
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(server.requests[0]?.headers['user-agent']).toBe(`outpost-sdk/${version}`);
  });

  it.each([408, 409, 429, 500, 502, 503, 504])('classifies status %i as retryable', async (status) => {
    const err = await failWith(status);
    expect(err).toMatchObject({ code: 'OUTPOST_UPLOAD_HTTP_STATUS', status, retryable: true, serverCode: 'X_CODE' });
  });

  it.each([400, 401, 403, 404, 413, 415, 422])('classifies status %i as permanent', async (status) => {
    const err = await failWith(status);
    expect(err).toMatchObject({ code: 'OUTPOST_UPLOAD_HTTP_STATUS', status, retryable: false });
  });

  it('surfaces Retry-After in seconds', async () => {
    expect((await failWith(429, { 'retry-after': '7' })).retryAfterMs).toBe(7_000);
  });

  it('surfaces Retry-After as an HTTP date', async () => {
    const at = new Date(Date.now() + 30_000).toUTCString();
    const ms = (await failWith(503, { 'retry-after': at })).retryAfterMs;
    expect(ms).toBeGreaterThan(25_000);
    expect(ms).toBeLessThanOrEqual(30_000);
  });

  it('aborts an attempt at uploadTimeoutMs against a server that never answers', async () => {
    server = await startServer(() => undefined); // never answers
    uploader = new HttpUploader({ url: server.url, token: 't', uploadTimeoutMs: 200 });
    await expect(uploader.uploadChunk(await chunk())).rejects.toMatchObject({ code: 'OUTPOST_UPLOAD_TIMEOUT', retryable: true, timeoutMs: 200 });
    // The request itself was aborted: the server saw its socket close.
    const req = server.requests[0];
    await new Promise<void>((resolve) => (req?.socket.destroyed ? resolve() : req?.socket.once('close', () => resolve())));
  });

  it('rejects with the caller’s abort reason and not a timeout', async () => {
    server = await startServer(() => undefined);
    uploader = new HttpUploader({ url: server.url, token: 't' });
    const controller = new AbortController();
    const pending = uploader.uploadChunk(await chunk(), { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('shutting down')), 50);
    await expect(pending).rejects.toThrow('shutting down');
  });

  it('aborts the request itself when the caller aborts mid-flight', async () => {
    server = await startServer(() => undefined);
    uploader = new HttpUploader({ url: server.url, token: 't' });
    const controller = new AbortController();
    const pending = uploader.uploadChunk(await chunk(), { signal: controller.signal });
    await until(() => server?.requests.length === 1);
    controller.abort(new Error('stop'));
    await expect(pending).rejects.toThrow('stop');
    const req = server.requests[0];
    await new Promise<void>((resolve) => (req?.socket.destroyed ? resolve() : req?.socket.once('close', () => resolve())));
  });

  it('rejects an already-aborted signal at once, sending nothing', async () => {
    server = await startServer((_req, res) => answer(res, 201, {}));
    uploader = new HttpUploader({ url: server.url, token: 't' });
    await expect(uploader.uploadChunk(await chunk(), { signal: AbortSignal.abort('gone') })).rejects.toBe('gone');
    expect(server.requests).toHaveLength(0);
  });

  it('puts the token fetch under the same signal and deadline, sending nothing when they fire', async () => {
    server = await startServer((_req, res) => answer(res, 201, {}));
    const slowToken = new HttpUploader({ url: server.url, token: () => new Promise<string>((r) => setTimeout(() => r('late'), 300)) });
    const controller = new AbortController();
    const aborted = slowToken.uploadChunk(await chunk(), { signal: controller.signal });
    setTimeout(() => controller.abort('cancelled'), 20);
    await expect(aborted).rejects.toBe('cancelled');
    const hung = new HttpUploader({ url: server.url, token: () => new Promise<string>(() => undefined), uploadTimeoutMs: 50 });
    await expect(hung.uploadChunk(await chunk())).rejects.toMatchObject({ code: 'OUTPOST_UPLOAD_TIMEOUT' });
    await new Promise((r) => setTimeout(r, 350)); // let the slow token arrive: it must not send anything now
    expect(server.requests).toHaveLength(0);
    await slowToken.close();
    await hung.close();
  });

  it('refuses with IllegalStateError when closed while the token was being fetched', async () => {
    server = await startServer((_req, res) => answer(res, 201, {}));
    let release: (t: string) => void = () => undefined;
    uploader = new HttpUploader({ url: server.url, token: () => new Promise<string>((r) => (release = r)) });
    uploader.start();
    const pending = uploader.uploadChunk(await chunk());
    await uploader.close();
    release('t');
    await expect(pending).rejects.toBeInstanceOf(IllegalStateError);
    expect(server.requests).toHaveLength(0);
  });

  it('times out an attempt whose response body stalls after the headers', async () => {
    server = await startServer((req, res) => {
      void readAll(req).then(() => {
        res.writeHead(201, { 'content-type': 'application/json', 'content-length': '100' });
        res.write('{"reportId":'); // and nothing more
      });
    });
    uploader = new HttpUploader({ url: server.url, token: 't', uploadTimeoutMs: 150 });
    await expect(uploader.uploadChunk(await chunk())).rejects.toMatchObject({ code: 'OUTPOST_UPLOAD_TIMEOUT', retryable: true });
  });

  it('reuses one keep-alive connection for sequential uploads', async () => {
    const sockets = new Set<unknown>();
    server = await startServer((req, res) => {
      sockets.add(req.socket);
      void readAll(req).then(() => answer(res, 201, {}));
    });
    uploader = new HttpUploader({ url: server.url, token: 't' });
    for (let i = 0; i < 5; i++) await uploader.uploadChunk(await chunk({ i }));
    expect(server.requests).toHaveLength(5);
    expect(sockets.size).toBe(1);
  });

  it('refuses a 200 whose body is not a report status instead of inventing numbers', async () => {
    server = await startServer((_req, res) => answer(res, 200, { hello: 'proxy' }));
    uploader = new HttpUploader({ url: server.url, token: 't' });
    await expect(uploader.getReportStatus('r')).rejects.toMatchObject({ code: 'OUTPOST_UPLOAD_HTTP_STATUS', status: 200, retryable: false });
  });

  it('classifies a refused connection as a retryable network error', async () => {
    const probe = createNetServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((r) => probe.close(() => r()));
    uploader = new HttpUploader({ url: `http://127.0.0.1:${port}`, token: 't' });
    await expect(uploader.uploadChunk(await chunk())).rejects.toMatchObject({ code: 'OUTPOST_UPLOAD_NETWORK', retryable: true });
  });

  it('classifies a connection reset mid-request as a retryable network error', async () => {
    const raw: NetServer = createNetServer((socket) => socket.once('data', () => socket.resetAndDestroy()));
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    const { port } = raw.address() as AddressInfo;
    try {
      uploader = new HttpUploader({ url: `http://127.0.0.1:${port}`, token: 't' });
      await expect(uploader.uploadChunk(await chunk())).rejects.toMatchObject({ code: 'OUTPOST_UPLOAD_NETWORK', retryable: true });
    } finally {
      await new Promise<void>((r) => raw.close(() => r()));
    }
  });

  it('can re-send the same chunk object after a failure', async () => {
    let n = 0;
    const bodies: Buffer[] = [];
    server = await startServer(async (req, res) => {
      bodies.push(await readAll(req));
      answer(res, ++n === 1 ? 503 : 201, {});
    });
    uploader = new HttpUploader({ url: server.url, token: 't' });
    const c = await chunk();
    await expect(uploader.uploadChunk(c)).rejects.toMatchObject({ status: 503 });
    await expect(uploader.uploadChunk(c)).resolves.toMatchObject({ status: 201 });
    expect(bodies[0]?.equals(bodies[1] ?? Buffer.alloc(0))).toBe(true);
  });

  it('validates chunks before sending anything', async () => {
    server = await startServer((_req, res) => answer(res, 201, {}));
    uploader = new HttpUploader({ url: server.url, token: 't' });
    const c = await chunk();
    await expect(uploader.uploadChunk({ ...c, reportId: '../etc' })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(uploader.uploadChunk({ ...c, index: 2, total: 2 })).rejects.toThrow(/index/);
    await expect(uploader.uploadChunk({ ...c, total: 10_001 })).rejects.toThrow(/total/);
    await expect(uploader.uploadChunk({ ...c, sha256: 'abc' })).rejects.toThrow(/sha256/);
    expect(server.requests).toHaveLength(0);
  });

  it('rejects invalid options', () => {
    expect(() => new HttpUploader({ url: 'ftp://x', token: 't' })).toThrow(InvalidOptionError);
    expect(() => new HttpUploader({ url: 'http://x', token: '' })).toThrow(/Expected `token` to be a bearer token/);
    expect(() => new HttpUploader({ url: 'http://x', token: 'has:colon' })).toThrow(/token68/);
    // A secret with a stray newline is refused without being echoed into the message.
    expect(() => new HttpUploader({ url: 'http://x', token: 'sk_live_SECRET\n' })).toThrow(/a string of 15 characters/);
    expect(() => new HttpUploader({ url: 'http://x', token: 'sk_live_SECRET\n' })).not.toThrow(/SECRET/);
    // Timers cannot hold more than 2^31 − 1 ms: longer ones would fire at once.
    expect(() => new HttpUploader({ url: 'http://x', token: 't', uploadTimeoutMs: 2 ** 31 })).toThrow(/uploadTimeoutMs.*2147483647/);
    expect(() => new HttpUploader({ url: 'http://x', token: 't', connections: 0 })).toThrow(/connections/);
    expect(() => new HttpUploader({ url: 'http://u:p@x', token: 't' })).toThrow(/credentials/);
    expect(() => new HttpUploader({ url: 'http://x/base?tenant=a', token: 't' })).toThrow(/query/);
  });

  it('closes idempotently and refuses uploads afterwards', async () => {
    server = await startServer((_req, res) => answer(res, 201, {}));
    uploader = new HttpUploader({ url: server.url, token: 't' });
    expect(uploader.state).toBe('idle');
    uploader.start();
    expect(uploader.state).toBe('running');
    await Promise.all([uploader.close(), uploader.close()]);
    expect(uploader.state).toBe('closed');
    await expect(uploader.uploadChunk(await chunk())).rejects.toBeInstanceOf(IllegalStateError);
  });

  it('leaves no sockets or timers behind after close', async () => {
    server = await startServer((req, res) => void readAll(req).then(() => answer(res, 201, {})));
    const count = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'Timeout').length;
    const before = count();
    const u = new HttpUploader({ url: server.url, token: 't', uploadTimeoutMs: 60_000 });
    await u.uploadChunk(await chunk());
    expect(count()).toBeGreaterThan(before); // the keep-alive socket (and the server's end of it) are open
    await u.close();
    await server.close();
    server = undefined;
    // Sockets finish closing within a few ticks; a leak would keep them (and the count) up for good.
    await until(() => count() <= before);
    expect(count()).toBeLessThanOrEqual(before);
  });
});
