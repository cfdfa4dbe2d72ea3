/**
 * The outbox's SQL: every statement prepared once, every multi-row change in
 * one transaction. SQLite errors of a full disk become {@link DiskFullError}.
 * @internal
 */
import { statfsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';
import { ChunkError, DiskFullError, StoreError } from '../errors.js';
import type { BodyEncoding } from '../transport/index.js';
import { openChunkDatabase } from './schema.js';

/** A chunk ready to be stored. */
export interface ChunkInsert {
  readonly index: number;
  readonly sha256: string;
  readonly rawBytes: number;
  readonly encoding: BodyEncoding;
  readonly body: Uint8Array;
}

/** One report for {@link ChunkStore.insertReports}. */
export interface ReportInsert {
  readonly header: ReportHeader;
  readonly kind: 'whole' | 'chunked';
  readonly digest: string;
  readonly chunks: readonly ChunkInsert[];
}

/** What identifies a report and how it ranks. */
export interface ReportHeader {
  readonly tenantId: string;
  readonly reportId: string;
  readonly priority: number;
}

/** A stored report's row. */
export interface ReportRow {
  readonly id: number;
  readonly tenant_id: string;
  readonly report_id: string;
  readonly state: 'staging' | 'pending' | 'completed' | 'dead';
  readonly kind: 'whole' | 'chunked';
  readonly priority: number;
  readonly total_chunks: number;
  readonly content_sha256: string | null;
  readonly raw_bytes: number;
  readonly stored_bytes: number;
  readonly created_at: number;
  readonly updated_at: number;
  readonly dead_reason: string | null;
}

/** A chunk claimed for upload, with everything the request needs. */
export interface ClaimedChunk {
  readonly rowid: number;
  readonly report_key: number;
  readonly idx: number;
  readonly tenant_id: string;
  readonly report_id: string;
  readonly kind: 'whole' | 'chunked';
  readonly total_chunks: number;
  readonly created_at: number;
  readonly attempts: number;
  readonly sha256: string;
  readonly raw_bytes: number;
  readonly stored_bytes: number;
  readonly encoding: BodyEncoding;
  readonly body: Buffer | null;
}

/** A chunk's identity, for events. */
export interface ChunkRef {
  readonly tenant_id: string;
  readonly report_id: string;
  readonly idx: number;
  readonly total_chunks: number;
}

/** Result of storing a report. */
export type InsertOutcome = { readonly outcome: 'stored'; readonly key: number } | { readonly outcome: 'duplicate'; readonly existing: ReportRow };

/** Sizes of the database, in bytes. */
export interface StorageSize {
  /** Database file plus WAL file, as on disk. */
  readonly onDiskBytes: number;
  /**
   * Pages in use (not on the free list) of the database as it reads now,
   * WAL included: what the data really takes, and what counts against
   * `maxStorageMB`. The WAL file itself is overhead the checkpoints bound.
   */
  readonly usedBytes: number;
}

/** Below this many free bytes on the filesystem, a write I/O error is taken as a full disk. */
const NEARLY_FULL_BYTES = 1024 * 1024;

function isDiskFull(err: unknown, path: string): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'SQLITE_FULL' || code === 'ENOSPC') return true;
  // SQLite reports a failed write() as SQLITE_IOERR_WRITE without errno: ask the filesystem.
  if (typeof code !== 'string' || !code.startsWith('SQLITE_IOERR') || path === ':memory:') return false;
  try {
    const fs = statfsSync(dirname(path));
    return fs.bavail * fs.bsize < NEARLY_FULL_BYTES;
  } catch {
    return false;
  }
}

/** The part of a prepared statement the outbox uses. */
export interface Statement<P extends unknown[], R> {
  run(...params: P): Database.RunResult;
  get(...params: P): R | undefined;
  all(...params: P): R[];
}

/** Every statement of the outbox, prepared once per open. */
function prepare(db: Database.Database) {
  const q = <P extends unknown[] = unknown[], R = unknown>(sql: string): Statement<P, R> => db.prepare<P, R>(sql) as unknown as Statement<P, R>;
  return {
    reportById: q<[string, string], ReportRow>(`SELECT * FROM reports WHERE tenant_id = ? AND report_id = ? AND state <> 'staging'`),
    insertReport: q(
      `INSERT INTO reports (tenant_id, report_id, state, kind, priority, total_chunks, content_sha256, raw_bytes, stored_bytes, created_at, updated_at)
       VALUES (@tenantId, @reportId, @state, @kind, @priority, @total, @digest, @rawBytes, @storedBytes, @now, @now)`,
    ),
    insertChunk: q(
      `INSERT INTO chunks (report_key, idx, tenant_id, state, priority, created_at, sha256, raw_bytes, stored_bytes, encoding, body)
       VALUES (@key, @index, @tenantId, @state, @priority, @now, @sha256, @rawBytes, @storedBytes, @encoding, @body)`,
    ),
    finalizeReport: q(
      `UPDATE reports SET state = 'pending', kind = @kind, total_chunks = @total, content_sha256 = @digest, raw_bytes = @rawBytes,
       stored_bytes = @storedBytes, updated_at = @now, created_at = @now WHERE id = @key AND state = 'staging'`,
    ),
    finalizeChunks: q(`UPDATE chunks SET state = 'pending', created_at = ? WHERE report_key = ? AND state = 'staging'`),
    insertStageAsset: q(`INSERT OR IGNORE INTO stage_assets (report_key, asset_key, tenant_id, json) VALUES (?, ?, ?, ?)`),
    stageAsset: q<[number, string], { json: string }>(`SELECT json FROM stage_assets WHERE report_key = ? AND asset_key = ?`),
    dropStageAssets: q(`DELETE FROM stage_assets WHERE report_key = ?`),
    deleteReport: q(`DELETE FROM reports WHERE id = ?`),
    deleteStaging: q(`DELETE FROM reports WHERE state = 'staging'`),
    resetUploading: q(`UPDATE chunks SET state = 'pending' WHERE state = 'uploading'`),
    chunkState: q<[number], { state: string }>(`SELECT state FROM chunks WHERE id = ?`),
    uploadingRows: q<[], { rowid: number }>(`SELECT id AS rowid FROM chunks WHERE state = 'uploading'`),
    resetUploadingOne: q(`UPDATE chunks SET state = 'pending' WHERE rowid = ? AND state = 'uploading'`),
    claim: q<[number, number], ClaimedChunk>(
      `UPDATE chunks SET state = 'uploading'
       WHERE rowid IN (SELECT rowid FROM chunks WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY priority DESC, created_at, report_key, idx LIMIT ?)
       RETURNING id AS rowid, report_key, idx, tenant_id, created_at, attempts, sha256, raw_bytes, stored_bytes, encoding, body,
         (SELECT report_id FROM reports WHERE id = report_key) AS report_id,
         (SELECT kind FROM reports WHERE id = report_key) AS kind,
         (SELECT total_chunks FROM reports WHERE id = report_key) AS total_chunks`,
    ),
    nextAttemptAt: q<[], { at: number | null }>(`SELECT MIN(next_attempt_at) AS at FROM chunks WHERE state = 'pending'`),
    outstanding: q<[], { n: number }>(`SELECT COUNT(*) AS n FROM chunks WHERE state IN ('pending', 'uploading')`),
    markUploaded: q(`UPDATE chunks SET state = 'uploaded', uploaded_at = ?, attempts = attempts + 1, last_error = NULL WHERE rowid = ? AND state = 'uploading'`),
    freeBody: q(`UPDATE chunks SET body = NULL WHERE rowid = ?`),
    notUploaded: q<[number], { n: number }>(`SELECT COUNT(*) AS n FROM chunks WHERE report_key = ? AND state <> 'uploaded'`),
    completeReport: q(`UPDATE reports SET state = 'completed', updated_at = ? WHERE id = ? AND state = 'pending'`),
    reportByKey: q<[number], ReportRow>(`SELECT * FROM reports WHERE id = ?`),
    reportBodies: q<[number], { n: number; bytes: number }>(`SELECT COUNT(*) AS n, TOTAL(length(body)) AS bytes FROM chunks WHERE report_key = ?`),
    markRetry: q(`UPDATE chunks SET state = 'pending', attempts = ?, next_attempt_at = ?, last_error = ? WHERE rowid = ? AND state = 'uploading'`),
    deadChunks: q<[number], ChunkRef & { rowid: number }>(
      `SELECT c.rowid AS rowid, c.tenant_id, r.report_id, c.idx, r.total_chunks FROM chunks c JOIN reports r ON r.id = c.report_key
       WHERE c.report_key = ? AND c.state IN ('pending', 'uploading')`,
    ),
    killChunks: q(`UPDATE chunks SET state = 'dead', last_error = coalesce(?, last_error) WHERE report_key = ? AND state IN ('pending', 'uploading')`),
    killReport: q(`UPDATE reports SET state = 'dead', dead_reason = ?, updated_at = ? WHERE id = ? AND state = 'pending'`),
    expirableReports: q<[number, number], { id: number }>(`SELECT id FROM reports WHERE state = 'pending' AND created_at < ? ORDER BY id LIMIT ?`),
    deletableReports: q<[string, number, number], { id: number }>(`SELECT id FROM reports WHERE state = ? AND updated_at < ? ORDER BY id LIMIT ?`),
    freeUploaded: q(`UPDATE chunks SET body = NULL WHERE state = 'uploaded' AND body IS NOT NULL AND uploaded_at < ?`),
    uploadedBodies: q<[number], { n: number; bytes: number }>(`SELECT COUNT(*) AS n, TOTAL(length(body)) AS bytes FROM chunks WHERE state = 'uploaded' AND body IS NOT NULL AND uploaded_at < ?`),
    oldestPending: q<[], { id: number; tenant_id: string; report_id: string }>(`SELECT id, tenant_id, report_id FROM reports WHERE state = 'pending' ORDER BY created_at, id LIMIT 64`),
    chunkStats: q<[], { state: string; n: number; raw: number; stored: number; live: number }>(
      `SELECT state, COUNT(*) AS n, TOTAL(raw_bytes) AS raw, TOTAL(stored_bytes) AS stored, TOTAL(length(body)) AS live FROM chunks GROUP BY state`,
    ),
    reportStats: q<[], { state: string; n: number }>(`SELECT state, COUNT(*) AS n FROM reports GROUP BY state`),
    chunksOf: q<[number], { idx: number; state: string; attempts: number; raw_bytes: number; stored_bytes: number; has_body: number; last_error: string | null; next_attempt_at: number }>(
      `SELECT idx, state, attempts, raw_bytes, stored_bytes, body IS NOT NULL AS has_body, last_error, next_attempt_at FROM chunks WHERE report_key = ? ORDER BY idx`,
    ),
  };
}

/** The outbox's database and its statements. */
export class ChunkStore {
  readonly db: Database.Database;
  readonly path: string;
  /** The prepared statements. @internal */
  readonly s: ReturnType<typeof prepare>;
  readonly #insertReport: (header: ReportHeader, kind: 'whole' | 'chunked', digest: string, chunks: readonly ChunkInsert[], now: number) => InsertOutcome;
  readonly #finalize: (key: number, header: ReportHeader, kind: 'whole' | 'chunked', total: number, digest: string, rawBytes: number, storedBytes: number, now: number) => InsertOutcome;
  readonly #insertMany: (entries: readonly ReportInsert[], now: number) => (InsertOutcome | ChunkError)[];
  readonly #stage: (key: number, tenantId: string, assets: readonly (readonly [string, string])[], chunk: ChunkInsert | undefined, priority: number, now: number) => void;

  constructor(path: string) {
    this.path = path;
    this.db = openChunkDatabase(path);
    try {
      this.s = prepare(this.db);
    } catch (err) {
      this.db.close();
      throw err;
    }
    const s = this.s;
    /** `undefined` when the new report may be stored (a dead report with the same content is replaced: a retry revives it). */
    const duplicateOrConflict = (existing: ReportRow, digest: string): InsertOutcome | undefined => {
      if (existing.content_sha256 === digest) {
        if (existing.state !== 'dead') return { outcome: 'duplicate', existing };
        s.deleteReport.run(existing.id);
        return undefined;
      }
      throw new ChunkError('OUTPOST_REPORT_CONFLICT', `Report \`${existing.report_id}\` of tenant \`${existing.tenant_id}\` is already stored with different content; use a new report id`);
    };
    this.#insertReport = this.db
      .transaction((header: ReportHeader, kind: 'whole' | 'chunked', digest: string, chunks: readonly ChunkInsert[], now: number): InsertOutcome => {
        const existing = s.reportById.get(header.tenantId, header.reportId);
        const known = existing === undefined ? undefined : duplicateOrConflict(existing, digest);
        if (known !== undefined) return known;
        let rawBytes = 0;
        let storedBytes = 0;
        for (const c of chunks) {
          rawBytes += c.rawBytes;
          storedBytes += c.body.byteLength;
        }
        const key = Number(
          s.insertReport.run({ ...header, state: 'pending', kind, total: chunks.length, digest, rawBytes, storedBytes, now }).lastInsertRowid,
        );
        for (const c of chunks) {
          s.insertChunk.run({ key, index: c.index, tenantId: header.tenantId, state: 'pending', priority: header.priority, now, sha256: c.sha256, rawBytes: c.rawBytes, storedBytes: c.body.byteLength, encoding: c.encoding, body: c.body });
        }
        return { outcome: 'stored', key };
      })
      .immediate.bind(null);
    this.#insertMany = this.db
      .transaction((entries: readonly ReportInsert[], now: number): (InsertOutcome | ChunkError)[] =>
        entries.map((e) => {
          try {
            return this.#insertReport(e.header, e.kind, e.digest, e.chunks, now); // nested: a savepoint
          } catch (err) {
            if (err instanceof ChunkError) return err;
            throw err;
          }
        }),
      )
      .immediate.bind(null);
    this.#stage = this.db
      .transaction((key: number, tenantId: string, assets: readonly (readonly [string, string])[], chunk: ChunkInsert | undefined, priority: number, now: number) => {
        for (const [assetKey, json] of assets) s.insertStageAsset.run(key, assetKey, tenantId, json);
        if (chunk !== undefined) {
          s.insertChunk.run({ key, index: chunk.index, tenantId, state: 'staging', priority, now, sha256: chunk.sha256, rawBytes: chunk.rawBytes, storedBytes: chunk.body.byteLength, encoding: chunk.encoding, body: chunk.body });
        }
      })
      .immediate.bind(null);
    this.#finalize = this.db
      .transaction((key: number, header: ReportHeader, kind: 'whole' | 'chunked', total: number, digest: string, rawBytes: number, storedBytes: number, now: number): InsertOutcome => {
        const existing = s.reportById.get(header.tenantId, header.reportId);
        const known = existing === undefined ? undefined : duplicateOrConflict(existing, digest);
        if (known !== undefined) {
          s.deleteReport.run(key);
          return known;
        }
        s.dropStageAssets.run(key);
        s.finalizeChunks.run(now, key);
        s.finalizeReport.run({ key, kind, total, digest, rawBytes, storedBytes, now });
        return { outcome: 'stored', key };
      })
      .immediate.bind(null);
  }

  /** Runs `fn`, turning a full disk into {@link DiskFullError} and other SQLite failures into {@link StoreError}. */
  guard<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw this.wrap(what, err);
    }
  }

  /** The typed error for a failed database call. */
  wrap(what: string, err: unknown): unknown {
    if (err instanceof ChunkError || err instanceof StoreError || err instanceof DiskFullError) return err;
    if (isDiskFull(err, this.path)) {
      let storedBytes = 0;
      try {
        storedBytes = this.size().onDiskBytes;
      } catch {
        // The size is informative only.
      }
      return new DiskFullError(`The disk holding the outbox is full: could not ${what}; nothing stored was changed`, { cause: err, storedBytes });
    }
    if ((err as { code?: unknown } | null)?.code !== undefined && String((err as { code: unknown }).code).startsWith('SQLITE')) {
      return new StoreError('OUTPOST_STORE_FAILED', `The outbox database failed to ${what}: ${(err as Error).message}`, { cause: err });
    }
    return err;
  }

  /**
   * Stores several reports in one transaction (one commit), each in its own
   * savepoint: a report refused for a conflict is that entry's
   * {@link ChunkError} and the others are stored.
   */
  insertReports(entries: readonly ReportInsert[], now: number): (InsertOutcome | ChunkError)[] {
    return this.guard('store the reports', () => this.#insertMany(entries, now));
  }

  /** Stores a whole report and its chunks in one transaction, or finds it already stored. */
  insertReport(header: ReportHeader, kind: 'whole' | 'chunked', digest: string, chunks: readonly ChunkInsert[], now: number): InsertOutcome {
    return this.guard('store the report', () => this.#insertReport(header, kind, digest, chunks, now));
  }

  /** Opens a staging report for a streaming submission; returns its key. */
  beginStaging(header: ReportHeader, now: number): number {
    return this.guard('start the report', () =>
      Number(this.s.insertReport.run({ ...header, state: 'staging', kind: 'chunked', total: 0, digest: null, rawBytes: 0, storedBytes: 0, now }).lastInsertRowid),
    );
  }

  /** Writes staged assets and (optionally) one staged chunk in one transaction. */
  stage(key: number, tenantId: string, assets: readonly (readonly [string, string])[], chunk: ChunkInsert | undefined, priority: number, now: number): void {
    this.guard('store the chunk', () => this.#stage(key, tenantId, assets, chunk, priority, now));
  }

  /** Makes a staged report visible to the uploader, in one transaction. */
  finalize(key: number, header: ReportHeader, kind: 'whole' | 'chunked', total: number, digest: string, rawBytes: number, storedBytes: number, now: number): InsertOutcome {
    return this.guard('store the report', () => this.#finalize(key, header, kind, total, digest, rawBytes, storedBytes, now));
  }

  /** Deletes a staging report and everything staged for it. */
  discard(key: number): void {
    this.guard('discard the report', () => this.s.deleteReport.run(key));
  }

  /**
   * Runs `fn` with `synchronous=NORMAL`, then restores `FULL`. For writes whose
   * loss on a power cut is harmless — a claim (start-up resets it) or an
   * acknowledgement (the chunk is sent again and the server answers it as a
   * duplicate) — so they do not each wait for an fsync. A process crash loses
   * none of them: in WAL mode they are in the log the moment they commit, and
   * the next FULL commit syncs them with it.
   */
  relaxed<T>(fn: () => T): T {
    this.db.pragma('synchronous = NORMAL');
    try {
      return fn();
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }

  /** The database's size: file and WAL on disk, and pages in use. */
  size(): StorageSize {
    let file = 0;
    let wal = 0;
    if (this.path !== ':memory:') {
      file = statSync(this.path, { throwIfNoEntry: false })?.size ?? 0;
      wal = statSync(`${this.path}-wal`, { throwIfNoEntry: false })?.size ?? 0;
    }
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    return { onDiskBytes: file + wal, usedBytes: (pages - free) * pageSize };
  }

  /** Closes the database after a checkpoint that empties the WAL. */
  close(): void {
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // A full disk can refuse the checkpoint; the WAL is replayed on the next open.
    }
    this.db.close();
  }
}
