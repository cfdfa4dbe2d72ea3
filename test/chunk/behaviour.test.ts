import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkManager, type ChunkDeadEvent, type ChunkManagerOptions } from '../../src/chunk/index.js';
import { ChunkError, InvalidArgumentError, UploadHttpError } from '../../src/errors.js';
import Database from 'better-sqlite3';
import { storeOf } from '../../src/chunk/chunk-manager.js';
import { badRequest, makeReport, ScriptedUploader, startManager, unavailable } from '../helpers/chunk.js';
import { tempDir } from '../helpers/ingest.js';

let tmp: ReturnType<typeof tempDir>;
let managers: ChunkManager[] = [];

afterEach(async () => {
  await Promise.all(managers.map((m) => m.close()));
  managers = [];
  tmp?.cleanup();
});

async function open(options: Partial<ChunkManagerOptions> = {}, up: ScriptedUploader = new ScriptedUploader(), fresh = true) {
  if (fresh) tmp = tempDir();
  const m = await startManager(tmp.dir, up, options);
  managers.push(m);
  return { m, up };
}

describe('ChunkManager submissions', () => {
  it('treats the same id with the same content as a no-op, and different content as a conflict', async () => {
    const up = new ScriptedUploader();
    up.fail = () => unavailable(3_600_000);
    const { m } = await open({}, up);
    const report = makeReport(3000, 10);
    const first = await m.submitReport(report, { tenantId: 't', reportId: 'r' });
    const again = await m.submitReport(structuredClone(report), { tenantId: 't', reportId: 'r' });
    expect(first.duplicate).toBe(false);
    expect(again).toEqual({ ...first, duplicate: true });
    expect(m.stats().chunks.pending.count + m.stats().chunks.uploading.count).toBe(first.totalChunks);
    const changed = makeReport(3000, 10);
    (changed.findings as { rule: string }[])[1234]!.rule = 'other';
    const err = await m.submitReport(changed, { tenantId: 't', reportId: 'r' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChunkError);
    expect(err).toMatchObject({ code: 'OUTPOST_REPORT_CONFLICT' });
    // Another tenant may use the same id.
    expect((await m.submitReport(changed, { tenantId: 'u', reportId: 'r' })).duplicate).toBe(false);
  });

  it('sees the same content as the same report whatever the chunk limits', async () => {
    tmp = tempDir();
    const report = makeReport(100, 5);
    const up = new ScriptedUploader();
    up.fail = () => unavailable(3_600_000);
    const a = await startManager(tmp.dir, up, { minFindingsForChunking: 1, maxFindingsPerChunk: 10 });
    const r1 = await a.submitReport(report, { tenantId: 't', reportId: 'same' });
    await a.close();
    const b = await startManager(tmp.dir, up, { minFindingsForChunking: 1, maxFindingsPerChunk: 30 });
    managers.push(b);
    const r2 = await b.submitReport(report, { tenantId: 't', reportId: 'same' });
    expect(r2).toMatchObject({ duplicate: true, totalChunks: r1.totalChunks });
  });

  it('generates a report id when none is given, and validates ids and priority', async () => {
    const { m } = await open({ cleanupOnReportComplete: false });
    const r = await m.submitReport(makeReport(1, 0), { tenantId: 't' });
    expect(r.reportId).toMatch(/^[0-9a-f-]{36}$/);
    await expect(m.submitReport(makeReport(1, 0), { tenantId: '../etc' })).rejects.toThrow(InvalidArgumentError);
    await expect(m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'a'.repeat(257) })).rejects.toThrow(/`reportId`/);
    await expect(m.submitReport(makeReport(1, 0), { tenantId: 't', priority: 1.5 })).rejects.toThrow(/`priority`/);
    await expect(m.submitReport([] as never, { tenantId: 't' })).rejects.toThrow(/must be an object/);
    await expect(m.submitReport({ findings: 'x' } as never, { tenantId: 't' })).rejects.toThrow(/`findings` must be an array/);
    const cyclic: Record<string, unknown> = { id: 1 };
    cyclic['self'] = cyclic;
    await expect(m.submitReport({ findings: [cyclic] }, { tenantId: 't' })).rejects.toThrow(/Finding 0 cannot be serialised/);
    await m.flush();
    expect(m.stats().reports).toEqual({ staging: 0, pending: 0, completed: 1, dead: 0 });
  });

  it('stores nothing when the signal aborts before the report is stored', async () => {
    const { m } = await open();
    const ac = new AbortController();
    const p = m.submitReport(makeReport(5000, 10), { tenantId: 't', reportId: 'aborted', signal: ac.signal });
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
    expect(m.getReport('t', 'aborted')).toBeUndefined();
    expect(m.stats().chunks.pending.count).toBe(0);
  });

  it('uploads by priority, then oldest first', async () => {
    const up = new ScriptedUploader();
    up.delayMs = 80;
    const { m } = await open({ maxConcurrentUploads: 1, uploadDelayMs: 0 }, up);
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'first', priority: 0 });
    await expect.poll(() => up.seen.length).toBe(1); // holds the only slot while the others queue
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'low-old', priority: 0 });
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'low-new', priority: 0 });
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'high', priority: 5 });
    await m.flush();
    expect(up.seen.map((s) => s.reportId)).toEqual(['first', 'high', 'low-old', 'low-new']);
  });
});

describe('ChunkManager failures', () => {
  it('marks a chunk the server refuses for good dead at once, the rest of its report too, and keeps uploading others', async () => {
    const up = new ScriptedUploader();
    up.fail = (u) => (u.reportId === 'bad' && u.index === 1 ? badRequest() : undefined);
    const { m } = await open({ minFindingsForChunking: 1, maxFindingsPerChunk: 1, maxConcurrentUploads: 1 }, up);
    const dead: ChunkDeadEvent[] = [];
    m.on('chunk-dead', (e) => dead.push(e));
    await m.submitReport(makeReport(4, 0), { tenantId: 't', reportId: 'bad' });
    await m.submitReport(makeReport(3, 0), { tenantId: 't', reportId: 'good' });
    await m.flush();
    expect(up.seen.filter((s) => s.reportId === 'bad' && s.index === 1)).toHaveLength(1); // no retry, no hot loop
    expect(up.seen.filter((s) => s.reportId === 'good')).toHaveLength(3);
    expect(dead.find((d) => d.index === 1)).toMatchObject({ reportId: 'bad', reason: 'rejected', error: expect.any(UploadHttpError) });
    expect(dead.filter((d) => d.reason === 'report-dead').map((d) => d.index).sort()).toEqual([2, 3]);
    expect(m.getReport('t', 'bad')).toMatchObject({ state: 'dead', deadReason: expect.stringMatching(/chunk 1 rejected/) });
  });

  it('reports an Uploader that throws a non-upload error and keeps the chunk on the long backoff', async () => {
    const up = new ScriptedUploader();
    up.fail = () => new TypeError('oops');
    const { m } = await open({ cleanupOnReportComplete: false, retryPolicy: { retryDelayMs: 5, maxRetryDelayMs: 60_000 } }, up);
    const errors: unknown[] = [];
    m.on('error', (e) => errors.push(e));
    const retries: string[] = [];
    m.on('chunk-retry', (e) => retries.push(e.phase));
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'x' });
    await expect.poll(() => retries).toEqual(['long']);
    expect(up.seen).toHaveLength(1);
    expect(errors).toContainEqual(expect.objectContaining({ code: 'OUTPOST_UPLOADER_FAILED' }));
    expect(m.getReport('t', 'x')?.chunks[0]).toMatchObject({ state: 'pending', attempts: 1 });
    expect(m.getReport('t', 'x')!.chunks[0]!.nextAttemptAt - Date.now()).toBeGreaterThan(20_000);
  });

  it('keeps chunks on the long backoff when the server refuses the token (401/403), and reports it', async () => {
    const up = new ScriptedUploader();
    up.fail = () => new UploadHttpError(401, { retryable: false, serverCode: 'OUTPOST_INGEST_UNAUTHORIZED' });
    const { m } = await open({ retryPolicy: { retryDelayMs: 5, maxRetryDelayMs: 60_000 } }, up);
    const errors: unknown[] = [];
    m.on('error', (e) => errors.push(e));
    const dead: unknown[] = [];
    m.on('chunk-dead', (e) => dead.push(e));
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'x' });
    await expect.poll(() => errors.length).toBe(1);
    expect(errors[0]).toMatchObject({ status: 401 });
    expect(dead).toEqual([]);
    expect(m.getReport('t', 'x')?.state).toBe('pending');
  });

  it('uploads each tenant through its own uploader', async () => {
    const a = new ScriptedUploader();
    const b = new ScriptedUploader();
    tmp = tempDir();
    const m = await startManager(tmp.dir, (tenant) => (tenant === 'a' ? a : b));
    managers.push(m);
    await m.submitReport(makeReport(1, 0), { tenantId: 'a', reportId: 'ra' });
    await m.submitReport(makeReport(1, 0), { tenantId: 'b', reportId: 'rb' });
    await m.flush();
    expect(a.seen.map((s) => s.reportId)).toEqual(['ra']);
    expect(b.seen.map((s) => s.reportId)).toEqual(['rb']);
  });

  it('puts chunks a crash left uploading back to pending on start', async () => {
    tmp = tempDir();
    const path = join(tmp.dir, 'chunks.db');
    const up = new ScriptedUploader();
    up.fail = () => unavailable(3_600_000);
    const first = await startManager(tmp.dir, up, { minFindingsForChunking: 1, maxFindingsPerChunk: 1 });
    await first.submitReport(makeReport(3, 0), { tenantId: 't', reportId: 'r' });
    await first.close();
    // What a SIGKILL mid-upload leaves behind.
    const db = new Database(path);
    db.prepare(`UPDATE chunks SET state = 'uploading', next_attempt_at = 0`).run();
    db.close();
    const ok = new ScriptedUploader();
    const second = await startManager(tmp.dir, ok);
    managers.push(second);
    await second.flush();
    expect(ok.seen.map((s) => s.index).sort()).toEqual([0, 1, 2]);
  });
});

describe('ChunkManager streaming', () => {
  it('stores nothing when the stream throws, and nothing when the signal aborts', async () => {
    const { m, up } = await open({ maxFindingsPerChunk: 10 });
    async function* failing() {
      for (let i = 0; i < 100; i++) yield { finding: { id: i } };
      throw new Error('scanner crashed');
    }
    await expect(m.submitReportStream({ tenantId: 't', reportId: 's1' }, failing())).rejects.toThrow('scanner crashed');
    const ac = new AbortController();
    async function* slow() {
      for (let i = 0; i < 100; i++) {
        if (i === 50) ac.abort(new Error('enough'));
        yield { finding: { id: i } };
      }
    }
    await expect(m.submitReportStream({ tenantId: 't', reportId: 's2', signal: ac.signal }, slow())).rejects.toThrow('enough');
    expect(m.stats().reports).toEqual({ staging: 0, pending: 0, completed: 0, dead: 0 });
    expect(m.stats().chunks.pending.count).toBe(0);
    await m.flush();
    expect(up.seen).toHaveLength(0);
  });

  it('refuses malformed stream items', async () => {
    const { m } = await open();
    await expect(m.submitReportStream({ tenantId: 't' }, [{ finding: 1 }, { nope: 2 } as never])).rejects.toThrow(/Stream item 1 must be \{ finding \} or \{ asset \}/);
    await expect(m.submitReportStream({ tenantId: 't' }, 5 as never)).rejects.toThrow(InvalidArgumentError);
  });

  it('sends a small stream whole, and a repeated stream is a no-op', async () => {
    const up = new ScriptedUploader();
    up.fail = () => unavailable(3_600_000);
    const { m } = await open({}, up);
    const items = [{ asset: { id: 'A' } }, { finding: { id: 1, assetId: 'A' } }];
    const r = await m.submitReportStream({ tenantId: 't', reportId: 's', metadata: { tool: 'x' } }, items);
    expect(r).toMatchObject({ chunked: false, totalChunks: 1, duplicate: false });
    expect((await m.submitReportStream({ tenantId: 't', reportId: 's', metadata: { tool: 'x' } }, items)).duplicate).toBe(true);
    await expect(m.submitReportStream({ tenantId: 't', reportId: 's', metadata: { tool: 'y' } }, items)).rejects.toMatchObject({ code: 'OUTPOST_REPORT_CONFLICT' });
    expect(m.stats().reports.pending).toBe(1);
  });

  it('gives a later finding the assets streamed before it, in its own chunk', async () => {
    const { m, up } = await open({ maxFindingsPerChunk: 2, maxAssetsPerChunk: 5 });
    const items = [{ asset: { id: 'A' } }, { asset: { id: 'B' } }, { finding: { id: 1 } }, { finding: { id: 2 } }, { finding: { id: 3, assetId: 'A' } }, { finding: { id: 4, assetIds: ['B', 'Z'] } }];
    const r = await m.submitReportStream({ tenantId: 't', reportId: 's' }, items);
    expect(r.totalChunks).toBe(2);
    await m.flush();
    const { zstdDecompress } = await import('../../src/internal/zstd.js');
    const chunks = await Promise.all([...up.seen].sort((a, b) => a.index - b.index).map(async (s) => JSON.parse((await zstdDecompress(Buffer.from(s.body))).toString())));
    expect(chunks[1].findings.map((f: { id: number }) => f.id)).toEqual([3, 4]);
    expect(chunks[1].assets.map((a: { id: string }) => a.id)).toEqual(['A', 'B']);
  });
});

describe('ChunkManager races', () => {
  it('never lets an upload still in flight for a deleted report touch a newer report', async () => {
    let clock = 1_000_000;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let releaseB!: () => void;
    const gateB = new Promise<void>((r) => (releaseB = r));
    const up = new ScriptedUploader();
    const seen: string[] = [];
    const gated = {
      uploadChunk: async (...a: Parameters<ScriptedUploader['uploadChunk']>) => {
        seen.push(`${a[0].reportId}#${a[0].index}`);
        await (a[0].reportId === 'A' ? gate : gateB);
        return up.uploadChunk(...a);
      },
      uploadReport: async (...a: Parameters<ScriptedUploader['uploadReport']>) => {
        seen.push(`${a[0].reportId}#0`);
        await (a[0].reportId === 'A' ? gate : gateB);
        return up.uploadReport(...a);
      },
    };
    tmp = tempDir();
    const m = await startManager(tmp.dir, gated, { retentionHours: 1, now: () => clock, cleanupIntervalMinutes: 0 });
    managers.push(m);
    const events: string[] = [];
    m.on('chunk-uploaded', (e) => events.push(`uploaded ${e.reportId}`));
    m.on('report-completed', (e) => events.push(`completed ${e.reportId}`));
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'A' });
    await expect.poll(() => seen).toEqual(['A#0']);
    clock += 2 * 3_600_000; // A expires while its upload hangs
    await m.cleanup();
    await m.cleanupToSize(0); // and its dead rows are deleted
    expect(m.getReport('t', 'A')).toBeUndefined();
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'B' });
    await expect.poll(() => seen).toContain('B#0'); // B's chunk is uploading, perhaps under A's old ids
    release(); // A's late 201 arrives
    await new Promise((r) => setTimeout(r, 50));
    expect(events).toEqual([]);
    expect(m.getReport('t', 'B')?.chunks[0]).toMatchObject({ state: 'uploading' });
    releaseB();
    await m.flush();
    expect(events).toEqual(['uploaded B', 'completed B']);
  });

  it('revives a dead report when the same content is submitted again', async () => {
    const up = new ScriptedUploader();
    up.fail = (_u, attempt) => (attempt === 1 ? badRequest() : undefined);
    const { m } = await open({ cleanupOnReportComplete: false }, up);
    await m.submitReport(makeReport(2, 0), { tenantId: 't', reportId: 'r' });
    await m.flush();
    expect(m.getReport('t', 'r')?.state).toBe('dead');
    const again = await m.submitReport(makeReport(2, 0), { tenantId: 't', reportId: 'r' });
    expect(again.duplicate).toBe(false);
    await m.flush();
    expect(m.getReport('t', 'r')?.state).toBe('completed');
    expect(up.seen).toHaveLength(2);
  });

  it('records an acknowledged upload once the database takes writes again, without uploading it twice', async () => {
    const { m, up } = await open({ cleanupOnReportComplete: false });
    const errors: unknown[] = [];
    m.on('error', (e) => errors.push(e));
    const s = storeOf(m)!.s as unknown as { markUploaded: { run: (...a: unknown[]) => { changes: number } } };
    const real = s.markUploaded;
    let failures = 2;
    s.markUploaded = {
      run: (...a: unknown[]) => {
        if (failures-- > 0) throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
        return real.run(...a);
      },
    };
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'r' });
    await expect.poll(() => m.getReport('t', 'r')?.state, { timeout: 8000 }).toBe('completed');
    expect(up.seen).toHaveLength(1);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'OUTPOST_DISK_FULL' });
  });

  it('resolves a waiting flush() when cleanup gives up the last pending chunks', async () => {
    let clock = 1_000_000;
    const up = new ScriptedUploader();
    up.fail = () => unavailable(3_600_000);
    const { m } = await open({ retentionHours: 1, now: () => clock, cleanupIntervalMinutes: 0 }, up);
    await m.submitReport(makeReport(1, 0), { tenantId: 't' });
    await expect.poll(() => up.seen.length).toBe(1);
    const flushed = m.flush();
    clock += 2 * 3_600_000;
    await m.cleanup();
    await flushed;
    expect(m.stats().chunks.dead.count).toBe(1);
  });
});
