/**
 * The pipeline against real loopback servers through the real HttpUploader:
 * a front server that fails, throttles, resets or never answers before it
 * forwards to a real ingest handler, with real (small) timers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChunkManager } from '../../src/chunk/index.js';
import { PipelineStoppedError, UploadError, UploadTimeoutError } from '../../src/errors.js';
import { UploadPipeline, type FailReason, type PipelineOptions, type SpillReason } from '../../src/pipeline/index.js';
import { HttpUploader, encodeBody, type UploadResult } from '../../src/transport/index.js';
import { makeReport, startManager } from '../helpers/chunk.js';
import { answer, readAll, startServer, type TestServer } from '../helpers/http.js';
import { startIngest, tempDir, type IngestFixture } from '../helpers/ingest.js';

/**
 * What the front server does with a request: forward it to the ingest handler (`unanswered`: which stores the
 * report, but its answer is swallowed), never answer, reset the connection, or answer a status.
 */
type Action = 'forward' | 'unanswered' | 'hang' | 'reset' | { readonly status: number; readonly headers?: Record<string, string> };

interface Front {
  server: TestServer;
  /** Every request, in arrival order, with its report id, per-report attempt number and arrival time (performance.now()). */
  readonly arrivals: { reportId: string; attempt: number; at: number }[];
  /** Per request, when it is over: whether the client closed the connection before any answer was sent (it gave up), and after how long. */
  readonly ends: Promise<{ byClient: boolean; afterMs: number }>[];
  /** Requests open now, and the most ever open at once. */
  open: number;
  maxOpen: number;
}

let fixture: IngestFixture;
let front: Front | undefined;
let tmp: ReturnType<typeof tempDir> | undefined;
const pipelines: UploadPipeline[] = [];
const outboxes: ChunkManager[] = [];
const uploaders: HttpUploader[] = [];

afterEach(async () => {
  await Promise.all(pipelines.splice(0).map((p) => p.stop({ timeoutMs: 0 })));
  await front?.server.close(); // drops requests left hanging, so the uploaders below can close
  await Promise.all(outboxes.splice(0).map((o) => o.close()));
  await Promise.all(uploaders.splice(0).map((u) => u.close()));
  await fixture?.close();
  tmp?.cleanup();
  front = undefined;
  tmp = undefined;
});

/** A real ingest server, and a front server before it that does what `decide` says with the n-th request of each report. */
async function startFront(decide: (reportId: string, attempt: number) => Action): Promise<Front> {
  fixture = await startIngest({ retryAfterSeconds: 0 });
  const perReport = new Map<string, number>();
  const f: Front = { server: undefined as unknown as TestServer, arrivals: [], ends: [], open: 0, maxOpen: 0 };
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const reportId = String(req.headers['outpost-report-id']);
    const attempt = (perReport.get(reportId) ?? 0) + 1;
    perReport.set(reportId, attempt);
    const at = performance.now();
    f.arrivals.push({ reportId, attempt, at });
    f.open++;
    f.maxOpen = Math.max(f.maxOpen, f.open);
    // A request is over when its response is done or the client closed the connection. The client's FIN
    // ('end') is the moment it let go; the response's 'close' only follows once the server tore the socket down.
    f.ends.push(
      new Promise((resolve) => {
        const over = (): void => {
          res.off('close', over);
          req.socket.off('end', over);
          req.socket.off('close', over);
          f.open--;
          resolve({ byClient: !res.headersSent, afterMs: performance.now() - at });
        };
        res.once('close', over);
        req.socket.once('end', over);
        req.socket.once('close', over);
      }),
    );
    const action = decide(reportId, attempt);
    if (action === 'unanswered') {
      res.writeHead = (() => res) as unknown as typeof res.writeHead;
      res.end = (() => res) as unknown as typeof res.end;
    }
    if (action === 'forward' || action === 'unanswered') fixture.handler(req, res);
    else if (action === 'reset') req.socket.destroy();
    else if (action !== 'hang') void readAll(req).then(() => answer(res, action.status, { error: { code: 'TEST_REFUSED', message: 'scripted' } }, action.headers));
  };
  f.server = await startServer(handle);
  front = f;
  return f;
}

/** An HttpUploader (tenant-a) to `url`, closed after the test; its own timeout is long, so the pipeline's `uploadTimeoutMs` governs. */
function uploaderTo(url: string): HttpUploader {
  const u = new HttpUploader({ url, token: 'token-a', uploadTimeoutMs: 10_000 });
  uploaders.push(u);
  return u;
}

interface Seen {
  started: { id: string; attempt: number; uploading: number }[];
  retries: { id: string; error: UploadError; retry: number; delayMs: number }[];
  completed: { id: string; result: UploadResult }[];
  failed: { id: string; error: Error; reason: FailReason }[];
  spilled: { id: string; reason: SpillReason; chunked: boolean }[];
}

/** A started pipeline with fast test defaults, and what its events said. */
function pipelineOf(options: Partial<PipelineOptions> & Pick<PipelineOptions, 'uploader'>): { pipeline: UploadPipeline; seen: Seen } {
  const pipeline = new UploadPipeline({ tenantId: 'tenant-a', retryPolicy: { retryDelayMs: 5, maxRetryDelayMs: 50 }, uploadTimeoutMs: 2_000, stopTimeoutMs: 100, ...options });
  pipelines.push(pipeline);
  const seen: Seen = { started: [], retries: [], completed: [], failed: [], spilled: [] };
  pipeline.on('started', (item, attempt) => seen.started.push({ id: item.id, attempt, uploading: pipeline.stats().uploading }));
  pipeline.on('retry', (item, error, retry, delayMs) => seen.retries.push({ id: item.id, error, retry, delayMs }));
  pipeline.on('completed', (item, result) => seen.completed.push({ id: item.id, result }));
  pipeline.on('failed', (item, error, reason) => seen.failed.push({ id: item.id, error, reason }));
  pipeline.on('spilled', (item, reason, receipt) => seen.spilled.push({ id: item.id, reason, chunked: receipt.chunked }));
  pipeline.start();
  return { pipeline, seen };
}

function submitAll(pipeline: UploadPipeline, ids: readonly string[]): void {
  ids.forEach((id, i) => pipeline.submit(makeReport(3 + i, 2), { reportId: id }));
}

/** Resolves once the ingest server has handed every one of `ids` to `onReport`. */
function delivered(ids: readonly string[]): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (!ids.every((id) => fixture.delivered.some((d) => d.info.reportId === id))) return;
      fixture.handler.off('delivered', check);
      resolve();
    };
    fixture.handler.on('delivered', check);
    check();
  });
}

const deliveredCount = (id: string): number => fixture.delivered.filter((d) => d.info.reportId === id).length;
const count = <T extends { id: string }>(list: readonly T[], id: string): number => list.filter((e) => e.id === id).length;
/** Resolves when `predicate` holds after one of the pipeline's events. */
function after(pipeline: UploadPipeline, event: 'started' | 'retry', predicate: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (!predicate()) return;
      pipeline.off(event, check);
      resolve();
    };
    pipeline.on(event, check);
    check();
  });
}

describe('UploadPipeline against a loopback ingest server', () => {
  it('retries a report the server fails N times with 503 and delivers it exactly once', async () => {
    const N = 2;
    const f = await startFront((_id, attempt) => (attempt <= N ? { status: 503 } : 'forward'));
    const { pipeline, seen } = pipelineOf({ uploader: uploaderTo(f.server.url) });
    const ids = ['r0', 'r1', 'r2', 'r3', 'r4'];
    submitAll(pipeline, ids);
    await pipeline.flush();
    await delivered(ids);
    for (const id of ids) {
      expect(count(seen.retries, id), id).toBe(N);
      expect(count(seen.completed, id), id).toBe(1);
      expect(deliveredCount(id), id).toBe(1);
      expect(f.arrivals.filter((a) => a.reportId === id)).toHaveLength(N + 1);
    }
    expect(seen.retries.every((r) => r.error.status === 503 && r.error.retryable)).toBe(true);
    expect(seen.failed).toEqual([]);
    expect(pipeline.stats()).toMatchObject({ submitted: 5, completed: 5, failed: 0, spilled: 0, queued: 0, inProgress: 0, retrying: 0 });
  });

  it('waits the Retry-After of a 429 before the next attempt', async () => {
    const f = await startFront((_id, attempt) => (attempt === 1 ? { status: 429, headers: { 'retry-after': '1' } } : 'forward'));
    const { pipeline, seen } = pipelineOf({ uploader: uploaderTo(f.server.url) });
    submitAll(pipeline, ['throttled']);
    await pipeline.flush();
    expect(seen.retries).toHaveLength(1);
    expect(seen.retries[0]).toMatchObject({ retry: 1, delayMs: 1000 });
    expect(seen.retries[0]?.error).toMatchObject({ status: 429, retryAfterMs: 1000 });
    const [first, second] = f.arrivals;
    expect(f.arrivals).toHaveLength(2);
    // The retry timer starts after the 429 reached the client, so the second request comes a full second after the first.
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(995);
    expect(seen.completed.map((c) => c.id)).toEqual(['throttled']);
    await delivered(['throttled']);
  });

  it('retries an attempt whose connection was reset and delivers the report', async () => {
    const f = await startFront((_id, attempt) => (attempt === 1 ? 'reset' : 'forward'));
    const { pipeline, seen } = pipelineOf({ uploader: uploaderTo(f.server.url) });
    const ids = ['reset-0', 'reset-1', 'reset-2'];
    submitAll(pipeline, ids);
    await pipeline.flush();
    await delivered(ids);
    for (const id of ids) {
      expect(count(seen.retries, id), id).toBe(1);
      expect(deliveredCount(id), id).toBe(1);
    }
    expect(seen.retries.every((r) => r.error.code === 'OUTPOST_UPLOAD_NETWORK' && r.error.retryable)).toBe(true);
    expect(seen.completed).toHaveLength(3);
  });

  it('aborts each attempt at uploadTimeoutMs against a server that never answers, then fails with retries-exhausted', async () => {
    const f = await startFront(() => 'hang');
    const { pipeline, seen } = pipelineOf({ uploader: uploaderTo(f.server.url), uploadTimeoutMs: 150, retryAttempts: 2 });
    submitAll(pipeline, ['silent']);
    await pipeline.flush();
    expect(seen.failed).toHaveLength(1);
    expect(seen.failed[0]?.reason).toBe('retries-exhausted');
    expect(seen.failed[0]?.error).toBeInstanceOf(UploadTimeoutError);
    expect(seen.failed[0]?.error).toMatchObject({ timeoutMs: 150 });
    expect(seen.retries.map((r) => [r.retry, r.error.code])).toEqual([
      [1, 'OUTPOST_UPLOAD_TIMEOUT'],
      [2, 'OUTPOST_UPLOAD_TIMEOUT'],
    ]);
    // Three attempts reached the server, and the client closed each one itself: the request was aborted, not left running.
    expect(f.arrivals).toHaveLength(3);
    // ... at the pipeline's deadline, long before the uploader's own 10 s one.
    const ends = await Promise.all(f.ends);
    expect(ends.map((e) => e.byClient)).toEqual([true, true, true]);
    for (const e of ends) expect(e.afterMs).toBeLessThan(2_000);
    expect(fixture.delivered).toEqual([]);
  });

  it('retries a report the server stored but whose answer was lost, and completes it as a duplicate delivered once', async () => {
    const f = await startFront((_id, attempt) => (attempt === 1 ? 'unanswered' : 'forward'));
    const { pipeline, seen } = pipelineOf({ uploader: uploaderTo(f.server.url), uploadTimeoutMs: 300 });
    submitAll(pipeline, ['slow-ack']);
    await pipeline.flush();
    expect(seen.retries.map((r) => r.error.code)).toEqual(['OUTPOST_UPLOAD_TIMEOUT']);
    expect(seen.completed).toEqual([{ id: 'slow-ack', result: expect.objectContaining({ status: 200, duplicate: true }) }]);
    await delivered(['slow-ack']);
    expect(deliveredCount('slow-ack')).toBe(1);
    expect(fixture.handler.stats()).toMatchObject({ stored: 1, duplicates: 1, rejected: 0 });
  });

  it('spills a report whose attempts all timed out to the outbox, which delivers it', async () => {
    const f = await startFront(() => 'hang');
    tmp = tempDir();
    const outbox = await startManager(tmp.dir, fixture.client()); // the outbox reaches the ingest server directly
    outboxes.push(outbox);
    const { pipeline, seen } = pipelineOf({ uploader: uploaderTo(f.server.url), outbox, uploadTimeoutMs: 150, retryAttempts: 1 });
    submitAll(pipeline, ['to-outbox']);
    await pipeline.flush();
    expect(seen.spilled).toEqual([{ id: 'to-outbox', reason: 'retries-exhausted', chunked: false }]);
    expect(seen.failed).toEqual([]);
    const ends = await Promise.all(f.ends);
    expect(ends.map((e) => e.byClient)).toEqual([true, true]);
    for (const e of ends) expect(e.afterMs).toBeLessThan(2_000);
    await outbox.flush();
    await delivered(['to-outbox']);
    expect(deliveredCount('to-outbox')).toBe(1);
  });

  it('never has more than `workers` requests open at the server, even when attempts time out', async () => {
    const f = await startFront((_id, attempt) => (attempt === 1 ? 'hang' : 'forward'));
    const workers = 2;
    const { pipeline, seen } = pipelineOf({ uploader: uploaderTo(f.server.url), workers, uploadTimeoutMs: 150 });
    const ids = ['w0', 'w1', 'w2', 'w3', 'w4', 'w5'];
    submitAll(pipeline, ids);
    await pipeline.flush();
    await delivered(ids);
    await Promise.all(f.ends);
    expect(f.arrivals.length).toBeGreaterThanOrEqual(12); // a loaded machine may time out a forwarded attempt too
    expect(f.maxOpen).toBe(workers);
    expect(Math.max(...seen.started.map((s) => s.uploading))).toBeLessThanOrEqual(workers);
    for (const id of ids) expect(seen.retries.find((r) => r.id === id)?.error.code, id).toBe('OUTPOST_UPLOAD_TIMEOUT');
    expect(seen.completed.map((c) => c.id).sort()).toEqual(ids);
    for (const id of ids) expect(deliveredCount(id), id).toBe(1);
  });
});

describe('UploadPipeline stopped with work left', () => {
  it('fails every report with reason stopped when there is no outbox: queued, uploading and waiting for a retry', async () => {
    // r0 gets a 503 asking for a minute's wait; r1 and r2 hang; r3 and r4 wait for a worker.
    const f = await startFront((id) => (id === 'r0' ? { status: 503, headers: { 'retry-after': '60' } } : 'hang'));
    const { pipeline, seen } = pipelineOf({ uploader: uploaderTo(f.server.url), workers: 2 });
    const ids = ['r0', 'r1', 'r2', 'r3', 'r4'];
    submitAll(pipeline, ids);
    await after(pipeline, 'started', () => seen.retries.length === 1 && count(seen.started, 'r1') === 1 && count(seen.started, 'r2') === 1);
    expect(pipeline.stats()).toMatchObject({ retrying: 1, uploading: 2, queued: 2 });
    await pipeline.stop({ timeoutMs: 50 });
    expect(pipeline.state).toBe('closed');
    expect(seen.failed.map((e) => e.id).sort()).toEqual(ids);
    expect(seen.failed.every((e) => e.reason === 'stopped' && e.error instanceof PipelineStoppedError)).toBe(true);
    expect(seen.completed).toEqual([]);
    expect(pipeline.stats()).toMatchObject({ submitted: 5, failed: 5, queued: 0, inProgress: 0, retrying: 0, queuedBytes: 0 });
    // The two hanging uploads were aborted by the client once the 50 ms of grace ran out.
    const ends = await Promise.all(f.ends.slice(1));
    expect(ends.map((e) => e.byClient)).toEqual([true, true]);
    for (const e of ends) expect(e.afterMs).toBeLessThan(2_000);
    expect(f.arrivals.map((a) => a.reportId)).toEqual(['r0', 'r1', 'r2']);
  });

  it('spills every report to the outbox, which delivers each once the server is back', async () => {
    let down = true;
    const f = await startFront(() => (down ? { status: 503 } : 'forward'));
    tmp = tempDir();
    const outbox = await startManager(tmp.dir, uploaderTo(f.server.url)); // same server, the outbox's own uploader
    outboxes.push(outbox);
    const { pipeline, seen } = pipelineOf({ uploader: uploaderTo(f.server.url), outbox, retryAttempts: 1000 });
    const ids = ['s0', 's1', 's2', 's3', 's4', 's5'];
    submitAll(pipeline, ids);
    await after(pipeline, 'retry', () => ids.every((id) => count(seen.retries, id) >= 1));
    await pipeline.stop({ timeoutMs: 100 });
    expect(seen.spilled.map((s) => s.id).sort()).toEqual(ids);
    expect(seen.spilled.every((s) => s.reason === 'stopped' && !s.chunked)).toBe(true);
    expect(seen.failed).toEqual([]);
    expect(fixture.delivered).toEqual([]);
    down = false;
    await outbox.flush();
    await delivered(ids);
    for (const id of ids) expect(deliveredCount(id), id).toBe(1);
  });

  it('sends the same bytes as the outbox: a report it uploaded is a duplicate, not a conflict, when the outbox sends it again', async () => {
    await startFront(() => 'forward');
    const report = { findings: [{ id: 'F-1', rule: 'r' }], assets: [{ id: 'A-1' }], metadata: { tool: 'scanner' }, scanId: 'scan-9' };
    const { pipeline, seen } = pipelineOf({ uploader: fixture.client() });
    pipeline.submit(report, { reportId: 'same-bytes' });
    await pipeline.flush();
    expect(seen.completed).toEqual([{ id: 'same-bytes', result: expect.objectContaining({ status: 201, duplicate: false }) }]);

    tmp = tempDir();
    const outbox = await startManager(tmp.dir, fixture.client());
    outboxes.push(outbox);
    const uploaded: { duplicate: boolean; status: number }[] = [];
    outbox.on('chunk-uploaded', (e) => uploaded.push({ duplicate: e.duplicate, status: e.status }));
    const receipt = await outbox.submitReport(structuredClone(report), { tenantId: 'tenant-a', reportId: 'same-bytes' });
    expect(receipt.chunked).toBe(false);
    await outbox.flush();
    expect(uploaded).toEqual([{ duplicate: true, status: 200 }]);
    expect(fixture.handler.stats()).toMatchObject({ stored: 1, duplicates: 1, rejected: 0 });
    await delivered(['same-bytes']);
    expect(deliveredCount('same-bytes')).toBe(1);

    // The control: the same report serialised as it stands (other key order) is a conflict under that id.
    const naive = await encodeBody(report);
    await expect(fixture.client().uploadReport({ reportId: 'same-bytes', ...naive })).rejects.toMatchObject({ status: 422, serverCode: 'OUTPOST_INGEST_KEY_CONFLICT' });
  });
});
