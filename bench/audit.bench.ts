/**
 * Audit benchmark (`npm run bench -- audit`).
 *
 * (a) Throughput, events/s: `AuditLogger.info()` with buffering (100 events)
 *     and rotation (every 8 MiB) on, against bare pino writing the same fields
 *     (severity, ISO timestamp, agent and tenant, schema version, type,
 *     details, event id, seq, message) to a file through `pino.destination()`
 *     in its two asynchronous setups (`{ sync: false }` and `{ sync: false,
 *     minLength: 4096 }`); the faster of the two in each round is the
 *     baseline. All run the same loop, which yields to the event loop every
 *     1000 events (as a daemon does, and so that rotation can happen), and
 *     are timed until their data is written. Rounds are interleaved; the
 *     ratio is the median of the per-round ratios.
 * (b) Latency of one `info()` call, in µs: p50, p99, p99.9 and max over
 *     timed single calls (a call that writes a batch of 100 lines is 1 in 100).
 *
 * The last line printed is one JSON object. Environment: BENCH_EVENTS (events
 * per run, default 200000), BENCH_ROUNDS (default 5).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldLoop } from 'node:timers/promises';
import { pino } from 'pino';
import { AuditLogger } from 'outpost-sdk/audit';
import { intEnv, log, median, round } from './stats.js';

const EVENTS = intEnv('BENCH_EVENTS', 200_000);
const ROUNDS = intEnv('BENCH_ROUNDS', 5);
const YIELD_EVERY = 1_000;
const SEVERITY: Record<string, string> = { debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR', fatal: 'CRITICAL' };
const TARGETS = ['/srv/app', '/srv/api', '/opt/worker', '/home/ci/build'];

type LogOne = (i: number) => void;

interface Subject {
  readonly log: LogOne;
  /** Resolves once everything logged is written. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

function details(i: number): Record<string, unknown> {
  return { target: TARGETS[i & 3], tool: 'semgrep', findings: i % 17, exit_code: 0 };
}

async function auditSubject(dir: string): Promise<Subject> {
  const logger = new AuditLogger({ agentId: 'agent-001', tenantId: 'tenant-123', logFile: join(dir, 'audit.log'), bufferSize: 100, flushIntervalMs: 5_000, maxSizeMB: 8, maxAgeDays: 30 });
  await logger.start();
  const job = logger.withContext({ jobId: 'job-42' });
  return {
    log: (i) => job.info('scan_completed', 'Scan completed', details(i)),
    drain: async () => {
      await logger.flush();
    },
    close: () => logger.close(),
  };
}

function pinoSubject(dir: string, minLength: number): Subject {
  const dest = pino.destination({ dest: join(dir, 'pino.log'), sync: false, minLength, mkdir: true });
  const logger = pino(
    {
      level: 'debug',
      base: { agent_id: 'agent-001', tenant_id: 'tenant-123', schema_version: 1 },
      messageKey: 'message',
      timestamp: () => `,"timestamp":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ severity: SEVERITY[label] ?? label }) },
    },
    dest,
  );
  const prefix = 'bench-run-prefix.';
  let seq = 0;
  return {
    log: (i) => {
      const s = ++seq;
      logger.info({ type: 'scan_completed', job_id: 'job-42', details: details(i), event_id: prefix + s, seq: s }, 'Scan completed');
    },
    drain: () => new Promise<void>((resolve, reject) => dest.flush((err) => (err ? reject(err) : resolve()))),
    close: () =>
      new Promise<void>((resolve) => {
        dest.once('close', () => resolve());
        dest.end();
      }),
  };
}

/** Logs `n` events through `subject` (yielding every 1000) and waits until they are written; returns the seconds it took. */
async function run(subject: Subject, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    subject.log(i);
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await yieldLoop();
  }
  await subject.drain();
  return (performance.now() - t0) / 1000;
}

async function latencies(subject: Subject, n: number): Promise<Float64Array> {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    subject.log(i);
    out[i] = (performance.now() - t0) * 1000;
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await yieldLoop();
  }
  await subject.drain();
  return out.sort();
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-audit-bench-'));
  log(`audit bench: ${EVENTS} events per run, ${ROUNDS} rounds, node ${process.version}, files in ${dir}`);
  const audit = await auditSubject(join(dir, 'audit'));
  const pinoAsync = pinoSubject(join(dir, 'pino-async'), 0);
  const pinoBuffered = pinoSubject(join(dir, 'pino-buffered'), 4096);
  try {
    for (let w = 0; w < 2; w++) {
      await run(audit, EVENTS / 4);
      await run(pinoAsync, EVENTS / 4);
      await run(pinoBuffered, EVENTS / 4);
    }
    const ratios: number[] = [];
    const auditRates: number[] = [];
    const pinoRates: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate who goes first, so that no one always meets a warmer page cache.
      const auditFirst = r % 2 === 0;
      const a1 = auditFirst ? await run(audit, EVENTS) : 0;
      const p0 = await run(pinoAsync, EVENTS);
      const p1 = await run(pinoBuffered, EVENTS);
      const a = auditFirst ? a1 : await run(audit, EVENTS);
      const p = Math.min(p0, p1);
      auditRates.push(EVENTS / a);
      pinoRates.push(EVENTS / p);
      ratios.push(p / a);
      log(`round ${r + 1}: AuditLogger ${fmt(EVENTS / a)} events/s; bare pino ${fmt(EVENTS / p0)} (sync: false), ${fmt(EVENTS / p1)} (minLength 4096) events/s; ratio ${(p / a).toFixed(3)}`);
    }
    const lat = await latencies(audit, EVENTS);
    const pinoLat = await latencies(pinoAsync, EVENTS);
    const figures = {
      bench: 'audit',
      ratio: round(median(ratios), 3),
      auditEventsPerSec: Math.round(median(auditRates)),
      pinoEventsPerSec: Math.round(median(pinoRates)),
      p50us: round(quantile(lat, 0.5), 2),
      p99us: round(quantile(lat, 0.99), 2),
      p999us: round(quantile(lat, 0.999), 2),
      maxUs: round(lat[lat.length - 1] ?? 0, 1),
      pinoP99us: round(quantile(pinoLat, 0.99), 2),
      eventsPerRun: EVENTS,
      rounds: ROUNDS,
      bufferSize: 100,
      maxSizeMB: 8,
    };
    console.log(JSON.stringify(figures));
  } finally {
    await audit.close();
    await pinoAsync.close();
    await pinoBuffered.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

function fmt(x: number): string {
  return Math.round(x).toLocaleString('en-US');
}

await main();
