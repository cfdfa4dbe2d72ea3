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

/** Frees the bodies of acknowledged chunks. */
export function freeUploadedBodies(store: ChunkStore): LayerRun {
  const row = store.db.prepare<[], { n: number; bytes: number }>(`SELECT COUNT(*) AS n, TOTAL(length(body)) AS bytes FROM chunks WHERE state = 'uploaded' AND body IS NOT NULL`).get();
  if (row === undefined || row.n === 0) return measured('uploaded', 0, 0, 0);
  store.db.prepare(`UPDATE chunks SET body = NULL WHERE state = 'uploaded' AND body IS NOT NULL`).run();
  return measured('uploaded', row.n, 0, row.bytes);
}

/** Deletes reports in `state` last changed before `before` (all of them when `before` is undefined). */
export function deleteReports(store: ChunkStore, layer: 'completed' | 'dead', before: number | undefined): LayerRun {
  const state = layer;
  const cutoff = before ?? Number.MAX_SAFE_INTEGER;
  return store.db
    .transaction((): LayerRun => {
      const row = store.db
        .prepare<[string, number], { reports: number; chunks: number; bytes: number }>(
          `SELECT COUNT(DISTINCT r.id) AS reports, COUNT(c.idx) AS chunks, TOTAL(length(c.body)) AS bytes
           FROM reports r LEFT JOIN chunks c ON c.report_key = r.id WHERE r.state = ? AND r.updated_at < ?`,
        )
        .get(state, cutoff);
      if (row === undefined || row.reports === 0) return measured(layer, 0, 0, 0);
      store.db.prepare(`DELETE FROM reports WHERE state = ? AND updated_at < ?`).run(state, cutoff);
      return measured(layer, row.chunks, row.reports, row.bytes);
    })
    .immediate();
}

/** Gives up pending reports stored before `before`: their chunks become `dead` (reason `expired`). */
export function expirePending(store: ChunkStore, before: number, now: number): LayerRun {
  return store.db
    .transaction((): LayerRun => {
      const reports = store.db.prepare<[number], { id: number }>(`SELECT id FROM reports WHERE state = 'pending' AND created_at < ?`).all(before);
      const expired: Expired[] = [];
      let bytes = 0;
      for (const { id } of reports) {
        for (const c of store.s.deadChunks.all(id)) expired.push({ ...c, reason: 'expired' });
        bytes += store.db.prepare<[number], { b: number }>(`SELECT TOTAL(length(body)) AS b FROM chunks WHERE report_key = ? AND state IN ('pending', 'uploading')`).get(id)?.b ?? 0;
        store.s.killChunks.run('expired: not uploaded within retentionHours', id);
        store.s.killReport.run('expired', now, id);
      }
      return { result: { layer: 'expired', chunks: expired.length, reports: reports.length, bytesFreed: 0 }, expired, dropped: [] };
    })
    .immediate();
}

/** Deletes the oldest pending report not being uploaded right now; `undefined` when none is left. */
export function dropOldestPending(store: ChunkStore, busyReports: { has(reportKey: number): boolean }): LayerRun | undefined {
  return store.db
    .transaction((): LayerRun | undefined => {
      const candidates = store.db.prepare<[], { id: number; tenant_id: string; report_id: string }>(`SELECT id, tenant_id, report_id FROM reports WHERE state = 'pending' ORDER BY created_at, id LIMIT 64`).all();
      const victim = candidates.find((c) => !busyReports.has(c.id));
      if (victim === undefined) return undefined;
      const chunks = store.s.deadChunks.all(victim.id);
      const row = store.db.prepare<[number], { n: number; bytes: number }>(`SELECT COUNT(*) AS n, TOTAL(length(body)) AS bytes FROM chunks WHERE report_key = ?`).get(victim.id);
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
