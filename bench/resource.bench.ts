/**
 * Resource benchmark (`npm run bench -- resource`).
 *
 * (a) Admission hot path: `tryAcquire()` + `release()` on a running
 *     `ResourceController`, in ops/s (one op = one acquire and its release;
 *     8 slots are held at a time), against a bare counter (increment if under
 *     the limit, decrement) measured in the same run. Goal: ≥ 5 M ops/s.
 * (b) One sample: wall time and event-loop time of the controller's reading
 *     (`SystemSource.read()`: asynchronous reads of the cgroup and `/proc`
 *     files) against `systeminformation`'s `currentLoad()` + `mem()`, the
 *     usual way to get the same figures, measured in the same run. Event-loop
 *     time is main-thread work (event-loop utilization), per sample; the
 *     longest block is the largest gap seen by a `setImmediate` ticker.
 *
 * It imports the built package (`npm run bench` builds first).
 * The last line printed is one JSON object with the figures.
 *
 * Environment: BENCH_SECONDS (length of one hot-path run, default 1),
 * BENCH_ROUNDS (interleaved rounds, default 5), BENCH_SAMPLES (samples per
 * side in (b), default 20).
 */
import { performance } from 'node:perf_hooks';
import si from 'systeminformation';
import { ResourceController, SystemSource, type Slot } from 'outpost-sdk/resource';
import { intEnv, log, median, round } from './stats.js';

const RUN_SECONDS = Number(process.env['BENCH_SECONDS'] ?? 1);
if (!(RUN_SECONDS > 0)) throw new Error('BENCH_SECONDS must be a positive number');
const ROUNDS = intEnv('BENCH_ROUNDS', 5);
const SAMPLES = intEnv('BENCH_SAMPLES', 20);
const GOAL_OPS = 5_000_000;
/** Slots held at once in the hot-path runs (every one acquired, then every one released). */
const BATCH = 8;
// systeminformation's currentLoad() answers from a cache when called within 200 ms: space every call past it.
const SAMPLE_SPACING_MS = 250;

/** The baseline: the least an admission counter can do. */
class BareCounter {
  active = 0;
  rejected = 0;
  constructor(readonly max: number) {}
  tryAcquire(): boolean {
    if (this.active < this.max) {
      this.active++;
      return true;
    }
    this.rejected++;
    return false;
  }
  release(): void {
    this.active--;
  }
}

async function main(): Promise<void> {
  log(`resource bench: ~${RUN_SECONDS}s per hot-path run, ${ROUNDS} rounds, ${SAMPLES} samples per side, node ${process.version}`);
  const hot = await benchHotPath();
  const sample = await benchSample();
  console.log(
    JSON.stringify({
      bench: 'resource',
      ratio: round(hot.ours / hot.baseline, 3),
      acquireReleaseOpsPerSec: Math.round(hot.ours),
      bareCounterOpsPerSec: Math.round(hot.baseline),
      goalOpsPerSec: GOAL_OPS,
      meetsGoal: hot.ours >= GOAL_OPS,
      sampleMicros: round(sample.ours.wallMicros, 1),
      siSampleMicros: round(sample.si.wallMicros, 1),
      sampleBlockMicros: round(sample.ours.blockMicros, 1),
      siSampleBlockMicros: round(sample.si.blockMicros, 1),
      sampleBlockRatio: round(sample.si.blockMicros / sample.ours.blockMicros, 2),
      maxBlockMicros: round(sample.ours.maxBlockMicros, 1),
      siMaxBlockMicros: round(sample.si.maxBlockMicros, 1),
      maxBlockRatio: round(sample.si.maxBlockMicros / sample.ours.maxBlockMicros, 2),
      source: sample.source,
      rounds: ROUNDS,
      samples: SAMPLES,
    }),
  );
}

// ---------------------------------------------------------------------------
// (a) tryAcquire() + release()

async function benchHotPath(): Promise<{ ours: number; baseline: number }> {
  const controller = new ResourceController({ maxConcurrentJobs: 64, sampleIntervalMs: 3_600_000 });
  await controller.start();
  const counter = new BareCounter(64);
  let sink = 0;
  // Slots are held BATCH at a time, as jobs hold them, so that no slot object can be optimised away.
  const held: (Slot | undefined)[] = new Array<Slot | undefined>(BATCH);
  const viaController = (n: number): number => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) {
      for (let k = 0; k < BATCH; k++) held[k] = controller.tryAcquire();
      for (let k = 0; k < BATCH; k++) (held[k] as Slot).release();
    }
    return (performance.now() - t0) / 1000;
  };
  const viaCounter = (n: number): number => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) {
      for (let k = 0; k < BATCH; k++) if (counter.tryAcquire()) sink++;
      for (let k = 0; k < BATCH; k++) counter.release();
    }
    return (performance.now() - t0) / 1000;
  };
  try {
    // Warm-up (JIT) until a pass lasts a quarter of a run, then size the runs from the slower rate.
    let n = 100_000;
    let rate = 0;
    for (let pass = 1; pass <= 6; pass++) {
      const so = viaController(n);
      const sb = viaCounter(n);
      rate = Math.min(n / so, n / sb);
      log(`warm-up ${pass}: ${n} ops each, controller ${fmtOps(n / so)}, bare counter ${fmtOps(n / sb)}`);
      if (Math.min(so, sb) >= RUN_SECONDS / 4) break;
      n = Math.round(rate * RUN_SECONDS * 0.3);
    }
    n = Math.max(100_000, Math.round(rate * RUN_SECONDS));
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? [viaController, viaCounter] : [viaCounter, viaController];
      for (const run of order) (run === viaController ? ours : theirs).push(n / run(n));
      log(`round ${r + 1}: tryAcquire()+release() ${fmtOps(ours.at(-1) ?? 0)}, bare counter ${fmtOps(theirs.at(-1) ?? 0)}`);
    }
    const status = controller.status();
    if (status.activeJobs !== 0 || status.rejectedJobs !== 0 || counter.active !== 0 || counter.rejected !== 0 || sink === 0) throw new Error('a hot-path run lost count');
    const result = { ours: median(ours), baseline: median(theirs) };
    log(`hot path: ${fmtOps(result.ours)} vs bare counter ${fmtOps(result.baseline)}, ratio ${(result.ours / result.baseline).toFixed(3)} (goal ≥ ${fmtOps(GOAL_OPS)})`);
    return result;
  } finally {
    await controller.close();
  }
}

// ---------------------------------------------------------------------------
// (b) one sample

interface SampleCost {
  /** Wall time per sample, µs. */
  wallMicros: number;
  /** Main-thread (event-loop) time per sample, µs. */
  blockMicros: number;
  /** Longest event-loop block seen while sampling, µs. */
  maxBlockMicros: number;
}

async function benchSample(): Promise<{ ours: SampleCost; si: SampleCost; source: unknown }> {
  const source = new SystemSource();
  const ours = async (): Promise<void> => {
    const r = await source.read();
    if (r.memory === undefined) throw new Error(`SystemSource could not read memory: ${r.failures?.map((e) => e.message).join('; ')}`);
  };
  const theirs = async (): Promise<void> => {
    const [load, mem] = await Promise.all([si.currentLoad(), si.mem()]);
    if (!(load.currentLoad >= 0) || !(mem.available > 0)) throw new Error('systeminformation returned no figures');
  };
  // Warm-up: both take a baseline (currentLoad() waits 500 ms on its first call).
  await ours();
  await theirs();
  const a: SampleCost[] = [];
  const b: SampleCost[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ([ours, theirs] as const) : ([theirs, ours] as const);
    for (const fn of order) (fn === ours ? a : b).push(await measure(fn, Math.max(2, Math.round(SAMPLES / ROUNDS))));
    log(
      `round ${r + 1}: SystemSource.read() ${fmtUs(a.at(-1)?.wallMicros)} wall, ${fmtUs(a.at(-1)?.blockMicros)} on the loop, longest block ${fmtUs(a.at(-1)?.maxBlockMicros)}; ` +
        `si.currentLoad()+mem() ${fmtUs(b.at(-1)?.wallMicros)} wall, ${fmtUs(b.at(-1)?.blockMicros)} on the loop, longest block ${fmtUs(b.at(-1)?.maxBlockMicros)}`,
    );
  }
  const pick = (xs: SampleCost[]): SampleCost => ({
    wallMicros: median(xs.map((x) => x.wallMicros)),
    blockMicros: median(xs.map((x) => x.blockMicros)),
    maxBlockMicros: median(xs.map((x) => x.maxBlockMicros)),
  });
  const result = { ours: pick(a), si: pick(b), source: source.describe() };
  log(
    `sample: ${fmtUs(result.ours.blockMicros)} of event-loop time vs ${fmtUs(result.si.blockMicros)} for systeminformation (×${(result.si.blockMicros / result.ours.blockMicros).toFixed(1)}); ` +
      `longest block ${fmtUs(result.ours.maxBlockMicros)} vs ${fmtUs(result.si.maxBlockMicros)}`,
  );
  return result;
}

/**
 * Runs `fn` `n` times, `SAMPLE_SPACING_MS` apart, for wall time and
 * event-loop time, then `n` times more under a `setImmediate` ticker for the
 * longest block (the ticker keeps the loop busy, so it cannot run during the
 * first pass: it would count every idle wait as event-loop time).
 */
async function measure(fn: () => Promise<void>, n: number): Promise<SampleCost> {
  let wall = 0;
  let block = 0;
  for (let i = 0; i < n; i++) {
    await sleep(SAMPLE_SPACING_MS);
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    await fn();
    wall += performance.now() - t0;
    block += performance.eventLoopUtilization(elu0).active;
  }
  let maxGap = 0;
  for (let i = 0; i < n; i++) {
    await sleep(SAMPLE_SPACING_MS);
    let ticking = true;
    let last = performance.now();
    const tick = (): void => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    await fn();
    ticking = false;
    await new Promise((r) => setImmediate(r));
  }
  return { wallMicros: (wall / n) * 1000, blockMicros: (block / n) * 1000, maxBlockMicros: maxGap * 1000 };
}

// ---------------------------------------------------------------------------
// Helpers

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function fmtOps(x: number): string {
  return `${(x / 1e6).toFixed(2)} M ops/s`;
}

function fmtUs(x: number | undefined): string {
  return `${(x ?? 0).toFixed(0)} µs`;
}

await main();
