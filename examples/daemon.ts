/**
 * `npm start`: a miniature scanner agent and its server in one process.
 *
 * - starts an ingest server on a loopback port, keeping its state in a local
 *   SQLite file (`.outpost/ingest.db`, 0600 in a 0700 directory);
 * - "scans" a few targets, and uploads each report: small ones whole, large
 *   ones in chunks, with the shared retry policy;
 * - makes the server refuse the first attempt of one chunk (503 +
 *   Retry-After) to show a retry, and sends one chunk twice to show dedupe;
 * - prints what the server reassembled, then shuts everything down.
 *
 * Everything runs on embedded defaults; no network beyond 127.0.0.1.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createIngestHandler, staticTokenAuthenticator } from '../src/ingest/index.js';
import { HttpUploader, RetryPolicy, encodeBody, type ChunkUpload } from '../src/transport/index.js';

const dataDir = process.env['OUTPOST_DATA_DIR'] ?? join(process.cwd(), '.outpost');
const token = 'example-agent-token';

// ── The server side ──────────────────────────────────────────────────────────
const ingest = createIngestHandler({
  store: join(dataDir, 'ingest.db'),
  authenticate: staticTokenAuthenticator({ [token]: 'tenant-demo' }),
  onReport: (report, info) => {
    const findings = (report['findings'] as unknown[]).length;
    const assets = (report['assets'] as unknown[]).length;
    console.log(`server: report ${info.reportId} complete — ${info.totalChunks} chunk(s), ${findings} findings, ${assets} assets, ${info.rawBytes} bytes`);
  },
});
ingest.on('rejected', (e) => console.log(`server: refused ${e.path} with ${e.status} ${e.code}`));
ingest.on('error', (err) => console.error('server error:', err));

let refuseOnce = true;
const server = createServer((req, res) => {
  // Simulate an overloaded server once, to show the retry policy honouring Retry-After.
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
const uploader = new HttpUploader({ url, token, uploadTimeoutMs: 10_000 });
const policy = new RetryPolicy({ retryDelayMs: 200, maxRetryDelayMs: 2_000 });
const runId = Date.now().toString(36);

function scan(target: string, findingCount: number) {
  const assets = Array.from({ length: Math.ceil(findingCount / 50) }, (_, i) => ({ id: `${target}-asset-${i}`, kind: 'file', path: `/srv/${target}/file-${i}.ts` }));
  const findings = Array.from({ length: findingCount }, (_, i) => ({
    id: `${target}-${i}`,
    rule: `RULE-${i % 17}`,
    severity: ['low', 'medium', 'high'][i % 3],
    asset: assets[Math.floor(i / 50)]?.id,
    line: (i * 37) % 900,
  }));
  return { metadata: { tool: 'demo-scanner', target, startedAt: new Date().toISOString() }, findings, assets };
}

async function send<T>(what: string, attempt: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
  return policy.retry(attempt, {
    maxRetries: 5,
    onRetry: (err, n, delayMs) => console.log(`agent:  ${what} failed (${err.code}${err.status ? ` ${err.status}` : ''}); retry ${n} in ${delayMs} ms`),
  });
}

// A small report goes whole.
const small = scan('web-frontend', 40);
const smallBody = await encodeBody(small);
const smallId = `web-frontend-${runId}`;
const r1 = await send('report', (signal) => uploader.uploadReport({ reportId: smallId, ...smallBody }, { signal }));
console.log(`agent:  sent ${smallId} whole (${smallBody.rawBytes} → ${smallBody.body.length} bytes): ${r1.status}`);

// A large report goes in chunks, each carrying the assets its findings reference; metadata rides in chunk 0.
const large = scan('monorepo', 3_000);
const perChunk = 1_000;
const total = Math.ceil(large.findings.length / perChunk);
const largeId = `monorepo-${runId}`;
const chunks: ChunkUpload[] = [];
for (let index = 0; index < total; index++) {
  const findings = large.findings.slice(index * perChunk, (index + 1) * perChunk);
  const used = new Set(findings.map((f) => f.asset));
  const part = { ...(index === 0 ? { metadata: large.metadata } : {}), findings, assets: large.assets.filter((a) => used.has(a.id)) };
  chunks.push({ reportId: largeId, index, total, ...(await encodeBody(part)) });
}
for (const chunk of chunks.slice().reverse()) {
  const r = await send(`chunk ${chunk.index + 1}/${total}`, (signal) => uploader.uploadChunk(chunk, { signal }));
  console.log(`agent:  chunk ${chunk.index + 1}/${total} of ${largeId} (${chunk.rawBytes} → ${chunk.body.length} bytes): ${r.status}, server has ${r.receivedChunks}/${r.totalChunks}`);
}
const again = await uploader.uploadChunk(chunks[0] as ChunkUpload);
console.log(`agent:  chunk 1/${total} sent again: ${again.status} (duplicate: ${again.duplicate})`);
console.log('agent: ', await uploader.getReportStatus(largeId));

// ── Shut down: everything closes, the process exits by itself ────────────────
await uploader.close();
await new Promise<void>((resolve) => server.close(() => resolve()));
await ingest.close();
console.log('server:', ingest.stats());
