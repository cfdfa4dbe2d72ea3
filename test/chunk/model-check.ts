/**
 * The real side of the model-based ChunkManager test: a manager on a SQLite
 * file with a held uploader and a test clock, how the test waits for it to
 * settle after a step, and the comparison with the model after every step.
 */
import { setImmediate as nextTurn, setTimeout as sleepMs } from 'node:timers/promises';
import { expect } from 'vitest';
import { ChunkManager } from '../../src/chunk/index.js';
import { zstdDecompress } from '../../src/internal/zstd.js';
import { IDS, keyOf, line, reportOf, RETENTION_HOURS, RETRY_POLICY, HOUR_MS, TENANTS, type ContentSpec, type Model, type ModelReport, type RunConfig } from './model-state.js';
import type { HeldCall, HeldUploader } from './model-uploader.js';

/** The system under test and the world around it. */
export interface Real {
  readonly dbPath: string;
  readonly cfg: RunConfig;
  readonly uploader: HeldUploader;
  manager: ChunkManager;
  clock: number;
  /** Events of the current manager since the last comparison. */
  events: string[];
  /** What the "server" acknowledged: report incarnation → chunk index → the call. */
  readonly server: Map<number, Map<number, HeldCall>>;
  /** Total chunks per content and path, learned from the first receipt (splitting is deterministic). */
  readonly totals: Map<string, number>;
  /** Content digest per content, learned from the first `getReport()`. */
  readonly digests: Map<ContentSpec, string>;
}

/** Opens (and starts) a manager on `real`'s database, logging its events as model lines; resolves once its start-up cleanup ran. */
export async function openManager(real: Real): Promise<ChunkManager> {
  const { cfg } = real;
  const manager = new ChunkManager({
    uploader: (tenantId) => real.uploader.for(tenantId),
    databasePath: real.dbPath,
    now: () => real.clock,
    retentionHours: RETENTION_HOURS,
    cleanupIntervalMinutes: 0,
    uploadDelayMs: 0,
    minFindingsForChunking: 20,
    maxFindingsPerChunk: 10,
    retryPolicy: RETRY_POLICY,
    ...cfg,
  });
  const log = (s: string): void => void real.events.push(s);
  manager.on('chunk-created', (e) => log(line.created(e.tenantId, e.reportId, e.index, e.total)));
  manager.on('chunk-uploaded', (e) => log(line.uploaded(e.tenantId, e.reportId, e.index, e.attempts, e.status)));
  manager.on('chunk-retry', (e) => log(line.retry(e.tenantId, e.reportId, e.index, e.attempt, e.phase, e.delayMs)));
  manager.on('chunk-dead', (e) => log(line.dead(e.tenantId, e.reportId, e.index, e.reason)));
  manager.on('report-completed', (e) => log(line.completed(e.tenantId, e.reportId, e.totalChunks, e.durationMs)));
  manager.on('storage-full', (e) => log(`storage-full rejected=${e.rejected}`));
  manager.on('error', (e) => log(`error ${e.code}: ${e.message}`));
  await manager.start();
  // A barrier: cleanups run one at a time, so this resolves after the start-up cleanup. It removes nothing.
  await manager.cleanupToSize(Number.MAX_SAFE_INTEGER);
  return manager;
}

/** Waits until the manager made the uploads the model expects (retry timers are real, 1–4 ms), then lets microtasks finish. */
export async function settle(m: Model, r: Real): Promise<void> {
  await nextTurn();
  const deadline = Date.now() + 250;
  while (r.uploader.calls.length !== m.inFlight.length && Date.now() < deadline) await sleepMs(1);
  await nextTurn();
  await nextTurn();
}

const callRef = (c: { tenantId: string; reportId: string; index: number }): string => `${keyOf(c.tenantId, c.reportId)}#${c.index}`;

/** Matches the uploader's calls with the model's uploads in flight: old ones by position, new ones (at the end) as a multiset. */
function alignCalls(m: Model, r: Real): void {
  const calls = r.uploader.calls;
  const got = calls.map(callRef);
  const want = m.inFlight.map((f) => callRef({ tenantId: f.report.tenantId, reportId: f.report.reportId, index: f.index }));
  const firstFresh = m.inFlight.findIndex((f) => f.fresh);
  const old = firstFresh < 0 ? m.inFlight.length : firstFresh;
  expect(m.inFlight.slice(old).every((f) => f.fresh), 'claims are the last uploads').toBe(true);
  expect([...got.slice(0, old), ...got.slice(old).sort()], `uploads in flight (model: ${m.describeInFlight()})`).toEqual([...want.slice(0, old), ...want.slice(old).sort()]);
  const fresh = m.inFlight.slice(old);
  m.inFlight = [
    ...m.inFlight.slice(0, old),
    ...calls.slice(old).map((c) => {
      const at = fresh.findIndex((f) => f.report.tenantId === c.tenantId && f.report.reportId === c.reportId && f.index === c.index);
      const [f] = fresh.splice(at, 1);
      return f as (typeof fresh)[number];
    }),
  ];
  m.inFlight.forEach((f, i) => {
    f.fresh = false;
    const c = calls[i] as HeldCall;
    expect(c.kind, `${callRef(c)} goes to the endpoint of its kind`).toBe(f.report.content.chunked ? 'chunk' : 'report');
    expect(c.total).toBe(f.report.total);
  });
}

/** The server's copy of a completed report, put back together: findings in order, assets by id (the first copy wins, as on the server), metadata. */
async function reassemble(calls: readonly HeldCall[]): Promise<{ metadata: unknown; findings: unknown[]; assets: unknown[] }> {
  const out = { metadata: undefined as unknown, findings: [] as unknown[], assets: [] as unknown[] };
  for (const call of calls) {
    const json = call.encoding === 'zstd' ? await zstdDecompress(call.body) : call.body;
    const part = JSON.parse(json.toString('utf8')) as { metadata?: unknown; findings: unknown[]; assets: unknown[] };
    if (call.index === 0) out.metadata = part.metadata;
    out.findings.push(...part.findings);
    for (const asset of part.assets) if (!out.assets.some((a) => (a as { id: unknown }).id === (asset as { id: unknown }).id)) out.assets.push(asset);
  }
  out.assets.sort((a, b) => String((a as { id: string }).id).localeCompare(String((b as { id: string }).id)));
  return out;
}

/** "No report lost": a report the outbox calls complete is wholly on the server, with its content. */
async function checkServerCopy(r: Real, report: ModelReport, why: string): Promise<void> {
  const got = r.server.get(report.uid) ?? new Map<number, HeldCall>();
  const indices = [...got.keys()].sort((a, b) => a - b);
  expect(indices, `${why}: the server must hold every chunk of ${keyOf(report.tenantId, report.reportId)}`).toEqual(Array.from({ length: report.total }, (_, i) => i));
  if (report.verified) return;
  report.verified = true;
  const copy = await reassemble(indices.map((i) => got.get(i) as HeldCall));
  const sent = reportOf(report.content);
  expect(copy.findings).toEqual(sent.findings);
  expect(copy.metadata).toEqual(sent.metadata);
  expect(copy.assets).toEqual([...(sent.assets ?? [])].sort((a, b) => String((a as { id: string }).id).localeCompare(String((b as { id: string }).id))));
}

/**
 * Compares the manager with the model after a step: the server's copy of every report it called
 * complete, `getReport()` of every id, `stats()`, the step's events, and the uploads in flight.
 */
export async function compare(m: Model, r: Real): Promise<void> {
  // Any completion the manager announced must be backed by the server's copy.
  for (const e of r.events) {
    const match = /^completed (\S+)\/(\S+) /.exec(e);
    if (match === null) continue;
    const incarnation = m.accepted.findLast((a) => a.tenantId === match[1] && a.reportId === match[2]);
    if (incarnation !== undefined) await checkServerCopy(r, incarnation, `the manager emitted '${e}'`);
  }
  for (const tenantId of TENANTS) {
    for (const reportId of IDS) {
      const want = m.reports.get(keyOf(tenantId, reportId));
      const got = r.manager.getReport(tenantId, reportId);
      if (want === undefined) {
        expect(got, `${keyOf(tenantId, reportId)} is not stored`).toBeUndefined();
        continue;
      }
      expect(got, `${keyOf(tenantId, reportId)} is stored`).toBeDefined();
      if (got === undefined) continue;
      const digest = r.digests.get(want.content) ?? got.contentSha256;
      r.digests.set(want.content, digest);
      expect(
        { ...got, deadReason: got.deadReason, chunks: got.chunks.map((c) => ({ index: c.index, state: c.state, attempts: c.attempts, nextAttemptAt: c.nextAttemptAt, hasBody: c.hasBody })) },
        `getReport(${keyOf(tenantId, reportId)})`,
      ).toMatchObject({
        state: want.state,
        chunked: want.content.chunked,
        totalChunks: want.total,
        priority: want.priority,
        createdAt: want.createdAt,
        contentSha256: digest,
        deadReason: want.deadReason,
        chunks: m.chunkView(want).map((c) => ({ ...c, hasBody: c.hasBody === 'either' ? expect.any(Boolean) : c.hasBody })),
      });
    }
  }

  const live = [...m.reports.values()];
  const count = <T>(xs: readonly T[], p: (x: T) => boolean): number => xs.filter(p).length;
  const views = live.flatMap((x) => m.chunkView(x));
  const stats = r.manager.stats();
  expect({
    chunks: { pending: stats.chunks.pending.count, uploading: stats.chunks.uploading.count, uploaded: stats.chunks.uploaded.count, dead: stats.chunks.dead.count },
    reports: stats.reports,
    uploadsInFlight: stats.uploadsInFlight,
  }, 'stats()').toEqual({
    chunks: Object.fromEntries((['pending', 'uploading', 'uploaded', 'dead'] as const).map((s) => [s, count(views, (v) => v.state === s)])),
    reports: { staging: 0, pending: count(live, (x) => x.state === 'pending'), completed: count(live, (x) => x.state === 'completed'), dead: count(live, (x) => x.state === 'dead') },
    uploadsInFlight: m.inFlight.length,
  });

  // Every accepted report is pending, or completed with the server holding all of it, or dead for an allowed reason.
  for (const a of m.accepted) {
    if (a.state === 'completed') await checkServerCopy(r, a, 'a completed report');
    if (a.state === 'dead') {
      expect(a.cause === 'rejected' || (a.cause === 'expired' && m.clock >= a.createdAt + RETENTION_HOURS * HOUR_MS), `${keyOf(a.tenantId, a.reportId)} died for a reason`).toBe(true);
    }
    if (a.deleted) expect(a.state === 'completed' || a.state === 'dead', 'only finished reports are deleted').toBe(true);
  }

  // Events: every expected one, plus any of the optional ones (late answers, see Model.lateAnswers), nothing else.
  const extra = [...r.events];
  const missing = m.expected.filter((e) => {
    const at = extra.indexOf(e);
    if (at >= 0) extra.splice(at, 1);
    return at < 0;
  });
  const optional = [...m.optional];
  const unexpected = extra.filter((e) => {
    const at = optional.indexOf(e);
    if (at >= 0) optional.splice(at, 1);
    return at < 0;
  });
  expect({ missing, unexpected }, `events of the step (all: ${JSON.stringify(r.events)})`).toEqual({ missing: [], unexpected: [] });
  r.events = [];
  m.expected = [];
  m.optional = [];

  // Last, as it re-orders the model's uploads in flight to the uploader's order.
  alignCalls(m, r);
}

