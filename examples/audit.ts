/**
 * `node --import tsx examples/audit.ts`: the audit trail, end to end, in one process.
 *
 * - starts a collector on a loopback port that fails its first request (503)
 *   to show a retry, then accepts batches of JSON lines;
 * - opens an `AuditLogger` on `.outpost/audit/audit.log` (files named
 *   `audit.<date>.<n>.log`, 0600 in a 0700 directory), small files so it rotates;
 * - logs an agent start, a job with a context logger, a failure (written at
 *   once), chunk uploads and a throttle — with a secret in the details that is redacted;
 * - installs the shutdown handlers (Ctrl-C while it runs loses nothing);
 * - flushes, waits for shipping, prints `stats()` and the last lines, closes,
 *   and exits on its own.
 *
 * No network beyond 127.0.0.1.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { AuditLogger } from '../src/audit/index.js';

const dataDir = process.env['OUTPOST_DATA_DIR'] ?? join(process.cwd(), '.outpost');

// ── A collector ───────────────────────────────────────────────────────────────
let requests = 0;
let received = 0;
const collector = createServer((req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (p: Buffer) => parts.push(p));
  req.on('end', () => {
    if (++requests === 1) {
      res.writeHead(503, { 'retry-after': '1' }).end(); // busy once: the logger retries after Retry-After
      return;
    }
    const lines = Buffer.concat(parts).toString('utf8').split('\n').filter(Boolean);
    received += lines.length;
    console.log(`collector: batch of ${lines.length} line(s) (${req.headers['content-type']})`);
    res.writeHead(204).end();
  });
});
await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${(collector.address() as AddressInfo).port}/v1/audit`;

// ── The agent ─────────────────────────────────────────────────────────────────
const audit = new AuditLogger({
  agentId: 'agent-001',
  tenantId: 'tenant-demo',
  logFile: join(dataDir, 'audit', 'audit.log'),
  maxSizeMB: 0.01, // 10 KiB, to see a rotation
  bufferSize: 20,
  flushIntervalMs: 1_000,
  remoteEndpoint: url,
  remoteHeaders: { authorization: 'Bearer example-token' },
  remoteRetryPolicy: { retryDelayMs: 200, maxRetryDelayMs: 2_000 },
  verbose: process.argv.includes('--verbose'),
});
audit.on('rotated', (e) => console.log(`audit: rotated to ${e.to}`));
audit.on('ship-retry', (e) => console.log(`audit: shipping retry ${e.retry} in ${e.delayMs} ms (${e.error.code}, status ${e.error.status ?? '-'})`));
audit.on('write-failed', (e) => console.error(`audit: ${e.error.code}`, e.error.cause));
await audit.start();
audit.installShutdownHandlers();
console.log(`audit: writing ${audit.currentFile}`);

audit.info('agent_start', 'Agent started', { version: '1.2.0', pid: process.pid });
const job = audit.withContext({ jobId: 'job-42' });
job.jobStarted('job-42', 'scan', { target: '/srv/app', tool: 'semgrep', apiKey: 'sk-do-not-log' });
for (let i = 0; i < 120; i++) {
  job.withContext({ reportId: 'report-7' }).chunkUploaded('report-7', i, 120, 2_048 + i);
  if (i % 20 === 19) await new Promise((r) => setImmediate(r));
}
audit.resourceThrottle('CPU 91% >= 85%', { cpu: 0.91, memory: 0.42 });
job.jobFailed('job-42', Object.assign(new Error('semgrep exited with 2'), { code: 'E_TOOL' }), { exit_code: 2 });
job.jobCompleted('job-43', 1_520, { findings: 3 });
audit.info('agent_stop', 'Agent stopping');

await audit.flush({ remote: true });
const stats = audit.stats();
console.log('audit: stats', stats);
const last = readFileSync(audit.currentFile as string, 'utf8').trim().split('\n').slice(-3);
console.log('audit: last lines of the current file:');
for (const line of last) console.log(`  ${line}`);
await audit.close();
await new Promise<void>((resolve) => collector.close(() => resolve()));
console.log(`collector: ${received} line(s) received; the local files are the source of truth`);
