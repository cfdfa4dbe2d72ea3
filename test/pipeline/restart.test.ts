/**
 * Nothing submitted before a stop is lost across processes: a child agent's
 * server is down, its pipeline is stopped and the child exits (or is killed
 * with SIGKILL right after the stop); a new outbox on the same database,
 * pointed at a working ingest server, delivers every report.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkManager } from '../../src/chunk/index.js';
import { makeReport } from '../helpers/chunk.js';
import { answer, readAll, startServer, type TestServer } from '../helpers/http.js';
import { startIngest, tempDir, type IngestFixture } from '../helpers/ingest.js';
import type { RestartPlan, StoppedLine } from './fixtures/restart-child.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/restart-child.ts', import.meta.url));
const PLAN_ENV = 'OUTPOST_RESTART_PLAN';
/** A child that has not printed its line and exited (or been killed) by then is killed, and the test fails. */
const CHILD_DEADLINE_MS = 15_000;
const K = 8;

let tmp: ReturnType<typeof tempDir> | undefined;
let fixture: IngestFixture | undefined;
let down: TestServer | undefined;
let outbox: ChunkManager | undefined;

afterEach(async () => {
  await outbox?.close();
  await down?.close();
  await fixture?.close();
  tmp?.cleanup();
  outbox = undefined;
  down = undefined;
  fixture = undefined;
  tmp = undefined;
});

/** The K reports the child submits, with known ids. */
function reports(prefix: string): RestartPlan['reports'] {
  return Array.from({ length: K }, (_, i) => ({ id: `${prefix}-${i}`, report: { ...makeReport(2 + i, 2), scan: { seq: i } } }));
}

/** A URL where nothing listens: a port that was just bound and released. */
async function deadUrl(): Promise<string> {
  const s = await startServer(() => undefined);
  await s.close();
  return s.url;
}

interface ChildRun {
  readonly line: StoppedLine | undefined;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
}

/** Runs the child; with `killOnStopped`, SIGKILLs it as soon as it printed that stop() resolved. */
async function runChild(plan: RestartPlan, killOnStopped: boolean): Promise<ChildRun> {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], { cwd: ROOT, env: { ...process.env, [PLAN_ENV]: JSON.stringify(plan) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 20_000) stderr += d;
  });
  let line: StoppedLine | undefined;
  createInterface({ input: proc.stdout }).on('line', (text) => {
    const parsed = JSON.parse(text) as StoppedLine;
    if (parsed.t !== 'stopped') return;
    line = parsed;
    if (killOnStopped) proc.kill('SIGKILL');
  });
  const fallback = setTimeout(() => proc.kill('SIGKILL'), CHILD_DEADLINE_MS);
  const [code, signal] = (await once(proc, 'close')) as [number | null, NodeJS.Signals | null];
  clearTimeout(fallback);
  return { line, code, signal, stderr };
}

/** What the child's pipeline must have done: attempted the uploads, then spilled every report at the stop, none failed. */
function expectAllSpilled(run: ChildRun, plan: RestartPlan): void {
  expect(run.line, run.stderr).toBeDefined();
  const line = run.line as StoppedLine;
  const ids = plan.reports.map((r) => r.id).sort();
  expect(line.started).toBeGreaterThanOrEqual(K);
  expect([...line.retried].sort()).toEqual(ids);
  expect(line.failed).toEqual([]);
  expect(line.completed).toEqual([]);
  expect(line.spilled.map((s) => s.id).sort()).toEqual(ids);
  expect(line.spilled.every((s) => s.reason === 'stopped' && !s.chunked)).toBe(true);
}

/** Opens a new outbox on `databasePath` whose uploader reaches the working ingest server, and waits until every report was delivered. */
async function restartAndDeliver(databasePath: string, plan: RestartPlan): Promise<void> {
  const f = fixture as IngestFixture;
  const ids = plan.reports.map((r) => r.id);
  const all = new Promise<void>((resolve) => {
    const check = (): void => {
      if (!ids.every((id) => f.delivered.some((d) => d.info.reportId === id))) return;
      f.handler.off('delivered', check);
      resolve();
    };
    f.handler.on('delivered', check);
  });
  outbox = new ChunkManager({ uploader: f.client(), databasePath, uploadDelayMs: 0, retryPolicy: { retryDelayMs: 10, maxRetryDelayMs: 50 } });
  outbox.on('error', () => undefined);
  await outbox.start();
  await outbox.flush();
  await all;
  for (const { id, report } of plan.reports) {
    const got = f.delivered.filter((d) => d.info.reportId === id);
    expect(got, id).toHaveLength(1);
    expect(got[0]?.info.tenantId).toBe('tenant-a');
    expect(got[0]?.report, id).toEqual(report);
  }
  expect(f.delivered).toHaveLength(K);
}

describe('UploadPipeline with an outbox, across a restart', () => {
  it('delivers every report submitted before the stop after a new process opens the outbox', async () => {
    tmp = tempDir();
    fixture = await startIngest({ retryAfterSeconds: 0 });
    const plan: RestartPlan = { databasePath: join(tmp.dir, 'outbox', 'chunks.db'), url: await deadUrl(), reports: reports('exit'), linger: false };
    const run = await runChild(plan, false);
    expect({ code: run.code, signal: run.signal }, run.stderr).toEqual({ code: 0, signal: null }); // exited on its own after close()
    expectAllSpilled(run, plan);
    expect(fixture.delivered).toEqual([]);
    await restartAndDeliver(plan.databasePath, plan);
  });

  it('delivers every report when the process is killed with SIGKILL right after stop() resolved', async () => {
    tmp = tempDir();
    fixture = await startIngest({ retryAfterSeconds: 0 });
    let refused = 0;
    down = await startServer((req, res) => {
      refused++;
      void readAll(req).then(() => answer(res, 503, { error: { code: 'OUTPOST_INGEST_UNAVAILABLE', message: 'down' } }));
    });
    const plan: RestartPlan = { databasePath: join(tmp.dir, 'outbox', 'chunks.db'), url: down.url, reports: reports('killed'), linger: true };
    const run = await runChild(plan, true);
    expect(run.signal, run.stderr).toBe('SIGKILL');
    expectAllSpilled(run, plan);
    expect(refused).toBeGreaterThanOrEqual(K);
    expect(fixture.delivered).toEqual([]);
    await restartAndDeliver(plan.databasePath, plan);
  });
});
