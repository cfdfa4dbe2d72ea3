import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkManager, chunkManagerDefaults, resolveChunkManagerOptions, type ChunkManagerOptions, type CleanupResult, type ChunkRetryEvent } from '../../src/chunk/index.js';
import { ChunkError, InvalidOptionError, StorageFullError } from '../../src/errors.js';
import { zstdDecompress } from '../../src/internal/zstd.js';
import { makeReport, ScriptedUploader, startManager, unavailable, type SeenUpload } from '../helpers/chunk.js';
import { tempDir } from '../helpers/ingest.js';

const uploader = new ScriptedUploader();
let tmp: ReturnType<typeof tempDir>;
let managers: ChunkManager[] = [];

afterEach(async () => {
  await Promise.all(managers.map((m) => m.close()));
  managers = [];
  tmp?.cleanup();
});

async function open(options: Partial<ChunkManagerOptions> = {}, up: ScriptedUploader = new ScriptedUploader()) {
  tmp = tempDir();
  const m = await startManager(tmp.dir, up, options);
  managers.push(m);
  return { m, up };
}

/** ~120 kB of incompressible findings. */
function noisy() {
  return { findings: Array.from({ length: 300 }, (_, i) => ({ id: i, blob: randomBytes(300).toString('base64') })) };
}

async function bodies(seen: readonly SeenUpload[]): Promise<{ findings: unknown[]; assets: { id: string }[]; metadata?: unknown }[]> {
  return Promise.all(seen.map(async (s) => JSON.parse((await zstdDecompress(Buffer.from(s.body))).toString('utf8'))));
}

describe('ChunkManager options: validation', () => {
  const base = { uploader };
  const bad: [keyof ChunkManagerOptions, unknown, RegExp][] = [
    ['minFindingsForChunking', 0, /`minFindingsForChunking`.*positive integer.*got 0/],
    ['minAssetsForChunking', 1.5, /`minAssetsForChunking`/],
    ['minSizeForChunkingBytes', -1, /`minSizeForChunkingBytes`/],
    ['maxFindingsPerChunk', 0, /`maxFindingsPerChunk`/],
    ['maxAssetsPerChunk', '100', /`maxAssetsPerChunk`.*"100" \(string\)/],
    ['maxChunkSizeBytes', 10, /`maxChunkSizeBytes`.*from 64/],
    ['uploadDelayMs', -5, /`uploadDelayMs`/],
    ['maxConcurrentUploads', 0, /`maxConcurrentUploads`/],
    ['maxRetries', -1, /`maxRetries`/],
    ['databasePath', '', /`databasePath`.*non-empty string/],
    ['retentionHours', 0, /`retentionHours`/],
    ['maxStorageMB', 0, /`maxStorageMB`/],
    ['compressionLevel', 23, /`compressionLevel`.*1 to 22/],
    ['autoCleanupOnUpload', 'yes', /`autoCleanupOnUpload`.*boolean/],
    ['cleanupOnReportComplete', 1, /`cleanupOnReportComplete`.*boolean/],
    ['cleanupIntervalMinutes', -1, /`cleanupIntervalMinutes`/],
    ['cleanupIntervalMinutes', 0.001, /`cleanupIntervalMinutes`.*one second/],
    ['aggressiveCleanup', null, /`aggressiveCleanup`.*boolean/],
    ['onStorageFull', 'drop-newest', /`onStorageFull`.*'reject' or 'drop-oldest'/],
    ['retryPolicy', 5, /`retryPolicy`/],
    ['findingAssetIds', 'assetId', /`findingAssetIds`.*function/],
    ['now', 0, /`now`.*function/],
  ];
  it.each(bad)('rejects %s = %j with a message naming it', (key, value, message) => {
    expect(() => new ChunkManager({ ...base, [key]: value } as ChunkManagerOptions)).toThrow(InvalidOptionError);
    expect(() => new ChunkManager({ ...base, [key]: value } as ChunkManagerOptions)).toThrow(message);
  });

  it('rejects a missing uploader, unknown keys and nested retry policy mistakes', () => {
    expect(() => new ChunkManager({} as ChunkManagerOptions)).toThrow(/`uploader`/);
    expect(() => new ChunkManager({ uploader, maxRetry: 3 } as unknown as ChunkManagerOptions)).toThrow(/Unknown option `maxRetry`/);
    expect(() => new ChunkManager({ uploader, retryPolicy: { retryDelayMs: -1 } })).toThrow(/`retryDelayMs`/);
  });

  it('fills the documented defaults', () => {
    const o = resolveChunkManagerOptions({ uploader });
    expect(o).toMatchObject({
      minFindingsForChunking: 2000,
      minAssetsForChunking: 200,
      minSizeForChunkingBytes: 5 * 1024 * 1024,
      maxFindingsPerChunk: 500,
      maxAssetsPerChunk: 100,
      maxChunkSizeBytes: 2 * 1024 * 1024,
      uploadDelayMs: 100,
      maxConcurrentUploads: 2,
      maxRetries: 3,
      retentionHours: 24,
      maxStorageMB: 500,
      compressionLevel: 3,
      autoCleanupOnUpload: true,
      cleanupOnReportComplete: true,
      cleanupIntervalMinutes: 15,
      aggressiveCleanup: true,
      onStorageFull: 'reject',
    });
    expect(o.databasePath).toBe(chunkManagerDefaults.databasePath);
    expect(o.databasePath).toMatch(/\.outpost[/\\]chunks\.db$/);
    expect(o.uploaderFor('t')).toBe(uploader);
  });
});

describe('ChunkManager options: behaviour', () => {
  it('minFindingsForChunking: chunks at the threshold, sends whole below it', async () => {
    const { m } = await open({ minFindingsForChunking: 50, maxFindingsPerChunk: 20 });
    expect(m.needsChunking(makeReport(49, 0))).toBe(false);
    expect(m.needsChunking(makeReport(50, 0))).toBe(true);
    expect(await m.submitReport(makeReport(49, 0), { tenantId: 't' })).toMatchObject({ chunked: false, totalChunks: 1 });
    expect(await m.submitReport(makeReport(50, 0), { tenantId: 't' })).toMatchObject({ chunked: true, totalChunks: 3 });
  });

  it('minAssetsForChunking: chunks at the threshold', async () => {
    const { m } = await open({ minAssetsForChunking: 10, maxAssetsPerChunk: 4 });
    expect(m.needsChunking(makeReport(0, 9))).toBe(false);
    expect(await m.submitReport(makeReport(0, 10), { tenantId: 't' })).toMatchObject({ chunked: true, totalChunks: 3 });
  });

  it('minSizeForChunkingBytes: chunks a report of few items once its JSON reaches the size', async () => {
    const { m } = await open({ minSizeForChunkingBytes: 10_000, maxFindingsPerChunk: 5 });
    expect(m.needsChunking(makeReport(10, 0, 500))).toBe(false); // ~5.8 kB
    expect(m.needsChunking(makeReport(10, 0, 1200))).toBe(true); // ~12.8 kB
  });

  it('maxFindingsPerChunk: no chunk holds more, and findings stay in order', async () => {
    const { m, up } = await open({ minFindingsForChunking: 1, maxFindingsPerChunk: 7 });
    const report = makeReport(30, 0);
    const r = await m.submitReport(report, { tenantId: 't' });
    expect(r.totalChunks).toBe(5);
    await m.flush();
    const got = (await bodies([...up.seen].sort((a, b) => a.index - b.index)));
    expect(got.map((b) => b.findings.length)).toEqual([7, 7, 7, 7, 2]);
    expect(got.flatMap((b) => b.findings)).toEqual(report.findings);
    expect(got[0]!.metadata).toEqual(report.metadata);
    expect(got.slice(1).every((b) => b.metadata === undefined)).toBe(true);
  });

  it('maxAssetsPerChunk: no chunk holds more; each chunk carries the assets its findings refer to', async () => {
    const { m, up } = await open({ minFindingsForChunking: 1, maxFindingsPerChunk: 100, maxAssetsPerChunk: 3 });
    const report = makeReport(20, 10); // finding i → asset i % 10
    await m.submitReport(report, { tenantId: 't' });
    await m.flush();
    for (const b of await bodies(up.seen)) {
      expect(b.assets.length).toBeLessThanOrEqual(3);
      const ids = new Set(b.assets.map((a) => a.id));
      for (const f of b.findings as { assetId: string }[]) expect(ids.has(f.assetId)).toBe(true);
    }
  });

  it('maxAssetsPerChunk: a finding referring to more assets than fit is a typed error', async () => {
    const { m } = await open({ minFindingsForChunking: 1, maxAssetsPerChunk: 2 });
    const report = { findings: [{ id: 'F', assetIds: ['a', 'b', 'c'] }], assets: [{ id: 'a' }, { id: 'b' }, { id: 'c' }] };
    await expect(m.submitReport(report, { tenantId: 't' })).rejects.toMatchObject({ code: 'OUTPOST_CHUNK_ITEM_TOO_LARGE', message: expect.stringMatching(/3 assets.*`maxAssetsPerChunk` \(2\)/) });
    expect(m.stats().chunks.pending.count).toBe(0);
  });

  it('maxChunkSizeBytes: every chunk fits, a report over it is chunked, an item over it is refused', async () => {
    const { m, up } = await open({ maxChunkSizeBytes: 4096 });
    const report = makeReport(40, 4, 200); // ~12 kB, under every count threshold
    expect(m.needsChunking(report)).toBe(true);
    const r = await m.submitReport(report, { tenantId: 't' });
    expect(r.chunked).toBe(true);
    await m.flush();
    const sizes = await Promise.all(up.seen.map(async (s) => (await zstdDecompress(Buffer.from(s.body))).length));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(4096);
    const err = await m.submitReport(makeReport(1, 0, 5000), { tenantId: 't' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChunkError);
    expect(err).toMatchObject({ code: 'OUTPOST_CHUNK_ITEM_TOO_LARGE', message: expect.stringMatching(/Finding 0 takes \d+ bytes/) });
  });

  it('uploadDelayMs: each worker pauses between uploads', async () => {
    const { m, up } = await open({ uploadDelayMs: 120, maxConcurrentUploads: 1, minFindingsForChunking: 1, maxFindingsPerChunk: 1 });
    await m.submitReport(makeReport(4, 0), { tenantId: 't' });
    await m.flush();
    const at = up.seen.map((s) => s.at);
    expect(at).toHaveLength(4);
    for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(115);
  });

  it('maxConcurrentUploads: never more uploads in flight', async () => {
    const up = new ScriptedUploader();
    up.delayMs = 30;
    const { m } = await open({ maxConcurrentUploads: 3, minFindingsForChunking: 1, maxFindingsPerChunk: 1 }, up);
    await m.submitReport(makeReport(12, 0), { tenantId: 't' });
    await m.flush();
    expect(up.seen).toHaveLength(12);
    expect(up.maxInFlight).toBe(3);
  });

  it('maxRetries: quick retries first, then the long backoff — the chunk is not dropped', async () => {
    const up = new ScriptedUploader();
    up.fail = (_u, attempt) => (attempt <= 5 ? unavailable() : undefined);
    const { m } = await open({ maxRetries: 2, retryPolicy: { retryDelayMs: 5, maxRetryDelayMs: 20 } }, up);
    const retries: ChunkRetryEvent[] = [];
    m.on('chunk-retry', (e) => retries.push(e));
    await m.submitReport(makeReport(1, 0), { tenantId: 't' });
    await m.flush();
    expect(retries.map((r) => r.phase)).toEqual(['quick', 'quick', 'long', 'long', 'long']);
    expect(retries.filter((r) => r.phase === 'long').every((r) => r.delayMs >= 10 && r.delayMs <= 20)).toBe(true);
    expect(m.stats().chunks.dead.count).toBe(0);
  });

  it('databasePath: the file is created 0600 in a 0700 directory', async () => {
    tmp = tempDir();
    const path = join(tmp.dir, 'nested', 'deeper', 'outbox.db');
    const m = new ChunkManager({ uploader, databasePath: path });
    managers.push(m);
    await m.start();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(tmp.dir, 'nested', 'deeper')).mode & 0o777).toBe(0o700);
  });

  it('retentionHours: a chunk never uploaded within it becomes dead (expired), with an event', async () => {
    let clock = 1_000_000;
    const up = new ScriptedUploader();
    up.fail = () => unavailable(3_600_000); // the server asks for an hour: nothing happens before the clock moves
    const { m } = await open({ retentionHours: 1, now: () => clock }, up);
    const dead: string[] = [];
    m.on('chunk-dead', (e) => dead.push(`${e.reportId}:${e.reason}`));
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'old' });
    await expect.poll(() => up.seen.length).toBe(1);
    clock += 30 * 60_000;
    await m.cleanup();
    expect(dead).toEqual([]);
    clock += 31 * 60_000;
    await m.cleanup();
    expect(dead).toEqual(['old:expired']);
    expect(m.getReport('t', 'old')).toMatchObject({ state: 'dead', deadReason: 'expired' });
  });

  it('retentionHours: completed and dead reports are deleted once older than it', async () => {
    let clock = 1_000_000;
    const { m } = await open({ retentionHours: 2, cleanupOnReportComplete: false, now: () => clock });
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'done' });
    await m.flush();
    expect(m.getReport('t', 'done')?.state).toBe('completed');
    clock += 60 * 60_000;
    await m.cleanup();
    expect(m.getReport('t', 'done')).toBeDefined();
    clock += 61 * 60_000;
    const result = await m.cleanup();
    expect(m.getReport('t', 'done')).toBeUndefined();
    expect(result.layers).toContainEqual(expect.objectContaining({ layer: 'completed', reports: 1, chunks: 1 }));
  });

  it('maxStorageMB: a report that does not fit is refused with StorageFullError and nothing stored is touched', async () => {
    const up = new ScriptedUploader();
    up.fail = () => unavailable(3_600_000);
    const { m } = await open({ maxStorageMB: 1, compressionLevel: 1 }, up);
    await m.submitReport(noisy(), { tenantId: 't', reportId: 'kept' });
    const before = m.getReport('t', 'kept');
    expect(before).toMatchObject({ state: 'pending' });
    const full: unknown[] = [];
    m.on('storage-full', (e) => full.push(e));
    let err: unknown;
    for (let i = 0; i < 20 && err === undefined; i++) err = await m.submitReport(noisy(), { tenantId: 't', reportId: `r${i}` }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(StorageFullError);
    expect(err).toMatchObject({ code: 'OUTPOST_STORAGE_FULL', limitBytes: 1024 * 1024 });
    expect(full).toContainEqual(expect.objectContaining({ policy: 'reject', rejected: true, dropped: [] }));
    const after = m.getReport('t', 'kept');
    expect(after).toMatchObject({ state: 'pending', totalChunks: before!.totalChunks, storedBytes: before!.storedBytes, contentSha256: before!.contentSha256 });
    expect(after!.chunks.every((c) => c.hasBody && c.state !== 'dead')).toBe(true);
    expect(m.stats().usedBytes).toBeLessThanOrEqual(1024 * 1024);
  });

  it('compressionLevel: a higher level stores fewer bytes', async () => {
    const report = makeReport(3000, 50);
    const { m } = await open({ compressionLevel: 1 });
    const fast = await m.submitReport(report, { tenantId: 't' });
    const { m: m2 } = await open({ compressionLevel: 19 });
    const small = await m2.submitReport(report, { tenantId: 't' });
    expect(small.rawBytes).toBe(fast.rawBytes);
    expect(small.storedBytes).toBeLessThan(fast.storedBytes);
  });

  it('autoCleanupOnUpload: frees the body once acknowledged, keeping the metadata; false keeps it', async () => {
    for (const auto of [true, false]) {
      const { m } = await open({ autoCleanupOnUpload: auto, cleanupOnReportComplete: false });
      const cleanups: CleanupResult[] = [];
      m.on('cleanup', (e) => cleanups.push(e));
      await m.submitReport(makeReport(5, 1), { tenantId: 't', reportId: 'r' });
      await m.flush();
      const r = m.getReport('t', 'r');
      expect(r?.chunks[0]).toMatchObject({ state: 'uploaded', hasBody: !auto });
      expect(m.stats().chunks.uploaded.liveBytes > 0).toBe(!auto);
      expect(cleanups.some((c) => c.trigger === 'upload' && c.layers[0]?.layer === 'uploaded')).toBe(auto);
    }
  });

  it('cleanupOnReportComplete: deletes every row once the report completes; false keeps it as completed', async () => {
    for (const del of [true, false]) {
      const { m } = await open({ cleanupOnReportComplete: del, minFindingsForChunking: 1, maxFindingsPerChunk: 2 });
      const done: string[] = [];
      m.on('report-completed', (e) => done.push(e.reportId));
      await m.submitReport(makeReport(5, 0), { tenantId: 't', reportId: 'r' });
      await m.flush();
      expect(done).toEqual(['r']);
      if (del) expect(m.getReport('t', 'r')).toBeUndefined();
      else expect(m.getReport('t', 'r')).toMatchObject({ state: 'completed', totalChunks: 3 });
      expect(m.stats().reports.completed).toBe(del ? 0 : 1);
    }
  });

  it('cleanupIntervalMinutes: runs the retention cleanup periodically; 0 turns it off', async () => {
    let clock = 1_000_000;
    const up = new ScriptedUploader();
    up.fail = () => unavailable(3_600_000);
    const { m } = await open({ cleanupIntervalMinutes: 1 / 60, retentionHours: 1, now: () => clock }, up); // every second
    const dead: string[] = [];
    m.on('chunk-dead', (e) => dead.push(e.reason));
    await m.submitReport(makeReport(1, 0), { tenantId: 't' });
    await expect.poll(() => up.seen.length).toBe(1); // tried once; the next try is an hour away
    clock += 2 * 3_600_000;
    await expect.poll(() => dead, { timeout: 3000 }).toEqual(['expired']);

    const { m: off } = await open({ cleanupIntervalMinutes: 0, retentionHours: 1, now: () => clock }, up);
    const offDead: string[] = [];
    off.on('chunk-dead', (e) => offDead.push(e.reason));
    await off.submitReport(makeReport(1, 0), { tenantId: 't' });
    await expect.poll(() => up.seen.length).toBe(2);
    clock += 2 * 3_600_000;
    await new Promise((r) => setTimeout(r, 300));
    expect(offDead).toEqual([]);
    await off.cleanup();
    expect(offDead).toEqual(['expired']);
  });

  it('aggressiveCleanup: over the cap, uploaded data is cleaned at once so the report fits; false refuses it', async () => {
    const keep = { maxStorageMB: 1, autoCleanupOnUpload: false, cleanupOnReportComplete: false, compressionLevel: 1, cleanupIntervalMinutes: 0 };
    for (const aggressive of [true, false]) {
      // Fill the cap with uploaded (acknowledged) data, then reopen with the option under test.
      const { m: filler } = await open({ ...keep, aggressiveCleanup: false });
      for (let i = 0; filler.stats().usedBytes < 1024 * 1024 - 150_000; i++) {
        await filler.submitReport(noisy(), { tenantId: 't', reportId: `up${i}` });
        await filler.flush();
      }
      expect(filler.stats().chunks.uploaded.liveBytes).toBeGreaterThan(700_000);
      await filler.close();
      const m = await startManager(tmp.dir, new ScriptedUploader(), { ...keep, aggressiveCleanup: aggressive });
      managers.push(m);
      const big = { findings: [...noisy().findings, ...noisy().findings] }; // ~185 kB stored: over the cap
      const outcome = await m.submitReport(big, { tenantId: 't', reportId: 'new' }).then(() => 'stored', (e: unknown) => (e as { code: string }).code);
      expect(outcome).toBe(aggressive ? 'stored' : 'OUTPOST_STORAGE_FULL');
      expect(m.getReport('t', 'up0')?.state).toBe(aggressive ? undefined : 'completed'); // layer 1 deletes completed reports
    }
  });

  it("onStorageFull 'drop-oldest': deletes the oldest pending reports for room and names them", async () => {
    const up = new ScriptedUploader();
    up.fail = () => unavailable(3_600_000);
    const { m } = await open({ maxStorageMB: 1, onStorageFull: 'drop-oldest', compressionLevel: 1, maxConcurrentUploads: 1 }, up);
    const events: { dropped: readonly { reportId: string }[]; rejected: boolean }[] = [];
    m.on('storage-full', (e) => events.push(e));
    const deadReasons: string[] = [];
    m.on('chunk-dead', (e) => deadReasons.push(e.reason));
    for (let i = 0; i < 14; i++) await m.submitReport(noisy(), { tenantId: 't', reportId: `r${i}` });
    const dropped = events.flatMap((e) => e.dropped.map((d) => d.reportId));
    expect(dropped.length).toBeGreaterThan(0);
    expect(events.every((e) => !e.rejected)).toBe(true);
    expect(m.getReport('t', 'r13')?.state).toBe('pending');
    for (const id of dropped) expect(m.getReport('t', id)).toBeUndefined();
    // Oldest first (r0 may be skipped while the uploader holds it).
    const numbers = dropped.map((id) => Number(id.slice(1)));
    expect(numbers).toEqual([...numbers].sort((x, y) => x - y));
    expect(dropped.every((id) => Number(id.slice(1)) < 13)).toBe(true);
    expect(m.stats().usedBytes).toBeLessThanOrEqual(1024 * 1024);
    expect(deadReasons.every((r) => r === 'dropped')).toBe(true);
  });

  it('retryPolicy: the server’s Retry-After replaces the backoff', async () => {
    const up = new ScriptedUploader();
    up.fail = (_u, attempt) => (attempt === 1 ? unavailable(250) : undefined);
    const { m } = await open({ retryPolicy: { retryDelayMs: 5, maxRetryDelayMs: 10, maxRetryAfterMs: 1000 } }, up);
    const retries: ChunkRetryEvent[] = [];
    m.on('chunk-retry', (e) => retries.push(e));
    await m.submitReport(makeReport(1, 0), { tenantId: 't' });
    await m.flush();
    expect(retries.map((r) => r.delayMs)).toEqual([250]);
    expect(up.seen[1]!.at - up.seen[0]!.at).toBeGreaterThanOrEqual(240);
  });

  it('findingAssetIds: decides which assets ride with a finding', async () => {
    const { m, up } = await open({ minFindingsForChunking: 1, maxFindingsPerChunk: 1, findingAssetIds: (f) => [(f as { host: string }).host] });
    await m.submitReport({ findings: [{ id: 1, host: 'h1' }, { id: 2, host: 'h2' }], assets: [{ id: 'h1' }, { id: 'h2' }] }, { tenantId: 't' });
    await m.flush();
    const got = (await bodies([...up.seen].sort((a, b) => a.index - b.index))).map((b) => b.assets.map((a) => a.id));
    expect(got).toEqual([['h1'], ['h2']]);
  });
});
