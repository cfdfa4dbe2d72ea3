import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { storeOf } from '../../src/chunk/chunk-manager.js';
import { ChunkManager, CHUNK_SCHEMA_VERSION, type CleanupResult } from '../../src/chunk/index.js';
import { DiskFullError, StorageFullError, StoreError } from '../../src/errors.js';
import { ScriptedUploader, startManager, unavailable } from '../helpers/chunk.js';
import { tempDir } from '../helpers/ingest.js';

let tmp: ReturnType<typeof tempDir>;
let managers: ChunkManager[] = [];

afterEach(async () => {
  await Promise.all(managers.map((m) => m.close()));
  managers = [];
  tmp?.cleanup();
});

function noisy(n = 300) {
  return { findings: Array.from({ length: n }, (_, i) => ({ id: i, blob: randomBytes(300).toString('base64') })) };
}

/** An uploader that never succeeds within a test: everything stays pending. */
function stalled(): ScriptedUploader {
  const up = new ScriptedUploader();
  up.fail = () => unavailable(3_600_000);
  return up;
}

describe('ChunkManager storage', () => {
  it('opens with WAL, synchronous=FULL, foreign keys, busy_timeout, incremental auto_vacuum and the schema version', async () => {
    tmp = tempDir();
    const m = await startManager(tmp.dir, new ScriptedUploader());
    managers.push(m);
    const db = storeOf(m)!.db;
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    expect(db.pragma('auto_vacuum', { simple: true })).toBe(2);
    expect(db.pragma('user_version', { simple: true })).toBe(CHUNK_SCHEMA_VERSION);
    // Every row carries its tenant.
    for (const table of ['reports', 'chunks', 'stage_assets']) {
      const cols = db.prepare(`PRAGMA table_info(${table})`).all() as { name: string; notnull: number }[];
      expect(cols.find((c) => c.name === 'tenant_id')?.notnull).toBe(1);
    }
  });

  it('refuses a database written by a newer schema and leaves it unchanged', async () => {
    tmp = tempDir();
    const path = join(tmp.dir, 'chunks.db');
    const db = new Database(path);
    db.pragma(`user_version = ${CHUNK_SCHEMA_VERSION + 1}`);
    db.close();
    const m = new ChunkManager({ uploader: new ScriptedUploader(), databasePath: path });
    const err = await m.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect(err).toMatchObject({ code: 'OUTPOST_STORE_SCHEMA_TOO_NEW' });
    const check = new Database(path);
    expect(check.pragma('user_version', { simple: true })).toBe(CHUNK_SCHEMA_VERSION + 1);
    check.close();
    expect(m.state).toBe('idle');
  });

  it('writes a report all or nothing: a failure mid-insert leaves no chunk behind', async () => {
    tmp = tempDir();
    const m = await startManager(tmp.dir, stalled(), { maxStorageMB: 100 });
    managers.push(m);
    const store = storeOf(m)!;
    const pages = store.db.pragma('page_count', { simple: true }) as number;
    store.db.pragma(`max_page_count = ${pages + 40}`); // room for a few chunks, not for all of them
    const err = await m.submitReport({ ...noisy(3000) }, { tenantId: 't', reportId: 'big' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DiskFullError);
    expect(err).toBeInstanceOf(StorageFullError);
    expect(err).toMatchObject({ code: 'OUTPOST_DISK_FULL' });
    expect(store.db.prepare(`SELECT COUNT(*) AS n FROM chunks`).get()).toEqual({ n: 0 });
    expect(m.getReport('t', 'big')).toBeUndefined();
  });

  it('keeps pending chunks when the disk is full (max_page_count), and recovers once space is freed', async () => {
    tmp = tempDir();
    const up = stalled();
    const m = await startManager(tmp.dir, up, { maxStorageMB: 100 });
    managers.push(m);
    const store = storeOf(m)!;
    const kept = await m.submitReport(noisy(), { tenantId: 't', reportId: 'kept' });
    store.db.pragma('incremental_vacuum'); // no free pages left to reuse
    store.db.pragma(`max_page_count = ${store.db.pragma('page_count', { simple: true }) as number}`);
    await expect(m.submitReport(noisy(), { tenantId: 't', reportId: 'refused' })).rejects.toMatchObject({ code: 'OUTPOST_DISK_FULL' });
    expect(m.getReport('t', 'kept')).toMatchObject({ state: 'pending', totalChunks: kept.totalChunks });
    expect(store.db.pragma('integrity_check', { simple: true })).toBe('ok');
    store.db.pragma('max_page_count = 1073741823');
    await m.submitReport(noisy(), { tenantId: 't', reportId: 'after' });
    expect(m.getReport('t', 'after')?.state).toBe('pending');
    expect(m.getReport('t', 'refused')).toBeUndefined();
  });

  it('turns a full filesystem (a small tmpfs) into DiskFullError, keeps what is stored, and recovers', async (ctx) => {
    tmp = tempDir();
    const mnt = join(tmp.dir, 'mnt');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt], { stdio: 'ignore' });
    } catch {
      console.warn('skipping the tmpfs disk-full test: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)');
      ctx.skip();
      return;
    }
    try {
      // Ballast the user can delete later to free space.
      writeFileSync(join(mnt, 'ballast'), Buffer.alloc(1024 * 1024));
      const up = stalled();
      const m = new ChunkManager({ uploader: up, databasePath: join(mnt, 'chunks.db'), maxStorageMB: 100, compressionLevel: 1, uploadDelayMs: 0, cleanupIntervalMinutes: 0 });
      m.on('error', () => undefined);
      await m.start();
      const stored: string[] = [];
      let err: unknown;
      for (let i = 0; i < 100 && err === undefined; i++) {
        try {
          await m.submitReport(noisy(), { tenantId: 't', reportId: `r${i}` });
          stored.push(`r${i}`);
        } catch (e) {
          err = e;
        }
      }
      expect(err).toBeInstanceOf(DiskFullError);
      expect(stored.length).toBeGreaterThan(3);
      for (const id of stored) expect(m.getReport('t', id)?.state).toBe('pending');
      expect(storeOf(m)!.db.pragma('integrity_check', { simple: true })).toBe('ok');
      rmSync(join(mnt, 'ballast'));
      await m.submitReport(noisy(), { tenantId: 't', reportId: 'after-recovery' });
      expect(m.getReport('t', 'after-recovery')?.state).toBe('pending');
      await m.close();
      // Reopening finds every report the full disk did not refuse.
      const again = new ChunkManager({ uploader: up, databasePath: join(mnt, 'chunks.db'), uploadDelayMs: 0 });
      again.on('error', () => undefined);
      await again.start();
      expect(again.stats().reports.pending).toBe(stored.length + 1);
      await again.close();
    } finally {
      execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
    }
  });

  it('shrinks the file after cleanup: incremental vacuum and a truncating checkpoint', async () => {
    tmp = tempDir();
    const m = await startManager(tmp.dir, new ScriptedUploader(), { cleanupOnReportComplete: false, autoCleanupOnUpload: false, cleanupIntervalMinutes: 0 });
    managers.push(m);
    for (let i = 0; i < 10; i++) await m.submitReport(noisy(), { tenantId: 't', reportId: `r${i}` });
    await m.flush();
    const before = m.stats();
    expect(before.onDiskBytes).toBeGreaterThan(800_000);
    const events: CleanupResult[] = [];
    m.on('cleanup', (e) => events.push(e));
    const result = await m.cleanupToSize(0);
    expect(result.layers).toEqual([
      expect.objectContaining({ layer: 'uploaded', reports: 0, chunks: 10 }),
      expect.objectContaining({ layer: 'completed', reports: 10, chunks: 10 }),
    ]);
    expect(result.layers[0]!.bytesFreed).toBeGreaterThan(800_000);
    expect(result.onDiskBytesAfter).toBeLessThan(result.onDiskBytesBefore / 4);
    expect(statSync(join(tmp.dir, 'chunks.db')).size).toBeLessThan(200_000);
    expect(statSync(join(tmp.dir, 'chunks.db-wal'), { throwIfNoEntry: false })?.size ?? 0).toBe(0);
    expect(events).toEqual([result]);
  });

  it('cleanupToSize drops pending reports only under drop-oldest', async () => {
    for (const policy of ['reject', 'drop-oldest'] as const) {
      tmp = tempDir();
      const m = await startManager(tmp.dir, stalled(), { onStorageFull: policy, cleanupIntervalMinutes: 0 });
      managers.push(m);
      for (let i = 0; i < 4; i++) await m.submitReport(noisy(), { tenantId: 't', reportId: `r${i}` });
      const result = await m.cleanupToSize(0);
      if (policy === 'reject') {
        expect(result.dropped).toEqual([]);
        expect(m.stats().reports.pending).toBe(4);
      } else {
        expect(result.dropped.map((d) => d.reportId).sort()).toEqual(['r0', 'r1', 'r2', 'r3'].filter((id) => m.getReport('t', id) === undefined));
        expect(result.dropped.length).toBeGreaterThanOrEqual(3);
      }
      await m.close();
      tmp.cleanup();
    }
  });

  it('writes nothing world-readable: a loose existing file is tightened to 0600', async () => {
    tmp = tempDir();
    const path = join(tmp.dir, 'chunks.db');
    writeFileSync(path, '', { mode: 0o644 });
    const m = await startManager(tmp.dir, new ScriptedUploader());
    managers.push(m);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });
});
