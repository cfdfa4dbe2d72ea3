/**
 * Layered cleanup: each layer deletes one kind of data, is measured, and is
 * followed by an incremental vacuum and a WAL checkpoint so the file really
 * shrinks. Layers, in the order storage pressure uses them: `uploaded`
 * (acknowledged bodies and completed reports), `expired` and `dead`, then
 * — only with `onStorageFull: 'drop-oldest'` — `dropped` (oldest pending reports).
 * @internal
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { ChunkRef, ChunkStore } from './store.js';

/** A cleanup layer. */
export type CleanupLayer = 'uploaded' | 'completed' | 'expired' | 'dead' | 'dropped';

/** What started a cleanup. */
export type CleanupTrigger = 'upload' | 'report-complete' | 'interval' | 'manual' | 'storage';

/** What one layer removed. */
export interface CleanupLayerResult {
  /** The layer: `uploaded` (bodies of acknowledged chunks), `completed` (rows of completed reports), `expired` (pending past `retentionHours`), `dead`, `dropped` (pending reports deleted for room). */
  readonly layer: CleanupLayer;
  /** Chunk rows whose body was freed or that were deleted. */
  readonly chunks: number;
  /** Report rows deleted (or, for `expired`, given up). */
  readonly reports: number;
  /** Chunk body bytes freed (compressed, as stored). */
  readonly bytesFreed: number;
}

/** A report deleted to make room under `onStorageFull: 'drop-oldest'`. */
export interface DroppedReport {
  /** Tenant of the report. */
  readonly tenantId: string;
  /** The report id. */
  readonly reportId: string;
  /** Chunks it had not uploaded yet. */
  readonly pendingChunks: number;
}

/** The outcome of one cleanup run (the `cleanup` event). */
export interface CleanupResult {
  /** What started it. */
  readonly trigger: CleanupTrigger;
  /** The layers that removed something, in the order they ran. */
  readonly layers: readonly CleanupLayerResult[];
  /** Database file + WAL before, in bytes. */
  readonly onDiskBytesBefore: number;
  /** Database file + WAL after the vacuum and checkpoint, in bytes. */
  readonly onDiskBytesAfter: number;
  /** Reports deleted for room (drop-oldest only). */
  readonly dropped: readonly DroppedReport[];
}

/** Chunks given up by a layer (so the manager can emit `chunk-dead`). */
export type Expired = ChunkRef & { readonly reason: 'expired' | 'dropped' };

interface LayerRun {
  readonly result: CleanupLayerResult;
  readonly expired: readonly Expired[];
  readonly dropped: readonly DroppedReport[];
}

function measured(layer: CleanupLayer, chunks: number, reports: number, bytesFreed: number): LayerRun {
  return { result: { layer, chunks, reports, bytesFreed }, expired: [], dropped: [] };
}

/** Reports handled per transaction; the event loop gets a turn between batches. */
const BATCH = 200;

/** Frees the bodies of chunks acknowledged before `before` (all of them when undefined). */
export function freeUploadedBodies(store: ChunkStore, before = Number.MAX_SAFE_INTEGER): LayerRun {
  const row = store.s.uploadedBodies.get(before);
  if (row === undefined || row.n === 0) return measured('uploaded', 0, 0, 0);
  store.s.freeUploaded.run(before);
  return measured('uploaded', row.n, 0, row.bytes);
}

/** Deletes reports in `state` last changed before `before` (all of them when undefined), in batches. */
export async function deleteReports(store: ChunkStore, layer: 'completed' | 'dead', before: number | undefined): Promise<LayerRun> {
  const cutoff = before ?? Number.MAX_SAFE_INTEGER;
  let reports = 0;
  let chunks = 0;
  let bytes = 0;
  for (;;) {
    const done = store.db
      .transaction((): boolean => {
        const ids = store.s.deletableReports.all(layer, cutoff, BATCH);
        for (const { id } of ids) {
          const row = store.s.reportBodies.get(id);
          chunks += row?.n ?? 0;
          bytes += row?.bytes ?? 0;
          store.s.deleteReport.run(id);
        }
        reports += ids.length;
        return ids.length < BATCH;
      })
      .immediate();
    if (done) break;
    await yieldToLoop();
  }
  return measured(layer, chunks, reports, bytes);
}

/**
 * Gives up pending reports stored before `before`: their chunks become `dead`
 * (reason `expired`), in batches. A chunk being uploaded right now is marked
 * too; its upload's outcome then changes nothing.
 */
export async function expirePending(store: ChunkStore, before: number, now: number): Promise<LayerRun> {
  const expired: Expired[] = [];
  let reports = 0;
  for (;;) {
    const done = store.db
      .transaction((): boolean => {
        const ids = store.s.expirableReports.all(before, BATCH);
        for (const { id } of ids) {
          for (const c of store.s.deadChunks.all(id)) expired.push({ tenant_id: c.tenant_id, report_id: c.report_id, idx: c.idx, total_chunks: c.total_chunks, reason: 'expired' });
          store.s.killChunks.run('expired: not uploaded within retentionHours', id);
          store.s.killReport.run('expired', now, id);
        }
        reports += ids.length;
        return ids.length < BATCH;
      })
      .immediate();
    if (done) break;
    await yieldToLoop();
  }
  return { result: { layer: 'expired', chunks: expired.length, reports, bytesFreed: 0 }, expired, dropped: [] };
}

/** Deletes the oldest pending report not being uploaded right now; `undefined` when none is left. */
export function dropOldestPending(store: ChunkStore, busyReports: { has(reportKey: number): boolean }): LayerRun | undefined {
  return store.db
    .transaction((): LayerRun | undefined => {
      const candidates = store.s.oldestPending.all();
      const victim = candidates.find((c) => !busyReports.has(c.id));
      if (victim === undefined) return undefined;
      const chunks = store.s.deadChunks.all(victim.id);
      const row = store.s.reportBodies.get(victim.id);
      store.s.deleteReport.run(victim.id);
      return {
        result: { layer: 'dropped', chunks: row?.n ?? 0, reports: 1, bytesFreed: row?.bytes ?? 0 },
        expired: chunks.map((c) => ({ ...c, reason: 'dropped' as const })),
        dropped: [{ tenantId: victim.tenant_id, reportId: victim.report_id, pendingChunks: chunks.length }],
      };
    })
    .immediate();
}

/**
 * Returns free pages to the filesystem: `incremental_vacuum` in steps of
 * 2048 pages (yielding to the event loop between steps), then a WAL
 * checkpoint that truncates the WAL.
 */
export async function vacuum(store: ChunkStore): Promise<void> {
  for (let round = 0; round < 100_000; round++) {
    const free = store.db.pragma('freelist_count', { simple: true }) as number;
    if (free === 0) break;
    store.db.pragma(`incremental_vacuum(${Math.min(free, 2048)})`);
    if (free > 2048) await yieldToLoop();
  }
  store.db.pragma('wal_checkpoint(TRUNCATE)');
}
