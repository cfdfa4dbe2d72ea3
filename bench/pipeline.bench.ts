/**
 * Upload pipeline benchmark (`npm run bench -- pipeline`). It measures the
 * built package (`dist/`, what users run), not the TypeScript sources.
 *
 * (a) `submit()` latency: each call timed on its own (`process.hrtime.bigint()`)
 *     into a pipeline that is not started and already holds 1000 reports,
 *     against the floor of a bare p-queue `add()` of a no-op into a paused
 *     PQueue that already holds 1000 tasks. Batches of 1000 calls, each into a
 *     fresh pipeline / queue prefilled with 1000 (so "1000 queued" stays true),
 *     alternating which goes first. Also the mean per call of batches timed as
 *     a whole, free of the per-call timer's own cost.
 * (b) Throughput: reports (50 findings, 10 assets, ~20 KB of JSON) through
 *     `UploadPipeline` (`workers` 3, an `HttpUploader` with as many
 *     connections) to a loopback server, from `submit()` of the first to the
 *     `completed` of the last (`onIdle()`); against raw undici `Pool#request`
 *     with the same connections, the same headers, `workers` requests in
 *     flight and the same bodies, each sender encoding its report with
 *     `encodeWholeReport` right before its request — the same work per report
 *     (serialise, hash, compress, send), so `ratio` is what the pipeline's
 *     machinery costs. Interleaved rounds, medians.
 *     Two more figures in the same rounds: raw undici sending bodies encoded
 *     before the clock starts (`raw_reports_s`, `ratio_vs_preencoded`): a
 *     ceiling no client that serialises reports can reach, since
 *     `JSON.stringify` of a report alone costs about as much as a raw request;
 *     and `encodeWholeReport` alone, 4 in flight as the pipeline's encoder
 *     runs (`encode_only_reports_s`).
 * (c) Event-loop delay (`monitorEventLoopDelay`, 1 ms resolution: the figures
 *     include the 1 ms timer interval) while 10 000 reports are submitted, 100
 *     per macrotask as a scan loop would, and flow to completion; the same for
 *     the raw undici client sending the pre-encoded bodies, as a reference.
 *
 * The server (`bench/pipeline-server.ts`) runs in a worker thread so that it
 * does not share the client's event loop. By default it is a bare node:http
 * sink that reads the body and answers 201 `{"status":"stored"}`: the server
 * then costs as little as it can, so what the ratio shows is the client's
 * cost (the stricter test). BENCH_SERVER=ingest uses the real ingest handler
 * (`bench/chunk-server.ts`, SQLite `:memory:`) instead; its own cost (and
 * CPU taken from the client on a small machine) then dilutes the ratio.
 *
 * The last line printed is one JSON object with the figures.
 *
 * Environment: BENCH_ROUNDS (interleaved throughput rounds, default 3),
 * BENCH_REPORTS (reports per throughput run, default 4000), BENCH_WORKERS
 * (default 3), BENCH_SUBMIT_CALLS (timed submit() calls, default 20000),
 * BENCH_FLOW_REPORTS (default 10000), BENCH_SERVER (`sink` or `ingest`), BENCH_ONLY
 * (e.g. `flow`: run only these of submit, throughput, flow — for profiling;
 * skipped figures are null).
 */
import { readFileSync } from 'node:fs';
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setImmediate as yieldLoop, setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import { Pool } from 'undici';
import { encodeWholeReport, type Report, type WholeReportBody } from 'outpost-sdk/chunk';
import { UploadPipeline } from 'outpost-sdk/pipeline';
import { HttpUploader, type Uploader } from 'outpost-sdk/transport';
import { makeReport } from './chunk-data.js';
import { TENANT, TOKEN, startServer, type ServerKind } from './pipeline-server.js';
import { at, intEnv, log, mean, median, opt, round, roundOrNull, timed } from './stats.js';

const SERVER_KIND = process.env['BENCH_SERVER'] ?? 'sink';
if (SERVER_KIND !== 'sink' && SERVER_KIND !== 'ingest') throw new Error('BENCH_SERVER must be `sink` or `ingest`');
const USER_AGENT = `outpost-sdk/${(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version}`;
const WORKERS = intEnv('BENCH_WORKERS', 3);
const ROUNDS = intEnv('BENCH_ROUNDS', 3);
const REPORTS = intEnv('BENCH_REPORTS', 4000);
const SUBMIT_CALLS = intEnv('BENCH_SUBMIT_CALLS', 20_000);
const FLOW_REPORTS = intEnv('BENCH_FLOW_REPORTS', 10_000);
const PARTS = ['submit', 'throughput', 'flow'] as const;
const ONLY = (process.env['BENCH_ONLY'] ?? PARTS.join(',')).split(',').map((p) => p.trim());
if (ONLY.some((p) => !(PARTS as readonly string[]).includes(p))) throw new Error(`BENCH_ONLY takes a comma-separated list of ${PARTS.join(', ')}`);
const runs = (part: (typeof PARTS)[number]): boolean => ONLY.includes(part);
const PREFILL = 1000; // reports already queued when submit() is timed
const BATCH = 1000; // timed calls per fresh pipeline / queue
const FLOW_BATCH = 100; // submissions per macrotask in (c)
const DISTINCT = 64; // distinct report objects (and bodies), reused round-robin
const FINDINGS = 50;
const ASSETS = 10;

// ---------------------------------------------------------------------------
// (a) submit() latency

/** An uploader that never answers (the pipeline in (a) is never started, so it is never asked). */
const parked: Uploader = {
  uploadChunk: () => new Promise(() => {}),
  uploadReport: () => new Promise(() => {}),
};
const noop = (): void => {};

interface Latency {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly bulkMean: number;
}

async function benchSubmit(report: Report): Promise<{ ours: Latency; floor: Latency; timerNs: number }> {
  const batches = Math.ceil(SUBMIT_CALLS / BATCH);
  const ours = new Float64Array(batches * BATCH);
  const floor = new Float64Array(batches * BATCH);
  const oursBulk: number[] = [];
  const floorBulk: number[] = [];

  const newPipeline = (): UploadPipeline => {
    const p = new UploadPipeline({ uploader: parked, tenantId: TENANT, queueSize: PREFILL + BATCH + 1 });
    for (let i = 0; i < PREFILL; i++) p.submit(report);
    return p;
  };
  const newQueue = (): PQueue => {
    const q = new PQueue({ concurrency: WORKERS, autoStart: false });
    for (let i = 0; i < PREFILL; i++) void q.add(noop);
    return q;
  };
  // One batch timed call by call into `out` (from `offset`), or, without `out`, as a whole: ns per call.
  const pipelineBatch = async (out: Float64Array | undefined, offset: number): Promise<number> => {
    const p = newPipeline();
    let ns = 0;
    if (out !== undefined) {
      for (let i = 0; i < BATCH; i++) {
        const t0 = process.hrtime.bigint();
        p.submit(report);
        out[offset + i] = Number(process.hrtime.bigint() - t0);
      }
    } else {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < BATCH; i++) p.submit(report);
      ns = Number(process.hrtime.bigint() - t0) / BATCH;
    }
    if (p.stats().queued !== PREFILL + BATCH) throw new Error(`expected ${PREFILL + BATCH} queued, got ${p.stats().queued}`);
    await p.close(); // not started, no outbox: every report fails with reason 'stopped'
    return ns;
  };
  const queueBatch = async (out: Float64Array | undefined, offset: number): Promise<number> => {
    const q = newQueue();
    let ns = 0;
    if (out !== undefined) {
      for (let i = 0; i < BATCH; i++) {
        const t0 = process.hrtime.bigint();
        void q.add(noop);
        out[offset + i] = Number(process.hrtime.bigint() - t0);
      }
    } else {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < BATCH; i++) void q.add(noop);
      ns = Number(process.hrtime.bigint() - t0) / BATCH;
    }
    if (q.size !== PREFILL + BATCH) throw new Error(`expected ${PREFILL + BATCH} queued, got ${q.size}`);
    q.clear();
    await yieldLoop();
    return ns;
  };

  // Warm-up (JIT), then measured batches, alternating which goes first.
  for (let w = 0; w < 5; w++) {
    await pipelineBatch(undefined, 0);
    await queueBatch(undefined, 0);
    await pipelineBatch(ours, 0);
    await queueBatch(floor, 0);
  }
  for (let b = 0; b < batches; b++) {
    const order = b % 2 === 0 ? [0, 1] : [1, 0];
    for (const which of order) {
      if (which === 0) {
        await pipelineBatch(ours, b * BATCH);
        oursBulk.push(await pipelineBatch(undefined, 0));
      } else {
        await queueBatch(floor, b * BATCH);
        floorBulk.push(await queueBatch(undefined, 0));
      }
    }
  }
  // What a timed empty interval costs (it is in every sample above).
  const empty = new Float64Array(BATCH * 10);
  for (let i = 0; i < empty.length; i++) {
    const t0 = process.hrtime.bigint();
    empty[i] = Number(process.hrtime.bigint() - t0);
  }
  const summary = (xs: Float64Array, bulk: number[]): Latency => {
    xs.sort();
    return { p50: pct(xs, 50) / 1000, p99: pct(xs, 99) / 1000, max: (xs[xs.length - 1] ?? 0) / 1000, bulkMean: median(bulk) / 1000 };
  };
  empty.sort();
  return { ours: summary(ours, oursBulk), floor: summary(floor, floorBulk), timerNs: pct(empty, 50) };
}

// ---------------------------------------------------------------------------
// (b) Throughput and (c) event-loop delay

/** Sends `body` as `HttpUploader.uploadReport` would, with raw undici. */
function rawSender(pool: Pool, url: string): (reportId: string, body: WholeReportBody, reprDigest: string) => Promise<void> {
  return async (reportId, body, reprDigest) => {
    const res = await pool.request({
      origin: url,
      path: '/v1/reports',
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'content-encoding': body.encoding,
        'repr-digest': reprDigest,
        'outpost-report-id': reportId,
        'idempotency-key': `${reportId}:${body.sha256}`,
        'user-agent': USER_AGENT,
        accept: 'application/json',
        authorization: `Bearer ${TOKEN}`,
      },
      body: body.body,
    });
    await res.body.json();
    if (res.statusCode !== 201 && res.statusCode !== 200) throw new Error(`raw: status ${res.statusCode}`);
  };
}

interface Clients {
  /** Seconds to send `n` reports through the pipeline (ids `<prefix>-<i>`), submitting `perTurn` per macrotask (all at once without). */
  pipeline(prefix: string, n: number, perTurn?: number): Promise<number>;
  /** Seconds to send `n` pre-encoded bodies with raw undici, `WORKERS` in flight. */
  raw(prefix: string, n: number): Promise<number>;
  /** Reference: the same, but each of the `WORKERS` senders encodes its report (`encodeWholeReport`) before sending it. */
  encodeThenRaw(prefix: string, n: number): Promise<number>;
  close(): Promise<void>;
}

function clients(url: string, reports: readonly Report[], bodies: readonly WholeReportBody[]): Clients {
  const uploader = new HttpUploader({ url, token: TOKEN, connections: WORKERS, keepAliveTimeoutMs: 60_000 });
  const pipeline = new UploadPipeline({
    uploader,
    tenantId: TENANT,
    workers: WORKERS,
    queueSize: Math.max(REPORTS, FLOW_REPORTS), // every report of a run is submitted up front: no QueueFullError
    maxQueueBytes: 1024 * 1024 * 1024,
  }).start();
  let completed = 0;
  let failed = 0;
  let firstFailure: Error | undefined;
  pipeline.on('completed', (_item, result) => {
    if (result.status === 201 || result.status === 200) completed++;
  });
  pipeline.on('failed', (_item, error) => {
    failed++;
    firstFailure ??= error;
  });
  const pool = new Pool(url, { connections: WORKERS, pipelining: 1, keepAliveTimeout: 60_000 });
  const send = rawSender(pool, url);
  const digests = bodies.map((b) => `sha-256=:${Buffer.from(b.sha256, 'hex').toString('base64')}:`);

  return {
    async pipeline(prefix, n, perTurn = n) {
      const before = completed;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        pipeline.submit(at(reports, i % reports.length), { reportId: `${prefix}-${i}` });
        if ((i + 1) % perTurn === 0 && i + 1 < n) await yieldLoop();
      }
      await pipeline.onIdle();
      const s = (performance.now() - t0) / 1000;
      if (failed > 0) throw new Error(`pipeline: ${failed} reports failed; first: ${firstFailure?.message}`);
      if (completed - before !== n) throw new Error(`pipeline: ${completed - before} of ${n} reports completed`);
      return s;
    },
    raw(prefix, n) {
      return timed(n, WORKERS, (i) => send(`${prefix}-${i}`, at(bodies, i % bodies.length), at(digests, i % bodies.length)));
    },
    encodeThenRaw(prefix, n) {
      return timed(n, WORKERS, async (i) => {
        const body = await encodeWholeReport(at(reports, i % reports.length));
        await send(`${prefix}-${i}`, body, `sha-256=:${Buffer.from(body.sha256, 'hex').toString('base64')}:`);
      });
    },
    async close() {
      await pipeline.close();
      await uploader.close();
      await pool.close();
    },
  };
}

interface Throughput {
  readonly pipelineReportsPerSec: number;
  readonly rawReportsPerSec: number;
  readonly pairedRatio: number;
  /** Reference: raw undici with each sender encoding its report first. */
  readonly encodeRawReportsPerSec: number;
  /** Reference: `encodeWholeReport` alone, {@link ENCODE_AHEAD} in flight (what any main-thread encoder is bounded by). */
  readonly encodeOnlyReportsPerSec: number;
}

/** Reports the pipeline's encoder encodes at once (`ENCODE_AHEAD` in src/pipeline/encoder.ts). */
const ENCODE_AHEAD = 4;

async function benchThroughput(c: Clients, reports: readonly Report[]): Promise<Throughput> {
  const encodeOnly = (n: number): Promise<number> => timed(n, ENCODE_AHEAD, async (i) => void (await encodeWholeReport(at(reports, i % reports.length))));
  // Warm-up: JIT, connections, the thread pool.
  for (let pass = 1; pass <= 2; pass++) {
    const w = Math.min(REPORTS, 1000);
    const sp = await c.pipeline(`warm${pass}`, w);
    const sr = await c.raw(`warmraw${pass}`, w);
    const se = await c.encodeThenRaw(`warmenc${pass}`, w);
    await encodeOnly(w);
    log(`warm-up ${pass}: ${w} reports each, pipeline ${(w / sp).toFixed(0)} reports/s, raw ${(w / sr).toFixed(0)} reports/s, encode+raw ${(w / se).toFixed(0)} reports/s`);
  }
  const runs = { pipeline: [] as number[], raw: [] as number[], encodeRaw: [] as number[], encodeOnly: [] as number[] };
  type Run = keyof typeof runs;
  const label: Record<Run, string> = { pipeline: 'pipeline', raw: 'raw undici', encodeRaw: 'encode+raw', encodeOnly: 'encode only' };
  for (let r = 0; r < ROUNDS; r++) {
    const order: Run[] = r % 2 === 0 ? ['pipeline', 'raw', 'encodeRaw', 'encodeOnly'] : ['encodeOnly', 'encodeRaw', 'raw', 'pipeline'];
    for (const which of order) {
      const s =
        which === 'pipeline'
          ? await c.pipeline(`run${r}`, REPORTS)
          : which === 'raw'
            ? await c.raw(`runraw${r}`, REPORTS)
            : which === 'encodeRaw'
              ? await c.encodeThenRaw(`runenc${r}`, REPORTS)
              : await encodeOnly(REPORTS);
      runs[which].push(REPORTS / s);
      log(`round ${r + 1} ${label[which].padEnd(11)} ${REPORTS} reports in ${s.toFixed(2)} s: ${(REPORTS / s).toFixed(0)} reports/s`);
    }
  }
  const t: Throughput = {
    pipelineReportsPerSec: median(runs.pipeline),
    rawReportsPerSec: median(runs.raw),
    pairedRatio: median(runs.pipeline.map((x, r) => x / at(runs.encodeRaw, r))),
    encodeRawReportsPerSec: median(runs.encodeRaw),
    encodeOnlyReportsPerSec: median(runs.encodeOnly),
  };
  log(
    `throughput: pipeline ${t.pipelineReportsPerSec.toFixed(0)} reports/s, raw undici ${t.rawReportsPerSec.toFixed(0)} reports/s, ` +
      `ratio to raw sending pre-encoded bodies ${(t.pipelineReportsPerSec / t.rawReportsPerSec).toFixed(3)}`,
  );
  log(
    `raw undici encoding each report first ${t.encodeRawReportsPerSec.toFixed(0)} reports/s: ratio ${(t.pipelineReportsPerSec / t.encodeRawReportsPerSec).toFixed(3)} (goal ≥ 0.8; median of same-round ratios ${t.pairedRatio.toFixed(3)}); ` +
      `encodeWholeReport alone, ${ENCODE_AHEAD} in flight, ${t.encodeOnlyReportsPerSec.toFixed(0)} reports/s (${(1e6 / t.encodeOnlyReportsPerSec).toFixed(0)} µs each)`,
  );
  return t;
}

interface LoopDelay {
  readonly seconds: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Longest GC pause meanwhile, to tell a collector pause from other blocking. */
  readonly gcMaxMs: number;
}

async function withLoopDelay(run: () => Promise<number>): Promise<LoopDelay> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  let gcMaxMs = 0;
  const gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMaxMs = Math.max(gcMaxMs, e.duration);
  });
  gc.observe({ entryTypes: ['gc'] });
  h.enable();
  await sleep(20); // the histogram records from its second tick on: let it start before the work does
  const seconds = await run();
  h.disable();
  gc.disconnect();
  return { seconds, p50Ms: h.percentile(50) / 1e6, p99Ms: h.percentile(99) / 1e6, maxMs: h.max / 1e6, gcMaxMs };
}

async function benchFlow(c: Clients): Promise<{ pipeline: LoopDelay; raw: LoopDelay; idle: LoopDelay }> {
  const idle = await withLoopDelay(async () => {
    await sleep(300);
    return 0.3;
  });
  const pipeline = await withLoopDelay(() => c.pipeline('flow', FLOW_REPORTS, FLOW_BATCH));
  log(
    `flow: ${FLOW_REPORTS} reports through the pipeline (${FLOW_BATCH} submitted per macrotask) in ${pipeline.seconds.toFixed(2)} s; ` +
      `loop delay p50 ${pipeline.p50Ms.toFixed(2)} ms, p99 ${pipeline.p99Ms.toFixed(2)} ms, max ${pipeline.maxMs.toFixed(2)} ms (1 ms resolution, included); longest GC pause ${pipeline.gcMaxMs.toFixed(1)} ms`,
  );
  const raw = await withLoopDelay(() => c.raw('flowraw', FLOW_REPORTS));
  log(
    `flow reference: raw undici, pre-encoded, ${FLOW_REPORTS} reports in ${raw.seconds.toFixed(2)} s; loop delay p99 ${raw.p99Ms.toFixed(2)} ms, ` +
      `max ${raw.maxMs.toFixed(2)} ms, longest GC pause ${raw.gcMaxMs.toFixed(1)} ms; idle loop p99 ${idle.p99Ms.toFixed(2)} ms`,
  );
  return { pipeline, raw, idle };
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = performance.now();
  log(`pipeline bench: workers ${WORKERS}, ${ROUNDS} rounds of ${REPORTS} reports, ${SERVER_KIND} server, node ${process.version}`);
  const reports: Report[] = Array.from({ length: DISTINCT }, (_, k) => makeReport(k + 1, FINDINGS, ASSETS));
  const bodies = await Promise.all(reports.map((r) => encodeWholeReport(r)));
  const raw = mean(bodies.map((b) => b.rawBytes));
  const wire = mean(bodies.map((b) => b.body.byteLength));
  log(`reports: ${DISTINCT} distinct, ${FINDINGS} findings + ${ASSETS} assets, ${(raw / 1024).toFixed(1)} KB of JSON, ${(wire / 1024).toFixed(1)} KB zstd-3`);

  const submit = runs('submit') ? await benchSubmit(at(reports, 0)) : undefined;
  const ratioSubmit = submit === undefined ? undefined : submit.floor.p50 / submit.ours.p50;
  if (submit !== undefined) {
    log(
      `submit() with ${PREFILL} queued: p50 ${submit.ours.p50.toFixed(3)} µs, p99 ${submit.ours.p99.toFixed(3)} µs, max ${submit.ours.max.toFixed(1)} µs, ` +
        `mean ${submit.ours.bulkMean.toFixed(3)} µs untimed; p-queue add() floor: p50 ${submit.floor.p50.toFixed(3)} µs, p99 ${submit.floor.p99.toFixed(3)} µs, ` +
        `mean ${submit.floor.bulkMean.toFixed(3)} µs untimed; ratio ${opt(ratioSubmit, 3)} (timer pair ${submit.timerNs.toFixed(0)} ns, included)`,
    );
  }

  let throughput: Throughput | undefined;
  let flow: Awaited<ReturnType<typeof benchFlow>> | undefined;
  if (runs('throughput') || runs('flow')) {
    const server = await startServer(SERVER_KIND as ServerKind);
    const c = clients(server.url, reports, bodies);
    try {
      if (runs('throughput')) throughput = await benchThroughput(c, reports);
      if (runs('flow')) flow = await benchFlow(c);
    } finally {
      await c.close();
      log(await server.stop());
    }
  }
  const totalSeconds = (performance.now() - started) / 1000;
  const ratio = throughput === undefined ? undefined : throughput.pipelineReportsPerSec / throughput.encodeRawReportsPerSec;
  const met = ratio === undefined ? null : ratio >= 0.8;
  log(`goals: throughput ratio ${opt(ratio, 3)} ≥ 0.8 ${met === null ? 'not run' : met ? 'met' : 'MISSED'}; total ${totalSeconds.toFixed(0)} s`);
  const r = roundOrNull;
  console.log(
    JSON.stringify({
      bench: 'pipeline',
      ratio: r(ratio, 3),
      pipeline_reports_s: r(throughput?.pipelineReportsPerSec, 1),
      raw_reports_s: r(throughput?.rawReportsPerSec, 1),
      ratio_paired: r(throughput?.pairedRatio, 3),
      encode_raw_reports_s: r(throughput?.encodeRawReportsPerSec, 1),
      ratio_vs_preencoded: r(throughput === undefined ? undefined : throughput.pipelineReportsPerSec / throughput.rawReportsPerSec, 3),
      encode_only_reports_s: r(throughput?.encodeOnlyReportsPerSec, 1),
      submit_p50_us: r(submit?.ours.p50, 3),
      submit_p99_us: r(submit?.ours.p99, 3),
      submit_max_us: r(submit?.ours.max, 1),
      submit_mean_untimed_us: r(submit?.ours.bulkMean, 3),
      pqueue_p50_us: r(submit?.floor.p50, 3),
      pqueue_p99_us: r(submit?.floor.p99, 3),
      pqueue_mean_untimed_us: r(submit?.floor.bulkMean, 3),
      submit_ratio: r(ratioSubmit, 3),
      timer_overhead_ns: r(submit?.timerNs, 0),
      loop_delay_p99_ms: r(flow?.pipeline.p99Ms, 2),
      loop_delay_max_ms: r(flow?.pipeline.maxMs, 2),
      loop_delay_p50_ms: r(flow?.pipeline.p50Ms, 2),
      gc_max_ms: r(flow?.pipeline.gcMaxMs, 1),
      flow_seconds: r(flow?.pipeline.seconds, 2),
      flow_reports: FLOW_REPORTS,
      raw_loop_delay_p99_ms: r(flow?.raw.p99Ms, 2),
      raw_loop_delay_max_ms: r(flow?.raw.maxMs, 2),
      raw_flow_seconds: r(flow?.raw.seconds, 2),
      idle_loop_delay_p99_ms: r(flow?.idle.p99Ms, 2),
      report_json_bytes: Math.round(raw),
      report_wire_bytes: Math.round(wire),
      reports_per_run: REPORTS,
      workers: WORKERS,
      rounds: ROUNDS,
      server: SERVER_KIND,
      total_s: round(totalSeconds, 1),
      goals_met: { ratio: met },
    }),
  );
}

// ---------------------------------------------------------------------------
// Helpers

/** The `p`th percentile of sorted `xs` (nearest rank). */
function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0;
}

await main();
