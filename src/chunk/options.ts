/**
 * Options of the {@link ChunkManager}: declared, defaulted and validated here, once.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { InvalidOptionError } from '../errors.js';
import { uploaderSource } from '../internal/uploader-source.js';
import * as v from '../internal/validate.js';
import { RetryPolicy, type RetryPolicyOptions, type Uploader } from '../transport/index.js';

/** Where chunks go: one {@link Uploader} for every tenant, or a function returning the uploader (and so the token) of a tenant. */
export type UploaderSource = Uploader | ((tenantId: string) => Uploader);

/** What the outbox does when a submission would take it over `maxStorageMB` and cleanup cannot make room. */
export type StorageFullPolicy = 'reject' | 'drop-oldest';

/** Options of {@link ChunkManager}. Sizes are in bytes unless the name says MB (1 MB = 1 MiB = 1 048 576 bytes). */
export interface ChunkManagerOptions {
  /** Sends the stored chunks. Required. */
  readonly uploader: UploaderSource;
  /** SQLite file of the outbox; created 0600 in a 0700 directory. @default `~/.outpost/chunks.db` */
  readonly databasePath?: string;
  /** A report with at least this many findings is chunked. @default 2000 */
  readonly minFindingsForChunking?: number;
  /** A report with at least this many assets is chunked. @default 200 */
  readonly minAssetsForChunking?: number;
  /** A report whose JSON is at least this large is chunked. @default 5242880 (5 MiB) */
  readonly minSizeForChunkingBytes?: number;
  /** Most findings in one chunk. @default 500 */
  readonly maxFindingsPerChunk?: number;
  /** Most assets in one chunk (the assets its findings refer to count). @default 100 */
  readonly maxAssetsPerChunk?: number;
  /**
   * Largest uncompressed JSON of one chunk, enforced: chunks are cut to fit, a
   * report over it is always chunked, and one item (with the assets it refers
   * to) that cannot fit is refused with `OUTPOST_CHUNK_ITEM_TOO_LARGE`.
   * @default 2097152 (2 MiB)
   */
  readonly maxChunkSizeBytes?: number;
  /** Pause of each upload worker between two uploads, in ms. @default 100 */
  readonly uploadDelayMs?: number;
  /** Uploads in flight at once. @default 2 */
  readonly maxConcurrentUploads?: number;
  /**
   * Quick retries of a chunk on the retry policy's growing backoff. After them
   * the chunk is not dropped: it is retried every `maxRetryDelayMs` (jittered)
   * until `retentionHours` after it was stored, then it is `dead`.
   * @default 3
   */
  readonly maxRetries?: number;
  /** How long data is kept: pending chunks older than this are given up (`dead`); dead and completed reports older than this are deleted. In hours. @default 24 */
  readonly retentionHours?: number;
  /** Cap on the data the database holds (pages in use), in MiB; cleanup also runs when the file + WAL on disk exceed it. @default 500 */
  readonly maxStorageMB?: number;
  /** zstd level of stored chunks, 1–22. @default 3 */
  readonly compressionLevel?: number;
  /** Free a chunk's body as soon as the server acknowledged it (its metadata is kept). @default true */
  readonly autoCleanupOnUpload?: boolean;
  /** Delete every row of a report once all its chunks are acknowledged. @default true */
  readonly cleanupOnReportComplete?: boolean;
  /** Period of the retention cleanup, in minutes (at least 1/60, one second); 0 turns the timer off (call `cleanup()` yourself). @default 15 */
  readonly cleanupIntervalMinutes?: number;
  /** When over `maxStorageMB`, run the cleanup layers at once (on submit and on every periodic pass) instead of waiting for retention. @default true */
  readonly aggressiveCleanup?: boolean;
  /** `'reject'`: refuse new reports with `StorageFullError`; `'drop-oldest'`: delete the oldest pending reports to make room (event `storage-full` names them). @default 'reject' */
  readonly onStorageFull?: StorageFullPolicy;
  /** Backoff of failed uploads: a {@link RetryPolicy} or its options. @default new RetryPolicy() (5 s × 2ⁿ, full jitter, 5 min cap, Retry-After honoured) */
  readonly retryPolicy?: RetryPolicy | RetryPolicyOptions;
  /**
   * Ids of the assets a finding refers to, so its chunk carries them. Ids are
   * strings or numbers, compared as the server does (`"1"` and `1` differ).
   * @default reads `assetId`, `asset_id`, `assetIds` and `asset_ids` of the finding
   */
  readonly findingAssetIds?: (finding: unknown) => Iterable<string | number>;
  /** Clock in ms since the epoch, for tests. @default Date.now */
  readonly now?: () => number;
}

/** Defaults of {@link ChunkManagerOptions}. */
export const chunkManagerDefaults = Object.freeze({
  /** `~/.outpost/chunks.db`. */
  databasePath: join(homedir(), '.outpost', 'chunks.db'),
  /** A report with at least this many findings is chunked. */
  minFindingsForChunking: 2000,
  /** A report with at least this many assets is chunked. */
  minAssetsForChunking: 200,
  /** 5 MiB. */
  minSizeForChunkingBytes: 5 * 1024 * 1024,
  /** Most findings in one chunk. */
  maxFindingsPerChunk: 500,
  /** Most assets in one chunk. */
  maxAssetsPerChunk: 100,
  /** 2 MiB. */
  maxChunkSizeBytes: 2 * 1024 * 1024,
  /** Pause of each upload worker between uploads, in ms. */
  uploadDelayMs: 100,
  /** Uploads in flight at once. */
  maxConcurrentUploads: 2,
  /** Quick retries before the long backoff. */
  maxRetries: 3,
  /** Hours data is kept. */
  retentionHours: 24,
  /** Cap on the database size, in MiB. */
  maxStorageMB: 500,
  /** zstd level. */
  compressionLevel: 3,
  /** Free bodies once acknowledged. */
  autoCleanupOnUpload: true,
  /** Delete a report once complete. */
  cleanupOnReportComplete: true,
  /** Retention cleanup period, in minutes. */
  cleanupIntervalMinutes: 15,
  /** Clean up at once when over the cap. */
  aggressiveCleanup: true,
  /** Refuse new reports when full. */
  onStorageFull: 'reject' as StorageFullPolicy,
});

/** Validated options with every default filled in. */
export interface ResolvedChunkManagerOptions extends Required<Omit<ChunkManagerOptions, 'retryPolicy' | 'uploader'>> {
  /** The uploader of a tenant (the same one for every tenant when `uploader` was an {@link Uploader}). */
  readonly uploaderFor: (tenantId: string) => Uploader;
  /** The retry policy, built from its options when options were given. */
  readonly retryPolicy: RetryPolicy;
}

const KEYS = [...Object.keys(chunkManagerDefaults), 'uploader', 'retryPolicy', 'findingAssetIds', 'now'];

/** Reads the asset ids a finding refers to from `assetId`, `asset_id`, `assetIds` and `asset_ids`. */
export function defaultFindingAssetIds(finding: unknown): (string | number)[] {
  if (typeof finding !== 'object' || finding === null) return [];
  const f = finding as Record<string, unknown>;
  const ids: (string | number)[] = [];
  for (const key of ['assetId', 'asset_id'] as const) {
    const id = f[key];
    if (typeof id === 'string' || typeof id === 'number') ids.push(id);
  }
  for (const key of ['assetIds', 'asset_ids'] as const) {
    const list = f[key];
    if (Array.isArray(list)) for (const id of list) if (typeof id === 'string' || typeof id === 'number') ids.push(id);
  }
  return ids;
}

/**
 * Merges `options` over {@link chunkManagerDefaults} and validates every field.
 * @throws {@link InvalidOptionError} naming the field, what was expected and what came
 */
export function resolveChunkManagerOptions(options: ChunkManagerOptions): ResolvedChunkManagerOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('ChunkManager options must be an object with at least `uploader`');
  v.knownKeys('ChunkManager', options, KEYS);
  const defined = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
  const o = { ...chunkManagerDefaults, findingAssetIds: defaultFindingAssetIds, now: Date.now, ...defined } as unknown as Required<ChunkManagerOptions>;

  const uploaderFor = uploaderSource(o.uploader, ['uploadChunk', 'uploadReport']);

  v.nonEmptyString('databasePath', o.databasePath);
  v.integer('minFindingsForChunking', o.minFindingsForChunking, 1);
  v.integer('minAssetsForChunking', o.minAssetsForChunking, 1);
  v.integer('minSizeForChunkingBytes', o.minSizeForChunkingBytes, 1);
  v.integer('maxFindingsPerChunk', o.maxFindingsPerChunk, 1);
  v.integer('maxAssetsPerChunk', o.maxAssetsPerChunk, 1);
  // A chunk must at least hold its JSON frame; 256 MiB is far past any server's body limit.
  v.integer('maxChunkSizeBytes', o.maxChunkSizeBytes, 64, 256 * 1024 * 1024);
  v.timerMs('uploadDelayMs', o.uploadDelayMs, 0);
  v.integer('maxConcurrentUploads', o.maxConcurrentUploads, 1, 64);
  v.integer('maxRetries', o.maxRetries, 0, 1000);
  v.number('retentionHours', o.retentionHours, 0);
  if (o.retentionHours <= 0 || o.retentionHours * 3_600_000 > v.MAX_TIMER_MS * 100) v.fail('retentionHours', 'a number of hours above 0 and at most 59 652 (about 6.8 years)', o.retentionHours);
  v.number('maxStorageMB', o.maxStorageMB, 1, 16 * 1024 * 1024);
  v.integer('compressionLevel', o.compressionLevel, 1, 22);
  v.boolean('autoCleanupOnUpload', o.autoCleanupOnUpload);
  v.boolean('cleanupOnReportComplete', o.cleanupOnReportComplete);
  v.number('cleanupIntervalMinutes', o.cleanupIntervalMinutes, 0);
  const intervalMs = o.cleanupIntervalMinutes * 60_000;
  if (intervalMs > v.MAX_TIMER_MS || (intervalMs > 0 && intervalMs < 1000)) {
    v.fail('cleanupIntervalMinutes', `0 (off) or a number of minutes from 1/60 (one second) to ${Math.floor(v.MAX_TIMER_MS / 60_000)}`, o.cleanupIntervalMinutes);
  }
  v.boolean('aggressiveCleanup', o.aggressiveCleanup);
  if (o.onStorageFull !== 'reject' && o.onStorageFull !== 'drop-oldest') v.fail('onStorageFull', "'reject' or 'drop-oldest'", o.onStorageFull);
  v.fn('findingAssetIds', o.findingAssetIds);
  v.fn('now', o.now);
  const policy = o.retryPolicy as unknown;
  let retryPolicy: RetryPolicy;
  if (policy === undefined) retryPolicy = new RetryPolicy();
  else if (policy instanceof RetryPolicy) retryPolicy = policy;
  else if (typeof policy === 'object' && policy !== null) retryPolicy = new RetryPolicy(policy as RetryPolicyOptions);
  else v.fail('retryPolicy', 'a RetryPolicy or its options', policy);
  const { uploader: _uploader, ...rest } = o;
  return Object.freeze({ ...rest, uploaderFor, retryPolicy });
}
