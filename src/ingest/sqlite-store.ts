/**
 * The default {@link IngestStore}: one SQLite file (WAL, synchronous=FULL,
 * foreign keys on), created 0600 in a 0700 directory.
 */
import Database from 'better-sqlite3';
import { IllegalStateError, StoreError } from '../errors.js';
import { ensurePrivateFile } from '../internal/private-fs.js';
import type { BodyEncoding } from '../transport/index.js';
import type { IngestStore, PendingDelivery, PruneCutoffs, PruneResult, PutChunkInput, PutChunkResult, ReportKind, StoredChunkBody, StoredReport } from './store.js';

/** Current schema version (`PRAGMA user_version`). */
export const INGEST_SCHEMA_VERSION = 1;

const MIGRATIONS: readonly string[] = [
  // v1
  `CREATE TABLE reports (
     tenant_id TEXT NOT NULL,
     report_id TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('whole', 'chunked')),
     total_chunks INTEGER NOT NULL,
     received_chunks INTEGER NOT NULL DEFAULT 0,
     received_bytes INTEGER NOT NULL DEFAULT 0,
     received_values INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     completed_at INTEGER,
     delivered_at INTEGER,
     PRIMARY KEY (tenant_id, report_id)
   ) WITHOUT ROWID;
   CREATE TABLE chunks (
     tenant_id TEXT NOT NULL,
     report_id TEXT NOT NULL,
     idx INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     raw_bytes INTEGER NOT NULL,
     encoding TEXT NOT NULL,
     body BLOB,
     received_at INTEGER NOT NULL,
     PRIMARY KEY (tenant_id, report_id, idx),
     FOREIGN KEY (tenant_id, report_id) REFERENCES reports (tenant_id, report_id) ON DELETE CASCADE
   );
   CREATE INDEX reports_pending_delivery ON reports (completed_at, tenant_id, report_id) WHERE completed_at IS NOT NULL AND delivered_at IS NULL;
   CREATE INDEX reports_incomplete ON reports (created_at) WHERE completed_at IS NULL;
   CREATE INDEX reports_delivered ON reports (delivered_at) WHERE delivered_at IS NOT NULL;`,
];

interface ReportRow {
  kind: ReportKind;
  total_chunks: number;
  received_chunks: number;
  received_bytes: number;
  received_values: number;
  completed_at: number | null;
  delivered_at: number | null;
}

function toReport(row: ReportRow | undefined): StoredReport | undefined {
  if (row === undefined) return undefined;
  return {
    kind: row.kind,
    totalChunks: row.total_chunks,
    receivedChunks: row.received_chunks,
    receivedBytes: row.received_bytes,
    complete: row.completed_at !== null,
    delivered: row.delivered_at !== null,
  };
}

/**
 * SQLite-backed {@link IngestStore}. Pass a file path, or `':memory:'` for tests.
 *
 * @example
 * ```ts
 * const store = new SqliteIngestStore('/var/lib/outpost/ingest.db');
 * const handler = createIngestHandler({ store, authenticate, onReport });
 * ```
 */
export class SqliteIngestStore implements IngestStore {
  readonly #db: Database.Database;
  readonly #stmt: ReturnType<typeof prepareStatements>;
  readonly #put: (input: PutChunkInput, now: number) => PutChunkResult;
  #closed = false;

  /** @param path - database file (created 0600, its directory 0700), or `':memory:'` */
  constructor(path: string) {
    if (path !== ':memory:') ensurePrivateFile(path);
    const db = new Database(path);
    this.#db = db;
    try {
      db.pragma('auto_vacuum = INCREMENTAL'); // only takes effect before the first table
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      migrate(db);
      this.#stmt = prepareStatements(db);
    } catch (err) {
      db.close(); // never leave the file open behind a failed open
      throw err;
    }
    const s = this.#stmt;
    this.#put = db
      .transaction((input: PutChunkInput, now: number): PutChunkResult => {
        const { tenantId, reportId } = input;
        const row = s.report.get(tenantId, reportId);
        let report = toReport(row);
        if (report !== undefined) {
          if (report.kind !== input.kind) return { outcome: 'kind-mismatch', report, completedNow: false };
          if (report.totalChunks !== input.total) return { outcome: 'total-mismatch', report, completedNow: false };
          const existing = s.chunkDigest.get(tenantId, reportId, input.index);
          if (existing !== undefined) {
            return { outcome: existing.sha256 === input.sha256 ? 'duplicate' : 'conflict', report, completedNow: false };
          }
        }
        const values = row?.received_values ?? 0;
        if ((report?.receivedBytes ?? 0) + input.rawBytes > input.maxReportBytes || values + input.values > input.maxReportValues) {
          return { outcome: 'too-large', report, completedNow: false };
        }
        if (report === undefined) s.insertReport.run(tenantId, reportId, input.kind, input.total, now);
        s.insertChunk.run(tenantId, reportId, input.index, input.sha256, input.rawBytes, input.encoding, input.body, now);
        s.countChunk.run(input.rawBytes, input.values, now, tenantId, reportId);
        report = toReport(s.report.get(tenantId, reportId));
        return { outcome: 'stored', report, completedNow: report?.complete === true };
      })
      .immediate.bind(null);
  }

  /** {@inheritDoc IngestStore.getReport} */
  async getReport(tenantId: string, reportId: string): Promise<StoredReport | undefined> {
    this.#assertOpen();
    return toReport(this.#stmt.report.get(tenantId, reportId));
  }

  /** {@inheritDoc IngestStore.putChunk} */
  async putChunk(input: PutChunkInput): Promise<PutChunkResult> {
    this.#assertOpen();
    return this.#put(input, Date.now());
  }

  /** {@inheritDoc IngestStore.readChunks} */
  async readChunks(tenantId: string, reportId: string): Promise<StoredChunkBody[]> {
    this.#assertOpen();
    return this.#stmt.bodies.all(tenantId, reportId).map((row) => {
      if (row.body === null) throw new StoreError('OUTPOST_STORE_DATA_MISSING', `Chunk ${row.idx} of report ${reportId} has no body left (already delivered)`);
      return { index: row.idx, body: row.body, encoding: row.encoding };
    });
  }

  /** {@inheritDoc IngestStore.markDelivered} */
  async markDelivered(tenantId: string, reportId: string, options: { readonly dropBodies: boolean }): Promise<void> {
    this.#assertOpen();
    this.#db.transaction(() => {
      this.#stmt.delivered.run(Date.now(), tenantId, reportId);
      if (options.dropBodies) this.#stmt.dropBodies.run(tenantId, reportId);
    })();
    if (options.dropBodies) this.#db.pragma('incremental_vacuum(256)');
  }

  /** {@inheritDoc IngestStore.listPendingDeliveries} */
  async listPendingDeliveries(limit: number, after?: PendingDelivery): Promise<PendingDelivery[]> {
    this.#assertOpen();
    return this.#stmt.pending
      .all(after?.completedAt ?? -1, after?.tenantId ?? '', after?.reportId ?? '', limit)
      .map((r) => ({ tenantId: r.tenant_id, reportId: r.report_id, completedAt: r.completed_at }));
  }

  /** {@inheritDoc IngestStore.prune} */
  async prune(cutoffs: PruneCutoffs): Promise<PruneResult> {
    this.#assertOpen();
    const result = this.#db.transaction(() => ({
      incompleteReports: this.#stmt.pruneIncomplete.run(cutoffs.incompleteBefore).changes,
      deliveredReports: this.#stmt.pruneDelivered.run(cutoffs.deliveredBefore).changes,
    }))();
    if (result.incompleteReports + result.deliveredReports > 0) this.#db.pragma('incremental_vacuum');
    return result;
  }

  #assertOpen(): void {
    if (this.#closed) throw new IllegalStateError('use the ingest store', 'closed');
  }

  /** {@inheritDoc IngestStore.close} */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}

/** Every statement the store runs, prepared once. */
function prepareStatements(db: Database.Database) {
  return {
    report: db.prepare<[string, string], ReportRow>(
      'SELECT kind, total_chunks, received_chunks, received_bytes, received_values, completed_at, delivered_at FROM reports WHERE tenant_id = ? AND report_id = ?',
    ),
    insertReport: db.prepare('INSERT INTO reports (tenant_id, report_id, kind, total_chunks, created_at) VALUES (?, ?, ?, ?, ?)'),
    chunkDigest: db.prepare<[string, string, number], { sha256: string }>('SELECT sha256 FROM chunks WHERE tenant_id = ? AND report_id = ? AND idx = ?'),
    insertChunk: db.prepare(
      'INSERT INTO chunks (tenant_id, report_id, idx, sha256, raw_bytes, encoding, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    countChunk: db.prepare(
      `UPDATE reports SET received_chunks = received_chunks + 1, received_bytes = received_bytes + ?, received_values = received_values + ?,
         completed_at = CASE WHEN received_chunks + 1 = total_chunks THEN ? ELSE NULL END
       WHERE tenant_id = ? AND report_id = ?`,
    ),
    bodies: db.prepare<[string, string], { idx: number; body: Buffer | null; encoding: BodyEncoding }>(
      'SELECT idx, body, encoding FROM chunks WHERE tenant_id = ? AND report_id = ? ORDER BY idx',
    ),
    delivered: db.prepare('UPDATE reports SET delivered_at = ? WHERE tenant_id = ? AND report_id = ?'),
    dropBodies: db.prepare('UPDATE chunks SET body = NULL WHERE tenant_id = ? AND report_id = ?'),
    pending: db.prepare<[number, string, string, number], { tenant_id: string; report_id: string; completed_at: number }>(
      `SELECT tenant_id, report_id, completed_at FROM reports
       WHERE completed_at IS NOT NULL AND delivered_at IS NULL AND (completed_at, tenant_id, report_id) > (?, ?, ?)
       ORDER BY completed_at, tenant_id, report_id LIMIT ?`,
    ),
    pruneIncomplete: db.prepare('DELETE FROM reports WHERE completed_at IS NULL AND created_at < ?'),
    pruneDelivered: db.prepare('DELETE FROM reports WHERE delivered_at IS NOT NULL AND delivered_at < ?'),
  };
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new StoreError('OUTPOST_STORE_SCHEMA_TOO_NEW', `Ingest database schema v${version} is newer than this outpost-sdk supports (v${MIGRATIONS.length})`);
  }
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] as string);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
