/**
 * Model-based test of the UploadPipeline (fast-check): random runs of submit
 * (bursts, priorities, own or shared caller signals, reports that cannot be
 * serialised or that the outbox would split), answers to the uploads in
 * flight (2xx, 503 with or without Retry-After, 400, 401, an uploader that
 * throws), caller aborts, flush()/onIdle(), clock jumps (retries fire,
 * attempts time out), a late start(), submits from a `completed` listener,
 * and one stop({ timeoutMs }), against a real pipeline with an in-process
 * uploader, with and without a real outbox.
 *
 * After every step, and inside every listener: the stats add up; every id has
 * at most one terminal event and nothing after it; no upload starts for a
 * settled id, before its retry is due or after stop(); at most `workers` calls
 * are in the uploader (one that ignores its abort keeps its worker); a free
 * worker never leaves a queued report waiting, and the highest priority goes
 * first. Every outcome a step decides (an answer, an abort, a full queue, the
 * encoder, stop()) is the one the model predicts; the clock may only end a
 * timed-out last attempt, or an upload whose stop() grace ran out.
 *
 * Timers are fake (setTimeout and Date only). Encoding runs on libuv's thread
 * pool and the outbox writes on real turns of the loop, so after each step the
 * test waits on real setImmediate turns until the pipeline is quiet: nothing
 * spilling, every report the encoder took (it reads the report) measured, and
 * no queued report beside a free worker.
 * More runs: OUTPOST_MODEL_RUNS=20 npx vitest run test/pipeline/model.test.ts
 */
import fc from 'fast-check';
import { describe, it, vi } from 'vitest';
import type { ChunkManager } from '../../src/chunk/index.js';
import type { Uploader } from '../../src/transport/index.js';
import { startManager } from '../helpers/chunk.js';
import { tempDir } from '../helpers/ingest.js';

import { CHUNK_AT_FINDINGS, Run, type Config, type How, type Op, type Submit } from './model-state.js';

const submitArb: fc.Arbitrary<Submit> = fc.record({
  kind: fc.constant('submit' as const),
  count: fc.constantFrom(1, 1, 1, 2, 4, 6),
  priority: fc.integer({ min: -1, max: 1 }),
  signal: fc.constantFrom('none' as const, 'own' as const, 'shared' as const),
  bad: fc.constantFrom('none' as const, 'none' as const, 'none' as const, 'none' as const, 'metadata' as const, 'finding' as const),
  findings: fc.nat({ max: 4 }),
});
const hows = fc.constantFrom<How>('ok', 'ok', 'duplicate', '503', '503', '503-retry-after', '400', '401', 'throw');
const answerArb = fc.record({ kind: fc.constant('answer' as const), pick: fc.nat({ max: 3 }), how: hows, retryAfterMs: fc.constantFrom(0, 1_000, 30_000, 700_000) });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: submitArb },
  { weight: 6, arbitrary: answerArb },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('abort' as const), pick: fc.nat({ max: 5 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.constantFrom(1, 50, 500, 1_000, 5_000, 40_000) }) },
  { weight: 1, arbitrary: fc.constantFrom({ kind: 'flush' as const }, { kind: 'start' as const }) },
);
const configArb: fc.Arbitrary<Config> = fc.record({
  workers: fc.integer({ min: 1, max: 3 }),
  retryAttempts: fc.integer({ min: 0, max: 2 }),
  queueSize: fc.integer({ min: 2, max: 8 }),
  maxQueueBytes: fc.oneof(fc.constant(64 * 1024 * 1024), fc.integer({ min: 1, max: 300 })),
  uploadTimeoutMs: fc.constantFrom(1_000, 30_000),
  retryDelayMs: fc.constantFrom(0, 100, 2_000),
  abortMode: fc.constantFrom('honour' as const, 'ignore' as const, 'mixed' as const),
  startLate: fc.boolean(),
  chain: fc.boolean(),
});
/** One stop({ timeoutMs }) near the end, `fromEnd` steps before it (none: finish() stops). */
const stopArb = fc.option(fc.record({ fromEnd: fc.nat({ max: 6 }), timeoutMs: fc.constantFrom(0, 500, 5_000) }), { nil: undefined });

/** Runs per property (a multiplier): OUTPOST_MODEL_RUNS=20 runs each 20 times longer. */
const RUNS_FACTOR = Number(process.env.OUTPOST_MODEL_RUNS ?? 1);
/** The run under way: a property cut short by its time limit waits for it, so it cannot touch the next test's timers. */
let current: Promise<unknown> = Promise.resolve();

async function runModel(cfg: Config, ops: Op[], stop: { fromEnd: number; timeoutMs: number } | undefined, withOutbox: boolean): Promise<void> {
  const steps = [...ops];
  if (stop !== undefined) steps.splice(Math.max(0, steps.length - stop.fromEnd), 0, { kind: 'stop', timeoutMs: stop.timeoutMs });
  const tmp = withOutbox ? tempDir() : undefined;
  let outbox: ChunkManager | undefined;
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  try {
    // The outbox uploads what it is given at once: its own uploads are not under test here.
    const sent = Promise.resolve({ status: 201, duplicate: false });
    const spills: Uploader = { uploadReport: () => sent, uploadChunk: () => sent };
    if (tmp !== undefined) outbox = await startManager(tmp.dir, spills, { minFindingsForChunking: CHUNK_AT_FINDINGS, cleanupIntervalMinutes: 0 });
    const run = new Run(cfg, outbox);
    if (!cfg.startLate) run.pipeline.start();
    for (const op of steps) await run.run(op);
    await run.finish(stop?.timeoutMs ?? 1_000);
  } finally {
    vi.useRealTimers();
    await outbox?.close();
    tmp?.cleanup();
  }
}

function property(withOutbox: boolean, numRuns: number): Promise<void> {
  const body = (cfg: Config, ops: Op[], stop: { fromEnd: number; timeoutMs: number } | undefined): Promise<void> => {
    const run = runModel(cfg, ops, stop, withOutbox);
    current = run.catch(() => undefined);
    return run;
  };
  return fc
    .assert(fc.asyncProperty(configArb, fc.array(opArb, { maxLength: 40, size: 'max' }), stopArb, body), {
      numRuns: Math.max(1, Math.round(numRuns * RUNS_FACTOR)),
      // A run that never gets quiet costs a second per shrink: stop shrinking in time to report it.
      interruptAfterTimeLimit: 40_000 * Math.max(1, RUNS_FACTOR),
      markInterruptAsFailure: true,
    })
    .finally(() => current);
}

describe('UploadPipeline against a model', () => {
  it('settles every report exactly once, as the model predicts, without an outbox', async () => {
    await property(false, 200);
  }, 60_000 * Math.max(1, RUNS_FACTOR));

  it('settles every report exactly once, as the model predicts, spilling to a real outbox', async () => {
    await property(true, 50);
  }, 60_000 * Math.max(1, RUNS_FACTOR));
});
