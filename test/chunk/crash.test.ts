/**
 * Crash safety of the chunk outbox, with real processes: a child agent
 * submits and uploads reports until it is SIGKILLed — at a random moment, on
 * the k-th request or 2xx the server sees, or by itself at a precise point
 * (after an insert, mid-stream, after a 2xx before the row is marked, after a
 * cleanup, or from a thread while SQLite is inside an insert, a commit or a
 * vacuum) — and is restarted, `OUTPOST_SOAK_KILLS` times (30 by default;
 * `npm run soak` does 300). A last run drains the outbox. Then every promise
 * is checked against a real ingest server and the database left on disk.
 *
 * Replay a run's kill plan with `OUTPOST_CRASH_SEED=<seed>` (timings differ);
 * keep its files (outbox database, journal) with `OUTPOST_CRASH_KEEP=1`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIngestHandler, staticTokenAuthenticator, type IngestHandler } from '../../src/ingest/index.js';
import { startServer, type TestServer } from '../helpers/http.js';
import { tempDir } from '../helpers/ingest.js';
import { historyViolations, snapshot, type SeenUpload, type Snapshot } from './fixtures/crash-checks.js';
import {
  PLAN_ENV,
  between,
  buildReport,
  prng,
  readJournal,
  specFor,
  summarize,
  tokenOf,
  type ChildPlan,
  type JournalEntry,
  type KillMode,
} from './fixtures/crash-workload.js';

const KILLS = Number(process.env.OUTPOST_SOAK_KILLS ?? 30);
const SEED = Number(process.env.OUTPOST_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const REPLAY = `seed ${SEED}: replay with OUTPOST_CRASH_SEED=${SEED}`;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/crash-child.ts', import.meta.url));

/** Kill moments, rotated across runs. Parent-side: `timer`, `request`, `response`; the others the child does to itself. */
const MODES: readonly Exclude<KillMode, 'drain'>[] = ['timer', 'inserted', 'request', 'acked', 'streaming', 'response', 'cleanup', 'mid-insert', 'mid-commit', 'mid-cleanup'];
const PARENT_MODES: ReadonlySet<KillMode> = new Set(['timer', 'request', 'response']);
/** A run whose planned kill did not happen by then is killed anyway (and counted as such). */
const FALLBACK_KILL_MS = 10_000;
/** The drain run must flush, close and exit on its own within this. */
const DRAIN_MS = 90_000;

/** How one child run ended. */
interface RunRecord {
  readonly plan: ChildPlan;
  readonly signal: NodeJS.Signals | null;
  /** Who sent the SIGKILL: the parent as planned, the parent's fallback, or the child itself. */
  readonly killedBy: 'parent' | 'fallback' | 'child' | 'none';
}

const nameOf = (tenantId: string, reportId: string): string => `${tenantId}|${reportId}`;
const nameOfSeq = (seq: number): string => nameOf(specFor(SEED, seq).tenantId, specFor(SEED, seq).reportId);

/** A child process in flight, and the parent's handle to kill it. */
class LiveChild {
  requests = 0;
  responses = 0;
  killedBy: 'parent' | 'fallback' | undefined;
  constructor(
    readonly plan: ChildPlan,
    readonly proc: ChildProcess,
  ) {}
  kill(by: 'parent' | 'fallback'): void {
    if (this.killedBy !== undefined || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.killedBy = by;
    this.proc.kill('SIGKILL');
  }
}

let tmp: ReturnType<typeof tempDir>;
let handler: IngestHandler;
let server: TestServer;
let live: LiveChild | undefined;
const uploads: SeenUpload[] = [];
const delivered = new Map<string, string[]>();
const runs: RunRecord[] = [];
const snapshots: Snapshot[] = [];
let journal: JournalEntry[] = [];

/** Records every upload (tagged with the run by its token) and kills the child on the k-th request or 2xx when planned. */
function observe(req: IncomingMessage, res: ServerResponse): void {
  const auth = /^Bearer run(\d+)-([ab])$/.exec(req.headers.authorization ?? '');
  if (auth !== null && req.method === 'POST') {
    const run = Number(auth[1]);
    const tenantId = auth[2] === 'a' ? 'tenant-a' : 'tenant-b';
    const index = req.headers['outpost-chunk-index'];
    uploads.push({ run, name: nameOf(tenantId, String(req.headers['outpost-report-id'])), index: typeof index === 'string' ? Number(index) : 0, key: String(req.headers['idempotency-key']) });
    const child = live;
    if (child !== undefined && child.plan.run === run) {
      if (child.plan.mode === 'request' && ++child.requests === child.plan.k) child.kill('parent');
      if (child.plan.mode === 'response') {
        res.once('finish', () => {
          if (res.statusCode < 300 && ++child.responses === child.plan.k) child.kill('parent');
        });
      }
    }
  }
  handler(req, res);
}

function planFor(run: number, random: () => number): ChildPlan {
  const mode = MODES[run % MODES.length] as Exclude<KillMode, 'drain'>;
  const k = {
    timer: 0,
    request: between(random, 1, 25),
    response: between(random, 1, 25),
    acked: between(random, 1, 25),
    inserted: between(random, 1, 40),
    streaming: between(random, 1, 600),
    cleanup: between(random, 1, 2),
    'mid-insert': between(random, 1, 2),
    'mid-commit': between(random, 1, 20),
    'mid-cleanup': between(random, 1, 2),
  }[mode];
  const delayMs = { timer: between(random, 0, 1200), 'mid-insert': random() * 1.5, 'mid-commit': random() * 0.5, 'mid-cleanup': random() * 12 }[mode as string] ?? 0;
  // Kill inside a vacuum that has work to do: completed reports and bodies pile up for the cleanup.
  const keep = mode === 'mid-cleanup';
  return {
    run,
    seed: SEED,
    mode,
    k,
    delayMs,
    cleanupOnReportComplete: !keep && random() < 0.6,
    autoCleanupOnUpload: !keep && random() < 0.6,
    // At 1 MiB most submissions first clean up and vacuum to make room; `mid-insert` wants the insert to be the next write.
    maxStorageMB: mode !== 'mid-insert' && random() < 0.5 ? 1 : 500,
    databasePath: join(tmp.dir, 'outbox', 'chunks.db'),
    journalPath: join(tmp.dir, 'journal.log'),
    url: server.url,
  };
}

async function runChild(plan: ChildPlan): Promise<RunRecord> {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], { cwd: ROOT, env: { ...process.env, [PLAN_ENV]: JSON.stringify(plan) }, stdio: ['ignore', 'pipe', 'pipe'] });
  const child = new LiveChild(plan, proc);
  live = child;
  let stderr = '';
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 20_000) stderr += d;
  });
  const timers: NodeJS.Timeout[] = [];
  let ready = false;
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
    if (ready || !d.includes('ready')) return;
    ready = true;
    if (plan.mode === 'timer') timers.push(setTimeout(() => child.kill('parent'), plan.delayMs));
  });
  timers.push(setTimeout(() => child.kill('fallback'), plan.mode === 'drain' ? DRAIN_MS : FALLBACK_KILL_MS));
  const [code, signal] = (await once(proc, 'close')) as [number | null, NodeJS.Signals | null];
  for (const t of timers) clearTimeout(t);
  live = undefined;
  const what = `run ${plan.run} (${plan.mode}, k=${plan.k}, ${REPLAY})`;
  if (plan.mode === 'drain') {
    if (child.killedBy !== undefined) throw new Error(`The drain ${what} did not flush, close and exit on its own within ${DRAIN_MS} ms\n${stderr}`);
    // Exit code 13: a top-level await never settled — flush() or close() waited with nothing left to wake it.
    if (code !== 0) throw new Error(`The drain ${what} failed with exit code ${String(code)} (signal ${String(signal)})${code === 13 ? ': flush() or close() never settled' : ''}\n${stderr}`);
  } else if (signal !== 'SIGKILL') {
    throw new Error(`The child ${what} ended by itself (exit code ${String(code)}, signal ${String(signal)}) instead of being killed\n${stderr}`);
  }
  const selfKilled = readJournal(plan.journalPath).some((e) => e.t === 'kill' && e.run === plan.run);
  const killedBy = child.killedBy ?? (selfKilled ? 'child' : 'none');
  return { plan, signal, killedBy };
}

describe('ChunkManager under SIGKILL', () => {
  beforeAll(async () => {
    tmp = tempDir();
    const tokens: Record<string, string> = {};
    for (let run = 0; run <= KILLS; run++) {
      tokens[tokenOf(run, 'tenant-a')] = 'tenant-a';
      tokens[tokenOf(run, 'tenant-b')] = 'tenant-b';
    }
    handler = createIngestHandler({
      store: ':memory:',
      authenticate: staticTokenAuthenticator(tokens),
      retryAfterSeconds: 0,
      onReport: (report, info) => {
        const name = nameOf(info.tenantId, info.reportId);
        delivered.set(name, [...(delivered.get(name) ?? []), summarize(report)]);
      },
    });
    handler.on('error', () => undefined); // killed clients leave broken requests behind
    server = await startServer(observe);
    const random = prng(SEED);
    const startedAt = Date.now();
    for (let run = 0; run < KILLS; run++) {
      runs.push(await runChild(planFor(run, random)));
      snapshots.push(snapshot(run, join(tmp.dir, 'outbox', 'chunks.db')));
    }
    runs.push(await runChild({ ...planFor(KILLS, random), mode: 'drain', cleanupOnReportComplete: true, autoCleanupOnUpload: true, maxStorageMB: 500 }));
    snapshots.push(snapshot(KILLS, join(tmp.dir, 'outbox', 'chunks.db')));
    // Closing waits for deliveries in flight: after it, `delivered` is final.
    await server.close();
    await handler.close();
    journal = readJournal(join(tmp.dir, 'journal.log'));

    const by = (m: KillMode) => runs.filter((r) => r.plan.mode === m).map((r) => r.killedBy[0]).join('');
    console.log(
      `crash test, ${REPLAY}: ${KILLS} kills in ${((Date.now() - startedAt) / 1000).toFixed(1)} s; ` +
        `${journal.filter((e) => e.t === 'resolved').length} submissions resolved (${journal.filter((e) => e.t === 'refused').length} refused as over maxStorageMB), ` +
        `${delivered.size} reports delivered, ${uploads.length} uploads; ` +
        `killed by (p)arent/(c)hild/(f)allback: ${MODES.filter((m) => by(m) !== '').map((m) => `${m} ${by(m)}`).join(', ')}`,
    );
  }, 60_000 + KILLS * 5_000);

  afterAll(async () => {
    live?.kill('fallback');
    await server?.close();
    await handler?.close();
    // OUTPOST_CRASH_KEEP=1 keeps the outbox file and the journal for a post-mortem.
    if (process.env.OUTPOST_CRASH_KEEP === undefined) tmp?.cleanup();
    else console.log(`crash test files kept in ${tmp?.dir}`);
  });

  it('delivers every report whose submitReport() resolved, complete and as submitted, once', () => {
    const promised = new Set(journal.filter((e) => e.t === 'resolved').map((e) => e.seq));
    expect(promised.size, REPLAY).toBeGreaterThan(0);
    const problems: string[] = [];
    for (const seq of promised) {
      const name = nameOfSeq(seq);
      const got = delivered.get(name) ?? [];
      if (got.length !== 1) problems.push(`${name} delivered ${got.length} times`);
      else if (got[0] !== summarize(buildReport(specFor(SEED, seq)))) problems.push(`${name} delivered with different content`);
    }
    const started = new Set(journal.flatMap((e) => (e.t === 'started' || e.t === 'resubmit' ? [nameOfSeq(e.seq)] : [])));
    for (const name of delivered.keys()) if (!started.has(name)) problems.push(`${name} delivered but never submitted`);
    expect(problems, REPLAY).toEqual([]);
  });

  it('sends every repeat of a chunk with the same idempotency key', () => {
    const keys = new Map<string, Set<string>>();
    for (const u of uploads) {
      const id = `${u.name}#${u.index}`;
      keys.set(id, (keys.get(id) ?? new Set()).add(u.key));
    }
    // A kill after the server's 2xx and before the row is marked must cause a repeat.
    if (runs.some((r) => r.plan.mode === 'acked')) expect(uploads.length - keys.size, `no chunk was ever sent twice; ${REPLAY}`).toBeGreaterThan(0);
    const mixed = [...keys].filter(([, k]) => k.size > 1).map(([id, k]) => `${id}: ${[...k].join(' / ')}`);
    expect(mixed, REPLAY).toEqual([]);
  });

  it('leaves a database that passes integrity_check and holds only consistent rows after every kill', () => {
    expect(snapshots).toHaveLength(KILLS + 1);
    const bad = snapshots.filter((s) => s.integrity.join() !== 'ok' || s.foreignKeyViolations > 0).map((s) => `after run ${s.afterRun}: ${s.integrity.join('; ')}; ${s.foreignKeyViolations} foreign key violations`);
    expect(bad, REPLAY).toEqual([]);
    expect(snapshots.flatMap((s) => s.problems), REPLAY).toEqual([]);
  });

  it('never brings back a deleted report, a completed report or an acknowledged chunk', () => {
    expect(snapshots.some((s) => s.reports.size > 0), `the outbox was never caught holding reports; ${REPLAY}`).toBe(true);
    expect(historyViolations(snapshots, uploads, journal, nameOfSeq), REPLAY).toEqual([]);
  });

  it('drains every stored chunk after the last restart, reports no failure, and exits on its own', () => {
    const last = snapshots[snapshots.length - 1] as Snapshot;
    expect([...last.reports.keys()], REPLAY).toEqual([]);
    expect(journal.filter((e) => e.t === 'drained'), REPLAY).toEqual([{ t: 'drained', run: KILLS, reports: 0, chunks: 0 }]);
    expect(journal.filter((e) => e.t === 'error' || e.t === 'dead'), REPLAY).toEqual([]);
    const started = new Set(journal.flatMap((e) => (e.t === 'started' || e.t === 'resubmit' ? [e.seq] : [])));
    const settled = new Set(journal.flatMap((e) => (e.t === 'resolved' || e.t === 'refused' ? [e.seq] : [])));
    expect([...started].filter((s) => !settled.has(s)), `interrupted submissions the drain did not finish; ${REPLAY}`).toEqual([]);
  });

  it(`kills the child ${KILLS} times, each planned kill moment at least once`, () => {
    const killed = runs.filter((r) => r.plan.mode !== 'drain');
    expect(killed.filter((r) => r.signal === 'SIGKILL')).toHaveLength(KILLS);
    const planned = new Set(killed.map((r) => r.plan.mode));
    const missed = [...planned].filter((m) => !killed.some((r) => r.plan.mode === m && r.killedBy === (PARENT_MODES.has(m) ? 'parent' : 'child')));
    expect(missed, `kill moments that never happened (their runs fell back to the parent's kill); ${REPLAY}`).toEqual([]);
  });
});
