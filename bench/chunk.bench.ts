/**
 * Chunk outbox benchmark (`npm run bench -- chunk`). It measures the built
 * package (`dist/`, what users run), not the TypeScript sources.
 *
 * (a) Ingest: `ChunkManager.submitReport` of a 100k-finding report (~35 MB of
 *     JSON, findings grouped by the ~2000 assets they refer to) into a fresh
 *     database, default options, until it resolves (split + serialise +
 *     SHA-256 + zstd-3 + one-transaction insert). Against the RAW LIMIT of the
 *     same run: the same chunks, pre-split, `JSON.stringify` + zstd-3 (native
 *     binding, one compression per thread-pool thread in flight) +
 *     one-transaction insert into a plain table with the same pragmas (WAL,
 *     synchronous=FULL).
 *     Interleaved rounds, order alternating; medians.
 * (b) Streaming: `submitReportStream` of ≥ 500 MB of JSON from an async
 *     generator: peak RSS growth (sampled every 20 ms) over the baseline just
 *     before it, and the event loop's p99 delay (monitorEventLoopDelay, 10 ms
 *     resolution). Runs first, so that nothing else has grown the heap yet.
 * (c) Drain: the stored chunks of a few such reports, `start()` + `flush()`
 *     through an authenticated `HttpUploader` (maxConcurrentUploads 4,
 *     uploadDelayMs 0) to `createIngestHandler` on loopback, in a worker
 *     thread; against the same bodies sent straight with `uploadChunk`, 4 at a time.
 *
 * The outbox's uploads in (a) and (b) go to an uploader that parks every call
 * until the manager closes, so they cost nothing measured.
 * The last line printed is one JSON object with the figures. MB = 10^6 bytes.
 *
 * Environment: BENCH_ROUNDS (rounds of (a), default 9), BENCH_STREAM_MB
 * (default 500), BENCH_DRAIN_REPORTS (reports per drain, default 3),
 * BENCH_DRAIN_ROUNDS (default 2), BENCH_DIR (where databases go, default the
 * OS temp dir), BENCH_ONLY (e.g. `ingest,stream`: run only these of
 * ingest, stream, drain — for profiling; skipped figures are null).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import Database from 'better-sqlite3';
import { ChunkManager, type ChunkManagerOptions, type Report, type SubmitReceipt } from 'outpost-sdk/chunk';
import { HttpUploader, type ChunkUpload, type ReportUpload, type UploadCallOptions, type UploadResult, type Uploader } from 'outpost-sdk/transport';
import { FINDINGS_PER_ASSET, METADATA, Synth, makeReport, preSplit, streamItems } from './chunk-data.js';
import { TENANT, TOKEN, startIngestServer, type IngestServer } from './chunk-server.js';
import { at, intEnv, log, median, opt, roundOrNull } from './stats.js';

const ROUNDS = intEnv('BENCH_ROUNDS', 9);
const PARTS = ['ingest', 'stream', 'drain'] as const;
const ONLY = (process.env['BENCH_ONLY'] ?? PARTS.join(',')).split(',').map((p) => p.trim());
if (ONLY.some((p) => !(PARTS as readonly string[]).includes(p))) throw new Error(`BENCH_ONLY takes a comma-separated list of ${PARTS.join(', ')}`);
const runs = (part: (typeof PARTS)[number]): boolean => ONLY.includes(part);
const STREAM_MB = intEnv('BENCH_STREAM_MB', 500);
const DRAIN_REPORTS = intEnv('BENCH_DRAIN_REPORTS', 3);
const DRAIN_ROUNDS = intEnv('BENCH_DRAIN_ROUNDS', 2);
const FINDINGS = 100_000;
const ASSETS = 2_000;
const PER_CHUNK = 500; // the default maxFindingsPerChunk
const LEVEL = 3; // the default compressionLevel
const DRAIN_CONCURRENCY = 4;
/** A drain that takes longer has stalled (a chunk on a long backoff): fail instead of hanging. */
const DRAIN_TIMEOUT_MS = 60_000;
// Compressions in flight in the raw limit: one per thread of libuv's pool (measured as fast as, and steadier than, all at once).
const RAW_IN_FLIGHT = Number(process.env['UV_THREADPOOL_SIZE'] ?? 4);

// zstd as src/internal/zstd.ts calls it: the native binding (its JS wrapper drops the level).
const zstd = createRequire(import.meta.url)('@mongodb-js/zstd/bindings.js') as { compress(data: Buffer, level: number): Promise<Buffer> };
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** An uploader whose calls wait until the manager aborts them on close: uploads cost nothing while the outbox is measured. */
class ParkedUploader implements Uploader {
  uploadChunk(_chunk: ChunkUpload, options: UploadCallOptions = {}): Promise<UploadResult> {
    return this.#park(options.signal);
  }
  uploadReport(_report: ReportUpload, options: UploadCallOptions = {}): Promise<UploadResult> {
    return this.#park(options.signal);
  }
  #park(signal: AbortSignal | undefined): Promise<UploadResult> {
    return new Promise((_resolve, reject) => {
      if (signal === undefined) return reject(new Error('ParkedUploader needs a signal, or it would never settle'));
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }
}

let managerErrors = 0;

async function openManager(path: string, options: Partial<ChunkManagerOptions> = {}): Promise<ChunkManager> {
  const manager = new ChunkManager({ uploader: new ParkedUploader(), databasePath: path, ...options });
  manager.on('error', (err) => {
    managerErrors++;
    log(`manager error: ${err.code} ${err.message}`);
  });
  await manager.start();
  await sleep(50); // let start()'s first cleanup pass finish before anything is timed
  return manager;
}

// ---------------------------------------------------------------------------
// (a) submitReport vs the raw limit

type Bench = { metadata: unknown; findings: Record<string, unknown>[]; assets: Record<string, unknown>[] };

async function oursOnce(report: Bench, dir: string, reportId: string): Promise<{ seconds: number; receipt: SubmitReceipt }> {
  const manager = await openManager(join(dir, `${reportId}.db`));
  try {
    const t0 = performance.now();
    const receipt = await manager.submitReport(report as Report, { tenantId: TENANT, reportId });
    return { seconds: (performance.now() - t0) / 1000, receipt };
  } finally {
    await manager.close();
  }
}

async function rawOnce(chunks: readonly Record<string, unknown>[], dir: string, name: string): Promise<{ seconds: number; rawBytes: number; storedBytes: number }> {
  const db = new Database(join(dir, `${name}.db`));
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL)');
    const insert = db.prepare<[number, Buffer]>('INSERT INTO blobs (id, body) VALUES (?, ?)');
    const insertAll = db.transaction((blobs: readonly Buffer[]) => {
      for (let i = 0; i < blobs.length; i++) insert.run(i, blobs[i] as Buffer);
    });
    let rawBytes = 0;
    const t0 = performance.now();
    const blobs: Buffer[] = [];
    const inFlight: Promise<Buffer>[] = [];
    for (const chunk of chunks) {
      const json = Buffer.from(JSON.stringify(chunk), 'utf8');
      rawBytes += json.length;
      inFlight.push(zstd.compress(json, LEVEL));
      if (inFlight.length >= RAW_IN_FLIGHT) blobs.push(await (inFlight.shift() as Promise<Buffer>));
    }
    blobs.push(...(await Promise.all(inFlight)));
    insertAll.immediate(blobs);
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, rawBytes, storedBytes: blobs.reduce((n, b) => n + b.length, 0) };
  } finally {
    db.close();
  }
}

async function benchIngest(report: Bench, dir: string): Promise<{ oursMBps: number; rawMBps: number; paired: number; receipt: SubmitReceipt; rawChunks: number; rawStoredBytes: number }> {
  const chunks = preSplit(report, PER_CHUNK);
  let receipt: SubmitReceipt | undefined;
  let rawStoredBytes = 0;
  const ours: number[] = [];
  const raw: number[] = [];
  for (let r = -1; r < ROUNDS; r++) {
    const order: Array<'ours' | 'raw'> = r % 2 === 0 ? ['raw', 'ours'] : ['ours', 'raw'];
    for (const which of order) {
      gc();
      if (which === 'ours') {
        const x = await oursOnce(report, dir, `a-ours-${r + 1}`);
        receipt = x.receipt;
        if (r >= 0) ours.push(x.receipt.rawBytes / x.seconds / 1e6);
        log(`${r < 0 ? 'warm-up' : `round ${r + 1}`} submitReport ${mb(x.receipt.rawBytes)} MB → ${x.receipt.totalChunks} chunks, ${mb(x.receipt.storedBytes)} MB stored, in ${x.seconds.toFixed(3)} s: ${(x.receipt.rawBytes / x.seconds / 1e6).toFixed(1)} MB/s`);
      } else {
        const x = await rawOnce(chunks, dir, `a-raw-${r + 1}`);
        rawStoredBytes = x.storedBytes;
        if (r >= 0) raw.push(x.rawBytes / x.seconds / 1e6);
        log(`${r < 0 ? 'warm-up' : `round ${r + 1}`} raw limit   ${mb(x.rawBytes)} MB → ${chunks.length} chunks, ${mb(x.storedBytes)} MB stored, in ${x.seconds.toFixed(3)} s: ${(x.rawBytes / x.seconds / 1e6).toFixed(1)} MB/s`);
      }
    }
    if (receipt !== undefined && r < 0 && receipt.totalChunks !== chunks.length) {
      log(`warning: the outbox made ${receipt.totalChunks} chunks, the raw limit ${chunks.length}: the splits differ`);
    }
  }
  if (receipt === undefined) throw new Error('no round ran');
  const oursMBps = median(ours);
  const rawMBps = median(raw);
  const paired = median(ours.map((x, i) => x / at(raw, i)));
  log(`ingest: submitReport ${oursMBps.toFixed(1)} MB/s vs raw limit ${rawMBps.toFixed(1)} MB/s, ratio ${(oursMBps / rawMBps).toFixed(3)} (goal ≥ 0.7; median of same-round ratios ${paired.toFixed(3)})`);
  return { oursMBps, rawMBps, paired, receipt, rawChunks: chunks.length, rawStoredBytes };
}

// ---------------------------------------------------------------------------
// (b) streaming

async function benchStream(dir: string): Promise<{ rawBytes: number; storedBytes: number; chunks: number; seconds: number; rssGrowthMB: number; heapGrowthMB: number; p99Ms: number; p50Ms: number; maxMs: number; gcMaxMs: number }> {
  // Size the stream from a sample: findings, plus one asset per FINDINGS_PER_ASSET.
  const sample = new Synth(7);
  let sampleBytes = 0;
  for (let i = 0; i < 2000; i++) sampleBytes += Buffer.byteLength(JSON.stringify(sample.finding(i, Math.floor(i / FINDINGS_PER_ASSET)))) + 1;
  const perFinding = sampleBytes / 2000 + Buffer.byteLength(JSON.stringify(sample.asset(0))) / FINDINGS_PER_ASSET;
  const findings = Math.ceil((STREAM_MB * 1e6 * 1.01) / perFinding);

  const manager = await openManager(join(dir, 'b-stream.db'), { maxStorageMB: 4096 });
  try {
    const h = monitorEventLoopDelay({ resolution: 10 });
    gc();
    await sleep(100);
    const before = process.memoryUsage();
    const baseline = before.rss;
    let peak = baseline;
    let atPeak = before;
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      if (m.rss > peak) {
        peak = m.rss;
        atPeak = m;
      }
    }, 20);
    log(`stream: ${findings} findings (~${(perFinding * findings / 1e6).toFixed(0)} MB of JSON) from an async generator; RSS before ${mb(baseline)} MB`);
    // GC pauses, to tell a collector pause from other blocking when the loop delay is high.
    const gcPauses: number[] = [];
    const gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) gcPauses.push(e.duration);
    });
    gcObserver.observe({ entryTypes: ['gc'] });
    h.enable();
    const t0 = performance.now();
    const receipt = await manager.submitReportStream({ tenantId: TENANT, reportId: 'b-stream', metadata: METADATA }, streamItems(11, findings));
    const seconds = (performance.now() - t0) / 1000;
    h.disable();
    clearInterval(sampler);
    gcObserver.disconnect();
    const gcMaxMs = Math.max(0, ...gcPauses);
    const gcTotalMs = gcPauses.reduce((a, b) => a + b, 0);
    const after = process.memoryUsage();
    if (after.rss > peak) {
      peak = after.rss;
      atPeak = after;
    }
    const p99Ms = h.percentile(99) / 1e6;
    const p50Ms = h.percentile(50) / 1e6;
    const maxMs = h.max / 1e6;
    const rssGrowthMB = (peak - baseline) / 1e6;
    // Where the growth sits at the peak: the V8 heap, or native memory (malloc: zstd, SQLite, buffers).
    const heapGrowthMB = (atPeak.heapTotal - before.heapTotal) / 1e6;
    const nativeGrowthMB = rssGrowthMB - heapGrowthMB;
    log(
      `stream: ${mb(receipt.rawBytes)} MB → ${receipt.totalChunks} chunks, ${mb(receipt.storedBytes)} MB stored, in ${seconds.toFixed(1)} s (${(receipt.rawBytes / seconds / 1e6).toFixed(1)} MB/s); ` +
        `peak RSS growth ${rssGrowthMB.toFixed(1)} MB (goal ≤ 100; V8 heap ${heapGrowthMB.toFixed(1)} MB, the rest ${nativeGrowthMB.toFixed(1)} MB); event-loop delay p50 ${p50Ms.toFixed(1)} ms, p99 ${p99Ms.toFixed(1)} ms (goal ≤ 50), max ${maxMs.toFixed(1)} ms ` +
        `(timer intervals, the 10 ms resolution included); GC ${gcPauses.length} pauses, ${gcTotalMs.toFixed(0)} ms in all, longest ${gcMaxMs.toFixed(1)} ms`,
    );
    return { rawBytes: receipt.rawBytes, storedBytes: receipt.storedBytes, chunks: receipt.totalChunks, seconds, rssGrowthMB, heapGrowthMB, p99Ms, p50Ms, maxMs, gcMaxMs };
  } finally {
    await manager.close();
  }
}

// ---------------------------------------------------------------------------
// (c) drain

interface StoredChunk {
  readonly report_id: string;
  readonly total_chunks: number;
  readonly idx: number;
  readonly sha256: string;
  readonly raw_bytes: number;
  readonly encoding: 'zstd' | 'identity';
  readonly body: Buffer;
}

async function fillOutbox(report: Bench, path: string, prefix: string): Promise<StoredChunk[]> {
  const manager = await openManager(path, { maxStorageMB: 4096 });
  try {
    for (let k = 0; k < DRAIN_REPORTS; k++) await manager.submitReport(report as Report, { tenantId: TENANT, reportId: `${prefix}-${k}` });
  } finally {
    await manager.close();
  }
  const db = new Database(path, { readonly: true });
  try {
    return db
      .prepare<[], StoredChunk>(
        `SELECT r.report_id, r.total_chunks, c.idx, c.sha256, c.raw_bytes, c.encoding, c.body FROM chunks c JOIN reports r ON r.id = c.report_key WHERE c.state = 'pending' ORDER BY r.id, c.idx`,
      )
      .all();
  } finally {
    db.close();
  }
}

async function drainOnce(server: IngestServer, path: string, expected: number): Promise<number> {
  const uploader = new HttpUploader({ url: server.url, token: TOKEN, connections: DRAIN_CONCURRENCY, keepAliveTimeoutMs: 60_000 });
  const manager = new ChunkManager({ uploader, databasePath: path, maxConcurrentUploads: DRAIN_CONCURRENCY, uploadDelayMs: 0, maxStorageMB: 4096 });
  let uploaded = 0;
  let retries = 0;
  let dead = 0;
  manager.on('chunk-uploaded', () => void uploaded++);
  manager.on('chunk-retry', (e) => {
    if (retries++ === 0) log(`drain: first retry: ${e.error.code} ${e.error.message}`);
  });
  manager.on('chunk-dead', () => void dead++);
  manager.on('error', (err) => {
    managerErrors++;
    log(`manager error: ${err.code} ${err.message}`);
  });
  try {
    const t0 = performance.now();
    await manager.start();
    try {
      await manager.flush({ signal: AbortSignal.timeout(DRAIN_TIMEOUT_MS) });
    } catch (err) {
      throw new Error(`drain did not finish in ${DRAIN_TIMEOUT_MS / 1000} s: ${uploaded} of ${expected} chunks uploaded, ${retries} retries, ${dead} dead; stats ${JSON.stringify(manager.stats())}`, { cause: err });
    }
    const seconds = (performance.now() - t0) / 1000;
    if (uploaded !== expected || retries !== 0 || dead !== 0) throw new Error(`drain uploaded ${uploaded} of ${expected} chunks (${retries} retries, ${dead} dead)`);
    return seconds;
  } finally {
    await manager.close();
    await uploader.close();
  }
}

async function directOnce(server: IngestServer, chunks: readonly StoredChunk[], prefix: string): Promise<number> {
  const uploader = new HttpUploader({ url: server.url, token: TOKEN, connections: DRAIN_CONCURRENCY, keepAliveTimeoutMs: 60_000 });
  try {
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: DRAIN_CONCURRENCY }, async () => {
        while (next < chunks.length) {
          const c = at(chunks, next++);
          const res = await uploader.uploadChunk({ reportId: `${prefix}-${c.report_id}`, index: c.idx, total: c.total_chunks, sha256: c.sha256, rawBytes: c.raw_bytes, encoding: c.encoding, body: c.body });
          if (res.status !== 201) throw new Error(`direct upload: status ${res.status}`);
        }
      }),
    );
    return (performance.now() - t0) / 1000;
  } finally {
    await uploader.close();
  }
}

async function benchDrain(report: Bench, dir: string): Promise<{ rawMBps: number; storedMBps: number; directRawMBps: number; chunks: number; rawBytes: number; storedBytes: number }> {
  const server = await startIngestServer();
  let sent = 0;
  const drain: number[] = [];
  const direct: number[] = [];
  let rawBytes = 0;
  let storedBytes = 0;
  let count = 0;
  try {
    for (let r = 0; r < DRAIN_ROUNDS; r++) {
      const path = join(dir, `c-drain-${r}.db`);
      const chunks = await fillOutbox(report, path, `c${r}`);
      count = chunks.length;
      rawBytes = chunks.reduce((n, c) => n + c.raw_bytes, 0);
      storedBytes = chunks.reduce((n, c) => n + c.body.length, 0);
      gc();
      const order: Array<'drain' | 'direct'> = r % 2 === 0 ? ['drain', 'direct'] : ['direct', 'drain'];
      for (const which of order) {
        const s = which === 'drain' ? await drainOnce(server, path, chunks.length) : await directOnce(server, chunks, `direct${r}`);
        sent += chunks.length;
        (which === 'drain' ? drain : direct).push(s);
        log(
          `round ${r + 1} ${which === 'drain' ? 'outbox drain ' : 'direct upload'} ${chunks.length} chunks, ${mb(rawBytes)} MB raw / ${mb(storedBytes)} MB stored, in ${s.toFixed(2)} s: ` +
            `${(rawBytes / s / 1e6).toFixed(1)} MB/s raw, ${(storedBytes / s / 1e6).toFixed(1)} MB/s stored`,
        );
      }
      rmSync(path, { force: true });
      rmSync(`${path}-wal`, { force: true });
      rmSync(`${path}-shm`, { force: true });
    }
  } finally {
    const { stats, errors } = await server.stop();
    log(`ingest server: ${stats.stored} chunks stored, ${stats.delivered} reports delivered, ${stats.rejected} rejected, ${stats.duplicates} duplicates, ${errors} errors`);
    if (stats.stored !== sent || stats.rejected !== 0 || errors !== 0) throw new Error(`ingest server stored ${stats.stored} of ${sent} uploads`);
  }
  const s = median(drain);
  const rawMBps = rawBytes / s / 1e6;
  const storedMBps = storedBytes / s / 1e6;
  const directRawMBps = rawBytes / median(direct) / 1e6;
  log(`drain: ${rawMBps.toFixed(1)} MB/s raw, ${storedMBps.toFixed(1)} MB/s stored; direct uploadChunk ×${DRAIN_CONCURRENCY} ${directRawMBps.toFixed(1)} MB/s raw, ratio ${(rawMBps / directRawMBps).toFixed(3)}`);
  return { rawMBps, storedMBps, directRawMBps, chunks: count, rawBytes, storedBytes };
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const base = process.env['BENCH_DIR'] ?? tmpdir();
  const dir = mkdtempSync(join(base, 'outpost-chunk-bench-'));
  log(`chunk bench (${ONLY.join(', ')}): ${ROUNDS} rounds, stream ${STREAM_MB} MB, drain ${DRAIN_REPORTS} reports × ${DRAIN_ROUNDS} rounds, node ${process.version}, databases in ${dir}`);
  const started = performance.now();
  try {
    // The stream first: nothing else has grown the heap yet, so its RSS growth is its own.
    const stream = runs('stream') ? await benchStream(dir) : undefined;
    rmSync(join(dir, 'b-stream.db'), { force: true });

    let ingest: Awaited<ReturnType<typeof benchIngest>> | undefined;
    let drain: Awaited<ReturnType<typeof benchDrain>> | undefined;
    if (runs('ingest') || runs('drain')) {
      const report = makeReport(1, FINDINGS, ASSETS);
      const reportBytes = Buffer.byteLength(JSON.stringify(report));
      log(`report: ${FINDINGS} findings over ${ASSETS} assets, ${mb(reportBytes)} MB of JSON (${(reportBytes / FINDINGS).toFixed(0)} bytes per finding)`);
      if (runs('ingest')) ingest = await benchIngest(report, dir);
      if (runs('drain')) drain = await benchDrain(report, dir);
    }
    if (managerErrors !== 0) throw new Error(`${managerErrors} manager error events`);

    const ratio = ingest === undefined ? undefined : ingest.oursMBps / ingest.rawMBps;
    const goals = {
      ratio: ratio === undefined ? null : ratio >= 0.7,
      stream_rss_growth: stream === undefined ? null : stream.rssGrowthMB <= 100,
      stream_loop_delay_p99: stream === undefined ? null : stream.p99Ms <= 50,
    };
    log(
      `goals: ratio ${opt(ratio, 3)} ≥ 0.7 ${ok(goals.ratio)}; stream RSS growth ${opt(stream?.rssGrowthMB, 1)} MB ≤ 100 ${ok(goals.stream_rss_growth)}; ` +
        `stream loop delay p99 ${opt(stream?.p99Ms, 1)} ms ≤ 50 ${ok(goals.stream_loop_delay_p99)}; total ${((performance.now() - started) / 1000).toFixed(0)} s`,
    );
    const r = roundOrNull;
    console.log(
      JSON.stringify({
        bench: 'chunk',
        ratio: r(ratio, 3),
        ingest_mb_s: r(ingest?.oursMBps, 1),
        raw_limit_mb_s: r(ingest?.rawMBps, 1),
        ratio_paired: r(ingest?.paired, 3),
        report_mb: r(ingest === undefined ? undefined : ingest.receipt.rawBytes / 1e6, 2),
        report_chunks: ingest?.receipt.totalChunks ?? null,
        report_stored_mb: r(ingest === undefined ? undefined : ingest.receipt.storedBytes / 1e6, 2),
        raw_chunks: ingest?.rawChunks ?? null,
        raw_stored_mb: r(ingest === undefined ? undefined : ingest.rawStoredBytes / 1e6, 2),
        stream_mb: r(stream === undefined ? undefined : stream.rawBytes / 1e6, 1),
        stream_chunks: stream?.chunks ?? null,
        stream_mb_s: r(stream === undefined ? undefined : stream.rawBytes / stream.seconds / 1e6, 1),
        stream_rss_growth_mb: r(stream?.rssGrowthMB, 1),
        stream_heap_growth_mb: r(stream?.heapGrowthMB, 1),
        stream_loop_delay_p99_ms: r(stream?.p99Ms, 1),
        stream_loop_delay_max_ms: r(stream?.maxMs, 1),
        stream_gc_max_ms: r(stream?.gcMaxMs, 1),
        drain_raw_mb_s: r(drain?.rawMBps, 1),
        drain_stored_mb_s: r(drain?.storedMBps, 1),
        direct_raw_mb_s: r(drain?.directRawMBps, 1),
        drain_ratio: r(drain === undefined ? undefined : drain.rawMBps / drain.directRawMBps, 3),
        drain_chunks: drain?.chunks ?? null,
        rounds: ROUNDS,
        goals_met: goals,
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// Helpers

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

function ok(met: boolean | null): string {
  return met === null ? 'not run' : met ? 'met' : 'MISSED';
}

await main();
