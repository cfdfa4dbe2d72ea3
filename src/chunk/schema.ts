/**
 * The outbox database: how it is opened (pragmas on every open) and its
 * schema migrations, versioned with `PRAGMA user_version`.
 * @internal
 */
import Database from 'better-sqlite3';
import { StoreError } from '../errors.js';
import { ensurePrivateFile } from '../internal/private-fs.js';

/** Current schema version of the outbox (`PRAGMA user_version`). */
export const CHUNK_SCHEMA_VERSION = 1;

/**
 * Report states: `staging` (a submission in progress, invisible to the
 * uploader, deleted on open), `pending`, `completed`, `dead`.
 * Chunk states: `staging`, `pending`, `uploading`, `uploaded`, `dead`.
 * The body is the last column, so reading the others never touches its overflow pages;
 * it is NULL once freed. Ids are AUTOINCREMENT: an upload still in flight when
 * its rows are deleted can never update a newer row that reused its id.
 */
const MIGRATIONS: readonly string[] = [
  // v1
  `CREATE TABLE reports (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     tenant_id TEXT NOT NULL,
     report_id TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('staging', 'pending', 'completed', 'dead')),
     kind TEXT NOT NULL CHECK (kind IN ('whole', 'chunked')),
     priority INTEGER NOT NULL,
     total_chunks INTEGER NOT NULL,
     content_sha256 TEXT,
     raw_bytes INTEGER NOT NULL DEFAULT 0,
     stored_bytes INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     dead_reason TEXT
   );
   CREATE UNIQUE INDEX reports_by_id ON reports (tenant_id, report_id) WHERE state <> 'staging';
   CREATE INDEX reports_by_state ON reports (state, updated_at);
   CREATE INDEX reports_pending_age ON reports (created_at, id) WHERE state = 'pending';
   CREATE TABLE chunks (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     report_key INTEGER NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
     idx INTEGER NOT NULL,
     tenant_id TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('staging', 'pending', 'uploading', 'uploaded', 'dead')),
     priority INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     attempts INTEGER NOT NULL DEFAULT 0,
     next_attempt_at INTEGER NOT NULL DEFAULT 0,
     sha256 TEXT NOT NULL,
     raw_bytes INTEGER NOT NULL,
     stored_bytes INTEGER NOT NULL,
     encoding TEXT NOT NULL CHECK (encoding IN ('zstd', 'identity')),
     uploaded_at INTEGER,
     last_error TEXT,
     body BLOB,
     UNIQUE (report_key, idx)
   );
   CREATE INDEX chunks_ready ON chunks (priority DESC, created_at, report_key, idx) WHERE state = 'pending';
   CREATE INDEX chunks_next_attempt ON chunks (next_attempt_at) WHERE state = 'pending';
   CREATE INDEX chunks_uploading ON chunks (report_key) WHERE state = 'uploading';
   CREATE TABLE stage_assets (
     report_key INTEGER NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
     asset_key TEXT NOT NULL,
     tenant_id TEXT NOT NULL,
     json TEXT NOT NULL,
     PRIMARY KEY (report_key, asset_key)
   ) WITHOUT ROWID;`,
];

/**
 * Opens (creating 0600 in a 0700 directory) and migrates the outbox database.
 * Pragmas are set on every open: `auto_vacuum` only takes effect before the
 * first table, the others are per connection.
 * @throws {@link StoreError} `OUTPOST_STORE_SCHEMA_TOO_NEW` when a newer version wrote the file
 */
export function openChunkDatabase(path: string): Database.Database {
  if (path !== ':memory:') ensurePrivateFile(path);
  const db = new Database(path);
  try {
    db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    // After a checkpoint the WAL file is cut back to 4 MiB, so its size on disk stays bounded.
    db.pragma('journal_size_limit = 4194304');
    migrate(db);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > CHUNK_SCHEMA_VERSION) {
    throw new StoreError(
      'OUTPOST_STORE_SCHEMA_TOO_NEW',
      `The outbox database has schema version ${version}, newer than this version of outpost-sdk understands (${CHUNK_SCHEMA_VERSION}); nothing was changed`,
    );
  }
  for (let v = version; v < CHUNK_SCHEMA_VERSION; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] as string);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}
