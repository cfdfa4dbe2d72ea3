/**
 * Remote shipping against a real node:http server on 127.0.0.1: it answers,
 * fails and recovers, refuses, hangs, or is down (connection refused).
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditDetails, AuditLogger, AuditRecord, AuditShipDroppedEvent, AuditShipRetryEvent } from '../../src/audit/index.js';
import { AuditEmitter } from '../../src/audit/events.js';
import { Incidents, NOTICE_INTERVAL_MS } from '../../src/audit/incidents.js';
import { answer, readAll, startServer, type TestServer } from '../helpers/http.js';
import { tempDir } from '../helpers/ingest.js';
import { auditFiles, expectContiguous, readDir, startLogger } from './helpers.js';

let tmp: ReturnType<typeof tempDir>;
let logger: AuditLogger | undefined;
let server: TestServer | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await logger?.close();
  logger = undefined;
  await server?.close();
  server = undefined;
  tmp?.cleanup();
});

interface Received {
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

/** A collector whose answer is decided per request by `reply` (default 200). */
async function collector(reply: (n: number, res: ServerResponse) => boolean = () => false): Promise<{ server: TestServer; received: Received[]; requests: () => number }> {
  const received: Received[] = [];
  let n = 0;
  const s = await startServer((req, res) => {
    void readAll(req).then((body) => {
      n++;
      if (reply(n, res)) return;
      received.push({ headers: req.headers, body: body.toString('utf8') });
      answer(res, 200, {});
    });
  });
  return { server: s, received, requests: () => n };
}

const FAST = { retryDelayMs: 5, maxRetryDelayMs: 20, jitter: 'none' } as const;
const linesOf = (received: readonly Received[]): string[] => received.flatMap((r) => r.body.split('\n').filter((l) => l.length > 0));
const diskText = (dir: string): string => auditFiles(dir).map((f) => readFileSync(f, 'utf8')).join('');

describe('remote shipping', () => {
  it('POSTs each written batch as JSON lines, byte for byte as on disk, with the configured headers', async () => {
    tmp = tempDir();
    const c = await collector();
    server = c.server;
    logger = await startLogger(tmp.dir, { bufferSize: 5, remoteEndpoint: `${server.url}/v1/audit?source=agent`, remoteHeaders: { Authorization: 'Bearer t0k3n', 'X-Agent': 'a1' } });
    const shipped: number[] = [];
    logger.on('shipped', (e) => shipped.push(e.events));
    for (let i = 0; i < 12; i++) logger.info('scan_started', `e${i}`, { token: 'secret-value' });
    await logger.flush({ remote: true });
    expect(shipped).toEqual([5, 5, 2]);
    expect(c.received.map((r) => r.body).join('')).toBe(diskText(tmp.dir));
    expect(c.received.join('')).not.toContain('secret-value');
    const h = c.received[0]?.headers;
    expect(h).toMatchObject({ 'content-type': 'application/x-ndjson', authorization: 'Bearer t0k3n', 'x-agent': 'a1' });
    expect(h?.['user-agent']).toMatch(/^outpost-sdk\//);
    expect(server.requests[0]?.url).toBe('/v1/audit?source=agent');
    expect(server.requests[0]?.method).toBe('POST');
    expect(logger.stats().remote).toEqual({ queuedBatches: 0, queuedEvents: 0, shippedBatches: 3, shippedEvents: 12, droppedBatches: 0, droppedEvents: 0, retries: 0 });
  });

  it('retries a failing endpoint on the shared retry policy (Retry-After honoured) and delivers every event once it recovers', async () => {
    tmp = tempDir();
    const c = await collector((n, res) => {
      if (n <= 2) answer(res, 503, { error: 'busy' });
      else if (n === 3) answer(res, 429, {}, { 'retry-after': '3600' });
      else if (n === 4) res.socket?.destroy();
      else return false;
      return true;
    });
    server = c.server;
    logger = await startLogger(tmp.dir, { bufferSize: 4, remoteEndpoint: server.url, remoteRetryPolicy: { ...FAST, maxRetryAfterMs: 30 } });
    const retries: AuditShipRetryEvent[] = [];
    logger.on('ship-retry', (e) => retries.push(e));
    for (let i = 0; i < 10; i++) logger.info('upload_started', `e${i}`);
    await logger.flush({ remote: true });
    expect(retries.map((r) => [r.retry, r.delayMs, r.error.code, r.error.status])).toEqual([
      [1, 5, 'OUTPOST_UPLOAD_HTTP_STATUS', 503],
      [2, 10, 'OUTPOST_UPLOAD_HTTP_STATUS', 503],
      [3, 30, 'OUTPOST_UPLOAD_HTTP_STATUS', 429], // Retry-After: 3600 s, capped by maxRetryAfterMs
      [4, 20, 'OUTPOST_UPLOAD_NETWORK', undefined],
    ]);
    const lines = linesOf(c.received);
    expect(lines.map((l) => (JSON.parse(l) as AuditRecord).message)).toEqual(Array.from({ length: 10 }, (_, i) => `e${i}`));
    expect(new Set(lines).size).toBe(10);
    expect(logger.stats().remote).toMatchObject({ shippedEvents: 10, retries: 4, droppedBatches: 0 });
  });

  it('drops the oldest batches while the endpoint is down, counts them, says so in the local file, and ships the rest once it is back', async () => {
    tmp = tempDir();
    const c = await collector();
    server = c.server;
    const { port } = server.server.address() as AddressInfo;
    await server.close(); // connection refused from here on
    logger = await startLogger(tmp.dir, { bufferSize: 1, remoteEndpoint: `http://127.0.0.1:${port}/ingest`, remoteQueueBatches: 3, remoteRetryPolicy: { retryDelayMs: 20, maxRetryDelayMs: 20, jitter: 'none' } });
    const drops: AuditShipDroppedEvent[] = [];
    logger.on('ship-dropped', (e) => drops.push(e));
    const retries: AuditShipRetryEvent[] = [];
    logger.on('ship-retry', (e) => retries.push(e));
    for (let i = 1; i <= 8; i++) logger.info('upload_started', `e${i}`);
    await expect.poll(() => retries.length, { timeout: 10_000 }).toBeGreaterThan(0);
    expect(retries[0]?.error).toMatchObject({ code: 'OUTPOST_UPLOAD_NETWORK', retryable: true });
    expect(drops.every((d) => d.reason === 'queue-full' && d.batches === 1)).toBe(true);
    const remote = logger.stats().remote;
    expect(remote?.queuedBatches).toBe(3);
    expect(remote?.droppedBatches).toBe(drops.length);
    expect(remote?.droppedBatches).toBeGreaterThanOrEqual(5);
    // The local file has every event, and a notice about the drops.
    await logger.flush();
    const local = readDir(tmp.dir);
    expect(local.filter((r) => r.type === 'upload_started').map((r) => r.message)).toEqual(['e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7', 'e8']);
    const notice = local.find((r) => r.type === 'agent_error');
    expect(notice).toMatchObject({ severity: 'WARN', details: { reason: 'audit_remote_dropped', drop_reason: 'queue-full' } });
    expectContiguous(local);
    // Back up on the same port: what is still queued is shipped (the newest batches), oldest first.
    const back = await collector();
    await back.server.close();
    await new Promise<void>((resolve) => back.server.server.listen(port, '127.0.0.1', resolve));
    server = back.server;
    await logger.flush({ remote: true });
    const shippedLines = linesOf(back.received);
    const shipped = shippedLines.map((l) => JSON.parse(l) as AuditRecord);
    expect(shipped.length).toBeGreaterThanOrEqual(3);
    const seqs = shipped.map((r) => r.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(shipped.map((r) => r.message)).toContain('e8');
    expect(shipped.map((r) => r.message)).not.toContain('e1'); // the oldest went first
    // Shipped lines are the local lines, unchanged; shipping working again is noted too.
    const localLines = new Set(diskText(tmp.dir).split('\n'));
    for (const line of shippedLines) expect(localLines.has(line)).toBe(true);
    expect(shipped.at(-1)).toMatchObject({ type: 'agent_error', details: { reason: 'audit_remote_dropped' } });
    const stats = logger.stats().remote;
    expect((stats?.shippedEvents ?? 0) + (stats?.droppedEvents ?? 0)).toBe(logger.stats().loggedEvents);
  });

  it('keeps the backoff when the batch that got Retry-After is dropped for room: no POST before the wait is over', async () => {
    tmp = tempDir();
    const at: number[] = [];
    const c = await collector((n, res) => {
      at.push(Date.now());
      if (n !== 1) return false;
      answer(res, 503, {}, { 'retry-after': '30' });
      return true;
    });
    server = c.server;
    // Retry-After: 30 s, capped at 300 ms by the policy so that the test is short.
    logger = await startLogger(tmp.dir, { bufferSize: 1, remoteEndpoint: server.url, remoteQueueBatches: 1, remoteRetryPolicy: { ...FAST, maxRetryAfterMs: 300 } });
    const retries: AuditShipRetryEvent[] = [];
    logger.on('ship-retry', (e) => retries.push(e));
    const drops: AuditShipDroppedEvent[] = [];
    logger.on('ship-dropped', (e) => drops.push(e));
    logger.info('upload_started', 'e1');
    await expect.poll(() => retries.length, { timeout: 10_000 }).toBe(1);
    expect(retries[0]).toMatchObject({ retry: 1, delayMs: 300 });
    // A steady agent: every new batch pushes the waiting one out of the queue.
    for (let i = 2; i <= 20; i++) logger.info('upload_started', `e${i}`);
    expect(drops.length).toBeGreaterThanOrEqual(19);
    await logger.flush({ remote: true });
    // The refused POST; after the wait, the batch left in the queue; then the notice that shipping works again.
    // Not one POST per dropped batch.
    expect(c.requests()).toBe(3);
    expect((at[1] as number) - (at[0] as number)).toBeGreaterThanOrEqual(250);
    expect(retries).toHaveLength(1);
    expect(logger.stats().remote).toMatchObject({ shippedBatches: 2, retries: 1, queuedBatches: 0 });
  });

  it('counts failures across batches and resets the backoff only on a 2xx', async () => {
    tmp = tempDir();
    const c = await collector((n, res) => {
      if (n === 1 || n === 2 || n === 4) answer(res, 503, {});
      else return false;
      return true;
    });
    server = c.server;
    logger = await startLogger(tmp.dir, { bufferSize: 2, remoteEndpoint: server.url, remoteRetryPolicy: FAST });
    const retries: AuditShipRetryEvent[] = [];
    logger.on('ship-retry', (e) => retries.push(e));
    const shipped: number[] = [];
    logger.on('shipped', (e) => shipped.push(e.attempts));
    logger.info('upload_started', 'a1');
    logger.info('upload_started', 'a2');
    await logger.flush({ remote: true });
    logger.info('upload_started', 'b1');
    logger.info('upload_started', 'b2');
    await logger.flush({ remote: true });
    expect(retries.map((r) => [r.retry, r.delayMs])).toEqual([
      [1, 5],
      [2, 10],
      [1, 5], // after the 2xx, the backoff starts over
    ]);
    expect(shipped).toEqual([3, 2]);
  });

  it('lets a signal bound flush({ remote: true }) while the endpoint is down', async () => {
    tmp = tempDir();
    const dead = await startServer(() => undefined);
    const { port } = dead.server.address() as AddressInfo;
    await dead.close();
    logger = await startLogger(tmp.dir, { remoteEndpoint: `http://127.0.0.1:${port}/`, remoteCloseTimeoutMs: 0, remoteRetryPolicy: FAST });
    logger.info('agent_start', 'queued');
    const controller = new AbortController();
    const waiting = logger.flush({ remote: true, signal: controller.signal });
    const reason = new Error('stop waiting');
    controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    await expect(logger.flush({ remote: true, signal: controller.signal })).rejects.toBe(reason);
    expect(readDir(tmp.dir).map((r) => r.message)).toEqual(['queued']);
  });

  it('gives up a batch the endpoint refuses for good (4xx) without retrying, and ships the next ones', async () => {
    tmp = tempDir();
    const c = await collector((n, res) => {
      if (n !== 1) return false;
      answer(res, 400, { error: 'bad' });
      return true;
    });
    server = c.server;
    logger = await startLogger(tmp.dir, { bufferSize: 2, remoteEndpoint: server.url, remoteRetryPolicy: FAST });
    const drops: AuditShipDroppedEvent[] = [];
    logger.on('ship-dropped', (e) => drops.push(e));
    for (let i = 1; i <= 4; i++) logger.info('upload_started', `e${i}`);
    await logger.flush({ remote: true });
    expect(drops).toEqual([{ batches: 1, events: 2, reason: 'rejected', error: expect.objectContaining({ status: 400, retryable: false }) }]);
    expect(c.requests()).toBeGreaterThanOrEqual(2);
    expect(linesOf(c.received).map((l) => (JSON.parse(l) as AuditRecord).message)).toContain('e3');
    expect(logger.stats().remote).toMatchObject({ retries: 0, droppedBatches: 1, droppedEvents: 2 });
    await logger.close();
    expect(readDir(tmp.dir).find((r) => r.type === 'agent_error')).toMatchObject({ details: { reason: 'audit_remote_dropped', drop_reason: 'rejected', dropped_events: 2 } });
  });

  it('times out a hanging endpoint after remoteTimeoutMs, never slows logging, and gives up what is queued at close', async () => {
    tmp = tempDir();
    const hung: ServerResponse[] = [];
    server = await startServer((_req, res) => void hung.push(res));
    logger = await startLogger(tmp.dir, { bufferSize: 10, remoteEndpoint: server.url, remoteTimeoutMs: 50, remoteCloseTimeoutMs: 100, remoteRetryPolicy: FAST });
    const retries: AuditShipRetryEvent[] = [];
    logger.on('ship-retry', (e) => retries.push(e));
    const drops: AuditShipDroppedEvent[] = [];
    logger.on('ship-dropped', (e) => drops.push(e));
    for (let i = 0; i < 1_000; i++) logger.info('scan_completed', `e${i}`);
    expect(readDir(tmp.dir)).toHaveLength(1_000); // on disk already, whatever the endpoint does
    await expect.poll(() => retries.length, { timeout: 10_000 }).toBeGreaterThan(0);
    expect(retries[0]?.error).toMatchObject({ code: 'OUTPOST_UPLOAD_NETWORK', retryable: true });
    expect(String((retries[0]?.error.cause as { code?: string } | undefined)?.code)).toMatch(/UND_ERR_(HEADERS|BODY)_TIMEOUT/);
    await logger.close();
    const closed = drops.filter((d) => d.reason === 'closed');
    expect(closed.reduce((n, d) => n + d.events, 0)).toBeGreaterThan(0);
    const stats = logger.stats().remote;
    expect(stats?.queuedBatches).toBe(0);
    expect((stats?.droppedEvents ?? 0) + (stats?.shippedEvents ?? 0)).toBe(1_000);
    expect(readDir(tmp.dir).at(-1)).toMatchObject({ type: 'agent_error', details: { reason: 'audit_remote_unshipped' } });
    for (const res of hung) res.destroy();
  });
});

describe('notices of remote drops in the local file', () => {
  it('tells the first drop at once, then at most once a minute with the counts in between, and when shipping works again', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const notices: { message: string; details: AuditDetails }[] = [];
    const incidents = new Incidents({
      emitter: new AuditEmitter(),
      path: () => '/x/audit.log',
      pendingEvents: () => 0,
      failedAttempts: () => 0,
      notice: (message, details) => void notices.push({ message, details }),
    });
    const drop = (events: number): void => incidents.remoteHooks.dropped(1, events, 'queue-full', undefined);
    drop(10);
    expect(notices.map((n) => n.details)).toEqual([{ reason: 'audit_remote_dropped', dropped_batches: 1, dropped_events: 10, drop_reason: 'queue-full' }]);
    drop(5);
    drop(7);
    vi.advanceTimersByTime(NOTICE_INTERVAL_MS - 1);
    drop(1);
    expect(notices).toHaveLength(1);
    vi.advanceTimersByTime(1);
    drop(2);
    expect(notices[1]?.details).toMatchObject({ dropped_batches: 4, dropped_events: 15 });
    drop(3);
    incidents.remoteHooks.shipped(10, 100, 1);
    expect(notices[2]?.details).toMatchObject({ dropped_batches: 1, dropped_events: 3 });
    incidents.remoteHooks.shipped(10, 100, 1);
    expect(notices).toHaveLength(3);
  });
});
