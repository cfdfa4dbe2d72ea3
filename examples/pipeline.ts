/**
 * `node --import tsx examples/pipeline.ts`: the upload pipeline, end to end, in one process.
 *
 * - starts an ingest server on a loopback port that takes ~250 ms per request
 *   (so a queue forms), and refuses the urgent report once with 503 + Retry-After;
 * - opens a durable outbox (`ChunkManager`) in a temporary directory, then an
 *   `UploadPipeline` in front of it with a single worker;
 * - submits reports with priorities (`submit()` returns an id at once): the
 *   urgent ones jump the queue, the refused one is retried after its
 *   Retry-After without holding the worker, and a report the outbox would split
 *   into chunks is handed to it at once (`spilled`, reason `large`);
 * - stops the pipeline with routine reports still queued: the upload in flight
 *   finishes within the grace, the others are spilled to the outbox (reason
 *   `stopped`), which delivers them;
 * - prints every event and the final `stats()`, closes everything, removes the
 *   temporary directory, and exits on its own.
 *
 * No network beyond 127.0.0.1.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChunkManager, type Report } from '../src/chunk/index.js';
import { createIngestHandler, staticTokenAuthenticator } from '../src/ingest/index.js';
import { UploadPipeline } from '../src/pipeline/index.js';
import { HttpUploader } from '../src/transport/index.js';

const dir = mkdtempSync(join(tmpdir(), 'outpost-pipeline-'));
const token = 'example-agent-token';
const tenantId = 'tenant-demo';
const t0 = Date.now();
const at = (): string => `+${String(Date.now() - t0).padStart(4)} ms`;

// ── The server side ──────────────────────────────────────────────────────────
const arrived = new Map<string, string>(); // reportId → how it arrived
let allArrived: () => void = () => undefined;
const ingest = createIngestHandler({
  store: join(dir, 'ingest.db'),
  authenticate: staticTokenAuthenticator({ [token]: tenantId }),
  onReport: (report, info) => {
    const findings = (report['findings'] as unknown[]).length;
    arrived.set(info.reportId, `${info.totalChunks} request(s), ${findings} findings`);
    console.log(`${at()} server:   ${info.reportId} delivered (${info.totalChunks === 1 ? 'whole' : `${info.totalChunks} chunks`}, ${findings} findings)`);
    if (arrived.size === expected.length) allArrived();
  },
});
ingest.on('error', (err) => console.error('server error:', err));

const refuseOnce = new Set(['urgent-cve-2031']);
const server = createServer((req, res) => {
  const reportId = String(req.headers['outpost-report-id']);
  if (refuseOnce.delete(reportId)) {
    // An overloaded server: the pipeline waits for Retry-After (1 s), then sends the same bytes again.
    res.writeHead(503, { 'retry-after': '1', 'content-type': 'application/json', connection: 'close' });
    res.end('{"error":{"code":"OUTPOST_INGEST_OVERLOADED","message":"busy (simulated)"}}');
    return;
  }
  setTimeout(() => ingest(req, res), 250); // a slow server, so that a queue forms behind the one worker
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
console.log(`${at()} server:   listening on ${url}`);

// ── The agent side ───────────────────────────────────────────────────────────
const uploader = new HttpUploader({ url, token, uploadTimeoutMs: 10_000 });
// The outbox first: it must be running before the pipeline starts, and close after it.
const outbox = new ChunkManager({ uploader, databasePath: join(dir, 'outbox.db'), uploadDelayMs: 10, retryPolicy: { retryDelayMs: 200, maxRetryDelayMs: 2_000 } });
outbox.on('report-completed', (e) => console.log(`${at()} outbox:   ${e.reportId} acknowledged (${e.totalChunks} chunk(s))`));
outbox.on('chunk-dead', (e) => console.error(`${at()} outbox:   gave up ${e.reportId} chunk ${e.index}: ${e.reason}`));
outbox.on('error', (err) => console.error('outbox error:', err));
await outbox.start();

const pipeline = new UploadPipeline({
  uploader,
  outbox,
  tenantId,
  workers: 1, // one upload at a time, to make the order visible
  retryDelayMs: 500,
  uploadTimeoutMs: 5_000,
  // Sugar for pipeline.on('spilled', …): from here on the outbox owns the report.
  onSpilled: (item, reason, receipt) => console.log(`${at()} pipeline: spilled   ${item.id} to the outbox (${reason}): ${receipt.chunked ? `${receipt.totalChunks} chunks` : 'whole'}`),
});
pipeline.on('submitted', (item) => console.log(`${at()} pipeline: submitted ${item.id} (priority ${item.priority})`));
pipeline.on('started', (item, attempt) => console.log(`${at()} pipeline: started   ${item.id}, attempt ${attempt}`));
pipeline.on('retry', (item, error, retry, delayMs) => console.log(`${at()} pipeline: retry     ${item.id}: ${error.code} ${error.status ?? ''}; retry ${retry} in ${delayMs} ms (the worker moves on)`));
pipeline.on('completed', (item, result) => console.log(`${at()} pipeline: completed ${item.id} (${result.status}${result.duplicate ? ', duplicate' : ''}) after ${item.attempts} attempt(s), ${item.bodyBytes} bytes`));
pipeline.on('failed', (item, error, reason) => console.error(`${at()} pipeline: failed    ${item.id}: ${reason}`, error.message));

/** Resolves like `promise`, or rejects after `ms`: a demo must not hang. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** A fake scan of `target` with `count` findings. */
function scan(target: string, count: number): Report {
  const assets = Array.from({ length: Math.max(1, Math.ceil(count / 50)) }, (_, i) => ({ id: `${target}-host-${i}`, kind: 'host' }));
  const findings = Array.from({ length: count }, (_, i) => ({ id: `${target}-${i}`, rule: `RULE-${i % 17}`, assetId: assets[Math.floor(i / 50)]?.id, line: (i * 37) % 900 }));
  return { metadata: { tool: 'demo-scanner', target }, findings, assets };
}

// Submitted before start(): held, then encoded and queued in the background once the pipeline starts.
const expected: string[] = [];
const submit = (reportId: string, report: Report, priority = 0): void => {
  expected.push(pipeline.submit(report, { reportId, priority, jobId: `job-${reportId}` }));
};
for (let i = 1; i <= 10; i++) submit(`routine-${i}`, scan(`routine-${i}`, 30)); // priority 0
submit('fleet-inventory', scan('fleet', 2_500)); // 2 500 findings: the outbox would chunk it → spilled (large)
submit('urgent-cve-2031', scan('cve-2031', 5), 10); // highest priority; refused once by the server
submit('pull-request-77', scan('pr-77', 12), 5);
console.log(`${at()} agent:    ${expected.length} reports submitted; stats ${JSON.stringify(pipeline.stats())}`);

// Once the urgent report is through, stop as the next upload begins: that one may finish
// (it is in flight), the routine reports still waiting go to the outbox.
const nextStarted = new Promise<void>((resolve) =>
  pipeline.on('completed', (item) => {
    if (item.id === 'urgent-cve-2031') pipeline.once('started', () => resolve());
  }),
);
pipeline.start(); // routine-1 goes first: the worker is free at once. Priority orders what waits.

await nextStarted;
console.log(`${at()} agent:    stopping; stats ${JSON.stringify(pipeline.stats())}`);
await pipeline.stop({ timeoutMs: 2_000 });
console.log(`${at()} agent:    pipeline ${pipeline.state}; final stats ${JSON.stringify(pipeline.stats())}`);

// The outbox delivers what was spilled (it would also do so after a restart: it is on disk).
const everythingArrived = new Promise<void>((resolve) => {
  allArrived = resolve;
  if (arrived.size === expected.length) resolve();
});
await outbox.flush({ signal: AbortSignal.timeout(30_000) });
await within(everythingArrived, 30_000, 'every report on the server');
console.log(`${at()} agent:    outbox reports ${JSON.stringify(outbox.stats().reports)}`);
console.log(`${at()} agent:    all ${expected.length} reports are on the server`);

// ── Shut down: the pipeline (done), then the outbox, then its uploader ───────
await outbox.close();
await uploader.close();
await new Promise<void>((resolve) => server.close(() => resolve()));
await ingest.close();
rmSync(dir, { recursive: true, force: true });
