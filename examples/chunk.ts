/**
 * `node --import tsx examples/chunk.ts`: the durable outbox, end to end, in one process.
 *
 * - starts an ingest server on a loopback port (its state in `.outpost/chunk-ingest.db`);
 * - opens a `ChunkManager` on `.outpost/chunks.db` (0600 in a 0700 directory);
 * - submits a small report (sent whole), a large one (5 000 findings, sent in
 *   chunks) and a streamed one (findings generated one by one, never all in memory);
 * - makes the server refuse one chunk once (503 + Retry-After) to show a retry;
 * - logs the outbox's events, waits for `flush()`, prints `stats()`, closes
 *   everything, and exits on its own.
 *
 * No network beyond 127.0.0.1. Run it twice: each run uses new report ids.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ChunkManager, type Report, type StreamItem } from '../src/chunk/index.js';
import { createIngestHandler, staticTokenAuthenticator } from '../src/ingest/index.js';
import { HttpUploader } from '../src/transport/index.js';

const dataDir = process.env['OUTPOST_DATA_DIR'] ?? join(process.cwd(), '.outpost');
const token = 'example-agent-token';
const runId = Date.now().toString(36);

// ── The server side ──────────────────────────────────────────────────────────
let expected = 3;
let allDelivered!: () => void;
const delivered = new Promise<void>((resolve) => (allDelivered = resolve));
const ingest = createIngestHandler({
  store: join(dataDir, 'chunk-ingest.db'),
  authenticate: staticTokenAuthenticator({ [token]: 'tenant-demo' }),
  onReport: (report, info) => {
    const findings = (report['findings'] as unknown[]).length;
    const assets = (report['assets'] as unknown[]).length;
    console.log(`server: ${info.reportId} complete — ${info.totalChunks} chunk(s), ${findings} findings, ${assets} assets, ${info.rawBytes} bytes`);
    if (--expected === 0) allDelivered();
  },
});
ingest.on('error', (err) => console.error('server error:', err));

let refuseOnce = true;
const server = createServer((req, res) => {
  // Simulate an overloaded server once: the outbox waits for Retry-After, then sends the same bytes again.
  if (refuseOnce && req.headers['outpost-chunk-index'] === '2') {
    refuseOnce = false;
    res.writeHead(503, { 'retry-after': '1', 'content-type': 'application/json', connection: 'close' });
    res.end('{"error":{"code":"OUTPOST_INGEST_OVERLOADED","message":"busy (simulated)"}}');
    return;
  }
  ingest(req, res);
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
console.log(`server: listening on ${url}`);

// ── The agent side ───────────────────────────────────────────────────────────
const uploader = new HttpUploader({ url, token, uploadTimeoutMs: 10_000 });
const outbox = new ChunkManager({
  uploader,
  databasePath: join(dataDir, 'chunks.db'),
  uploadDelayMs: 10, // the default (100 ms) paces a daemon; keep the demo quick
  retryPolicy: { retryDelayMs: 500, maxRetryDelayMs: 5_000 },
});

let uploaded = 0;
outbox.on('chunk-retry', (e) => console.log(`outbox: ${e.reportId} chunk ${e.index + 1}/${e.total} failed (${e.error.code} ${e.error.status ?? ''}); retry ${e.attempt} in ${e.delayMs} ms (${e.phase})`));
outbox.on('chunk-uploaded', (e) => {
  uploaded++;
  if (e.attempts > 1) console.log(`outbox: ${e.reportId} chunk ${e.index + 1}/${e.total} acknowledged after ${e.attempts} attempts (${e.status})`);
});
outbox.on('report-completed', (e) => console.log(`outbox: ${e.reportId} completed — ${e.totalChunks} chunk(s), ${e.rawBytes} bytes, in ${e.durationMs} ms`));
outbox.on('chunk-dead', (e) => console.error(`outbox: gave up ${e.reportId} chunk ${e.index + 1}/${e.total}: ${e.reason}`, e.error?.code ?? ''));
outbox.on('cleanup', (e) => {
  if (e.trigger !== 'upload') console.log(`outbox: cleanup (${e.trigger}) ${e.onDiskBytesBefore} → ${e.onDiskBytesAfter} bytes on disk`, e.layers);
});
outbox.on('storage-full', (e) => console.error('outbox: storage full', e));
outbox.on('error', (err) => console.error('outbox error:', err));
await outbox.start();
console.log(`outbox: open on ${outbox.options.databasePath}`, outbox.stats().chunks);

function scan(target: string, findingCount: number, assetCount: number): Report {
  const assets = Array.from({ length: assetCount }, (_, i) => ({ id: `${target}-host-${i}`, kind: 'host', name: `host-${i}.${target}.internal` }));
  const findings = Array.from({ length: findingCount }, (_, i) => ({
    id: `${target}-${i}`,
    rule: `RULE-${i % 17}`,
    severity: ['low', 'medium', 'high'][i % 3],
    assetId: `${target}-host-${Math.floor(i / 20) % assetCount}`, // read by the default `findingAssetIds`
    detail: `Finding ${i} on ${target}: configuration drift in /etc/service-${i % 40}.conf`,
  }));
  return { metadata: { tool: 'demo-scanner', target, startedAt: new Date().toISOString() }, findings, assets };
}

// A small report is stored as one chunk and sent whole (POST /v1/reports).
const small = scan('web-frontend', 40, 4);
const r1 = await outbox.submitReport(small, { tenantId: 'tenant-demo', reportId: `web-frontend-${runId}` });
console.log('agent:  stored', r1);

// A large one is split: each chunk carries the assets its findings refer to; metadata rides in chunk 0.
const large = scan('datacenter', 5_000, 300);
console.log(`agent:  needsChunking(5 000 findings) = ${outbox.needsChunking(large)}`);
const r2 = await outbox.submitReport(large, { tenantId: 'tenant-demo', reportId: `datacenter-${runId}`, priority: 1 });
console.log('agent:  stored', r2);

// A streamed report: items come one at a time, chunks are written as they fill,
// and the report becomes visible to the uploader only when the stream ends.
async function* crawl(): AsyncGenerator<StreamItem> {
  for (let h = 0; h < 100; h++) yield { asset: { id: `fleet-host-${h}`, kind: 'host' } }; // assets before the findings that refer to them
  for (let i = 0; i < 20_000; i++) yield { finding: { id: `fleet-${i}`, rule: `RULE-${i % 11}`, assetId: `fleet-host-${i % 100}` } };
}
const r3 = await outbox.submitReportStream({ tenantId: 'tenant-demo', reportId: `fleet-${runId}`, metadata: { tool: 'demo-crawler' } }, crawl());
console.log('agent:  stored', r3);

// Everything above is durable now: a crash from here on would resume the uploads at the next start().
await outbox.flush({ signal: AbortSignal.timeout(60_000) });
await delivered;
console.log(`agent:  flushed, ${uploaded} chunk(s) acknowledged`);
console.log('agent: ', outbox.stats());
console.log('agent:  getReport after completion:', outbox.getReport('tenant-demo', r2.reportId)); // rows deleted (cleanupOnReportComplete)

// ── Shut down: the outbox before its uploader; the process exits by itself ──
await outbox.close();
await uploader.close();
await new Promise<void>((resolve) => server.close(() => resolve()));
await ingest.close();
console.log('server:', ingest.stats());
