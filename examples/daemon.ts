/**
 * `npm start`: a miniature scanner agent and its server in one process, using
 * every module of outpost-sdk.
 *
 * - the server: an ingest handler on a loopback port, its state in
 *   `.outpost/ingest.db`; it refuses one chunk once (503 + Retry-After) to show
 *   a retry;
 * - the agent:
 *   - a `ResourceController` admits scan jobs only while CPU, memory and the
 *     disk holding `.outpost/` allow, and aborts a job past its timeout;
 *   - each job "scans" a target and submits its report to the upload pipeline
 *     (`UploadPipeline`), which returns at once and uploads small reports whole
 *     in the background; a report large enough to be chunked goes to the durable
 *     outbox behind it (`ChunkManager`, `.outpost/chunks.db`), which sends it in
 *     chunks that each carry the assets their findings refer to;
 *   - an `AuditLogger` writes every job, upload, hand-over to the outbox and
 *     throttle to `.outpost/audit/` (JSON lines, 0600 in a 0700 directory);
 * - waits until everything is uploaded, prints what happened, closes
 *   everything (the pipeline before the outbox), and exits on its own.
 *
 * Everything runs on embedded defaults; no network beyond 127.0.0.1. Files
 * holding data are 0600 in 0700 directories under `OUTPOST_DATA_DIR`
 * (default `./.outpost`).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { AuditLogger } from '../src/audit/index.js';
import { ChunkManager } from '../src/chunk/index.js';
import { createIngestHandler, staticTokenAuthenticator } from '../src/ingest/index.js';
import { UploadPipeline } from '../src/pipeline/index.js';
import { ResourceController } from '../src/resource/index.js';
import { HttpUploader } from '../src/transport/index.js';

const dataDir = process.env['OUTPOST_DATA_DIR'] ?? join(process.cwd(), '.outpost');
const token = 'example-agent-token';
const tenantId = 'tenant-demo';

// ── The server side ──────────────────────────────────────────────────────────
const ingest = createIngestHandler({
  store: join(dataDir, 'ingest.db'),
  authenticate: staticTokenAuthenticator({ [token]: tenantId }),
  onReport: (report, info) => {
    const findings = (report['findings'] as unknown[]).length;
    const assets = (report['assets'] as unknown[]).length;
    console.log(`server: report ${info.reportId} complete — ${info.totalChunks} chunk(s), ${findings} findings, ${assets} assets, ${info.rawBytes} bytes`);
  },
});
ingest.on('error', (err) => console.error('server error:', err));

let refuseOnce = true;
const server = createServer((req, res) => {
  // Simulate an overloaded server once, to show the outbox backing off and honouring Retry-After.
  if (refuseOnce && req.headers['outpost-chunk-index'] === '1') {
    refuseOnce = false;
    res.writeHead(503, { 'retry-after': '1', 'content-type': 'application/json', connection: 'close' });
    res.end('{"error":{"code":"OUTPOST_INGEST_OVERLOADED","message":"busy (simulated)"}}');
    return;
  }
  ingest(req, res);
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
console.log(`server: listening on ${url}, state in ${dataDir}`);

// ── The agent side ───────────────────────────────────────────────────────────
const audit = new AuditLogger({ agentId: 'demo-agent', tenantId, logFile: join(dataDir, 'audit', 'audit.log'), flushIntervalMs: 500 });
await audit.start();
audit.info('agent_start', 'demo agent starting', { url });

const resources = new ResourceController({ dataDir, sampleIntervalMs: 500, cooldownMs: 2_000 });
resources.on('throttled', (e) => {
  console.log(`agent:  throttled (${e.message})`);
  audit.resourceThrottle(e.reason, { message: e.message });
});
resources.on('resumed', () => audit.info('resource_resume', 'admission resumed'));
await resources.start();

const uploader = new HttpUploader({ url, token, uploadTimeoutMs: 10_000 });
const outbox = new ChunkManager({
  uploader,
  databasePath: join(dataDir, 'chunks.db'),
  uploadDelayMs: 0,
  retryPolicy: { retryDelayMs: 200, maxRetryDelayMs: 2_000 },
});
outbox.on('chunk-uploaded', (e) => audit.chunkUploaded(e.reportId, e.index, e.total, e.storedBytes));
outbox.on('chunk-retry', (e) => console.log(`agent:  chunk ${e.index + 1}/${e.total} of ${e.reportId} failed (${e.error.code} ${e.error.status ?? ''}); retry in ${e.delayMs} ms`));
outbox.on('chunk-dead', (e) => audit.error('chunk_failed', `gave up chunk ${e.index} of ${e.reportId}: ${e.reason}`));
outbox.on('report-completed', (e) => console.log(`agent:  ${e.reportId} acknowledged: ${e.totalChunks} chunk(s) in ${e.durationMs} ms`));
outbox.on('error', (err) => audit.error('agent_error', err.message, { code: err.code }));
await outbox.start(); // the outbox before the pipeline: a pipeline needs its outbox running

// The scan loop submits here and goes on at once; what the pipeline cannot send goes to the outbox.
const pipeline = new UploadPipeline({ uploader, outbox, tenantId, retryDelayMs: 200, maxRetryDelayMs: 2_000, uploadTimeoutMs: 30_000 });
pipeline.on('started', (item, attempt) => audit.log({ type: 'upload_started', message: `Upload of report ${item.id} started (attempt ${attempt})`, jobId: item.jobId, reportId: item.id, details: { attempt, bytes: item.bodyBytes } }));
pipeline.on('retry', (item, error, retry, delayMs) =>
  audit.log({ type: 'upload_retry', severity: 'WARN', message: `Upload of report ${item.id} failed; retry ${retry} in ${delayMs} ms`, jobId: item.jobId, reportId: item.id, details: { retry, delay_ms: delayMs, error } }),
);
pipeline.on('completed', (item, result) => {
  audit.log({ type: 'upload_completed', message: `Report ${item.id} uploaded`, jobId: item.jobId, reportId: item.id, durationMs: Date.now() - item.submittedAt, details: { status: result.status, duplicate: result.duplicate, attempts: item.attempts, bytes: item.bodyBytes } });
  console.log(`agent:  ${item.id} uploaded by the pipeline (${result.status}, ${item.bodyBytes} bytes, attempt ${item.attempts})`);
});
pipeline.on('failed', (item, error, reason) => audit.log({ type: 'upload_failed', severity: 'ERROR', message: `Report ${item.id} given up: ${reason}`, jobId: item.jobId, reportId: item.id, details: { reason, error } }));
pipeline.on('spilled', (item, reason, receipt) => {
  // From here the outbox owns it: its chunk events carry on under the same report id.
  audit.log({ type: 'chunk_created', severity: reason === 'large' ? 'INFO' : 'WARN', message: `Report ${item.id} handed to the outbox (${reason})`, jobId: item.jobId, reportId: item.id, details: { reason, chunks: receipt.totalChunks, stored_bytes: receipt.storedBytes } });
  console.log(`agent:  ${item.id} handed to the outbox (${reason}): ${receipt.chunked ? `${receipt.totalChunks} chunks` : 'whole'}, ${receipt.rawBytes} → ${receipt.storedBytes} bytes`);
});
pipeline.start();

const runId = Date.now().toString(36);

/** A fake scan: `findingCount` findings over files of `target`. */
function scan(target: string, findingCount: number) {
  const assets = Array.from({ length: Math.ceil(findingCount / 50) }, (_, i) => ({ id: `${target}-asset-${i}`, kind: 'file', path: `/srv/${target}/file-${i}.ts` }));
  const findings = Array.from({ length: findingCount }, (_, i) => ({
    id: `${target}-${i}`,
    rule: `RULE-${i % 17}`,
    severity: ['low', 'medium', 'high'][i % 3],
    assetId: assets[Math.floor(i / 50)]?.id,
    line: (i * 37) % 900,
  }));
  return { metadata: { tool: 'demo-scanner', target, startedAt: new Date().toISOString() }, findings, assets };
}

const jobs = [
  { target: 'web-frontend', findings: 40 },
  { target: 'payments-api', findings: 900 },
  { target: 'monorepo', findings: 6_000 },
];
await Promise.all(
  jobs.map(async ({ target, findings }) => {
    const jobId = `${target}-${runId}`;
    // Wait for a slot (FIFO), run the job with an enforced timeout, give the slot back however it ends.
    await resources.run(
      async (signal) => {
        const started = Date.now();
        audit.jobStarted(jobId, 'scan', { target });
        const report = scan(target, findings);
        signal.throwIfAborted();
        // Returns at once: no I/O, no serialisation here. The report must not change from now on.
        const reportId = pipeline.submit(report, { reportId: jobId, jobId });
        audit.jobCompleted(jobId, Date.now() - started, { report_id: reportId, findings });
        console.log(`agent:  ${jobId} submitted: ${findings} findings`);
      },
      { timeoutMs: 60_000 },
    );
  }),
);

// Every report settled in the pipeline (uploaded, or in the outbox), then the outbox drained.
await pipeline.flush({ signal: AbortSignal.timeout(30_000) });
await outbox.flush({ signal: AbortSignal.timeout(30_000) });
const status = resources.status();
console.log(`agent:  resources: ${status.activeJobs} active, ${status.maxJobs} max, throttled: ${status.throttled}, cpu from ${status.source?.cpu ?? 'unknown'}, memory from ${status.source?.memory ?? 'unknown'}`);
console.log('agent:  pipeline:', JSON.stringify(pipeline.stats()));
console.log('agent:  outbox:', JSON.stringify(outbox.stats().chunks));

// ── Shut down: everything closes, the process exits by itself ────────────────
audit.info('agent_stop', 'demo agent stopping');
await pipeline.close(); // first: whatever it still held would be spilled to the outbox, which must still be running
await outbox.close();
await uploader.close();
await resources.close();
await audit.close();
await new Promise<void>((resolve) => server.close(() => resolve()));
await ingest.close();
const auditDir = join(dataDir, 'audit');
const lines = readdirSync(auditDir)
  .filter((f) => f.endsWith('.log'))
  .flatMap((f) => readFileSync(join(auditDir, f), 'utf8').trim().split('\n'));
console.log(`audit:  ${lines.length} line(s) in ${auditDir}; the last: ${lines.at(-1)}`);
console.log('server:', ingest.stats());
