/**
 * Options of {@link createIngestHandler}: declared, defaulted and validated once.
 * The security limits live here.
 */
import * as v from '../internal/validate.js';
import { MAX_CHUNKS_PER_REPORT } from '../internal/protocol.js';
import type { IngestStore } from './store.js';

/** A report handed to `onReport`, reassembled from its chunks (or as sent whole). */
export type IngestedReport = Record<string, unknown>;

/** What `onReport` is told besides the report. */
export interface ReportInfo {
  /** Tenant the report was uploaded by, as returned by `authenticate`. */
  readonly tenantId: string;
  /** The report id the agent chose (`Outpost-Report-Id`). */
  readonly reportId: string;
  /** 1 for a whole report. */
  readonly totalChunks: number;
  /** Uncompressed size of the report's JSON, in bytes (sum over chunks). */
  readonly rawBytes: number;
}

/**
 * Maps a bearer token to a tenant id (1–256 characters of `[A-Za-z0-9_-]`),
 * or `undefined` to refuse it with 401. May be async. Compare secrets in
 * constant time: see {@link staticTokenAuthenticator}.
 */
export type Authenticate = (token: string) => string | undefined | Promise<string | undefined>;

/** Options of {@link createIngestHandler}. */
export interface IngestHandlerOptions {
  /** Token → tenant. Every row is keyed by the tenant it returns. */
  readonly authenticate: Authenticate;
  /**
   * Receives each completed report, after its last chunk is stored. If it
   * throws or rejects, the report stays pending and is offered again by
   * `redeliverPending()` (run at creation and on demand). Called once per
   * report in normal operation; after a crash (or a store failure) between
   * `onReport` resolving and the report being marked delivered, it is called
   * again: make it idempotent on `(tenantId, reportId)`.
   */
  readonly onReport: (report: IngestedReport, info: ReportInfo) => void | Promise<void>;
  /** Storage: an {@link IngestStore}, or a SQLite file path (`':memory:'` for tests). */
  readonly store: IngestStore | string;
  /** Largest request body on the wire, in bytes. @default 10485760 (10 MiB) */
  readonly maxCompressedSizeBytes?: number;
  /** Largest uncompressed body, from the zstd frame headers, in bytes. @default 52428800 (50 MiB) */
  readonly maxDecompressedSizeBytes?: number;
  /** Largest declared uncompressed/compressed ratio. @default 100 */
  readonly maxCompressionRatio?: number;
  /** Largest uncompressed size of a whole report (sum of its chunks), in bytes. @default 268435456 (256 MiB) */
  readonly maxReportSizeBytes?: number;
  /**
   * Most JSON values (objects, arrays, strings, numbers…) in one report, and so
   * in one chunk, counted before parsing. Bytes do not bound what parsing
   * costs (50 MiB of `{},{},…` is 17 million objects); this does. About 15
   * values per typical finding. @default 8000000
   */
  readonly maxJsonValues?: number;
  /** Most chunks per report (the protocol allows 10 000; a server may allow fewer). @default 10000 */
  readonly maxChunksPerReport?: number;
  /** Time allowed to receive a request body, in milliseconds; slower clients get 408. @default 60000 (60 s) */
  readonly bodyTimeoutMs?: number;
  /**
   * Requests processed at once; more get 503 with `Retry-After`. Each holds at
   * most `maxCompressedSizeBytes` of body and `maxDecompressedSizeBytes`
   * decompressed; parsing runs one body at a time, bounded by `maxJsonValues`;
   * deliveries run one report at a time. @default 64
   */
  readonly maxConcurrentRequests?: number;
  /**
   * Requests of one tenant processed at once; more get 429 with `Retry-After`,
   * so one tenant cannot take every slot of `maxConcurrentRequests`. @default 16
   */
  readonly maxConcurrentRequestsPerTenant?: number;
  /** Time `authenticate` may take, in milliseconds; beyond it the request gets 503. @default 10000 (10 s) */
  readonly authenticateTimeoutMs?: number;
  /** `Retry-After` sent with 409, 429 and 503, in seconds. @default 1 */
  readonly retryAfterSeconds?: number;
  /** Free chunk bodies once `onReport` has succeeded (digests are kept, so repeats still dedupe). @default true */
  readonly dropChunksOnDelivery?: boolean;
  /**
   * Incomplete reports whose first chunk is older than this, in milliseconds,
   * are deleted by `prune()` (run hourly): an agent that never sends the rest
   * cannot fill the disk. Set it above the agents' own retention. @default 604800000 (7 days)
   */
  readonly incompleteReportTtlMs?: number;
  /**
   * Delivered reports older than this, in milliseconds, are forgotten by
   * `prune()`: after it, a repeat of one of their chunks is stored and
   * delivered anew instead of being answered as a duplicate. @default 2592000000 (30 days)
   */
  readonly deliveredReportTtlMs?: number;
}

/** Defaults of {@link IngestHandlerOptions}. */
export const ingestDefaults = Object.freeze({
  /** 10 MiB. */
  maxCompressedSizeBytes: 10 * 1024 * 1024,
  /** 50 MiB. */
  maxDecompressedSizeBytes: 50 * 1024 * 1024,
  /** 100:1. */
  maxCompressionRatio: 100,
  /** 256 MiB. */
  maxReportSizeBytes: 256 * 1024 * 1024,
  /** 8 million values. */
  maxJsonValues: 8_000_000,
  /** 10 000 chunks, the protocol maximum. */
  maxChunksPerReport: MAX_CHUNKS_PER_REPORT,
  /** 60 s. */
  bodyTimeoutMs: 60_000,
  /** 64 requests. */
  maxConcurrentRequests: 64,
  /** 16 requests. */
  maxConcurrentRequestsPerTenant: 16,
  /** 10 s. */
  authenticateTimeoutMs: 10_000,
  /** 1 s. */
  retryAfterSeconds: 1,
  /** Chunk bodies are freed after delivery. */
  dropChunksOnDelivery: true,
  /** 7 days. */
  incompleteReportTtlMs: 7 * 24 * 3_600_000,
  /** 30 days. */
  deliveredReportTtlMs: 30 * 24 * 3_600_000,
} as const);

/** {@link IngestHandlerOptions} after defaults and validation (the store still unopened when given as a path). */
export type ResolvedIngestOptions = Required<IngestHandlerOptions>;

const KEYS = ['authenticate', 'onReport', 'store', ...Object.keys(ingestDefaults)];
const STORE_METHODS = ['getReport', 'putChunk', 'readChunks', 'markDelivered', 'listPendingDeliveries', 'prune', 'close'] as const;

/** Merges defaults and validates. @throws {@link InvalidOptionError} */
export function resolveIngestOptions(options: IngestHandlerOptions): ResolvedIngestOptions {
  if (typeof options !== 'object' || options === null) v.fail('options', 'an object', options);
  v.knownKeys('createIngestHandler', options, KEYS);
  v.fn('authenticate', options.authenticate);
  v.fn('onReport', options.onReport);
  const store = options.store;
  if (typeof store !== 'string') {
    const missing = STORE_METHODS.filter((m) => typeof (store as unknown as Record<string, unknown> | null)?.[m] !== 'function');
    if (typeof store !== 'object' || store === null || missing.length > 0) {
      v.fail('store', `an IngestStore (with ${STORE_METHODS.join(', ')}) or a SQLite file path`, store, missing.length > 0 && missing.length < STORE_METHODS.length ? `Missing: ${missing.join(', ')}` : '');
    }
  }
  if (typeof store === 'string') v.nonEmptyString('store', store);
  const o = { ...ingestDefaults, ...Object.fromEntries(Object.entries(options).filter(([, x]) => x !== undefined)) } as ResolvedIngestOptions;
  v.integer('maxCompressedSizeBytes', o.maxCompressedSizeBytes, 1);
  v.integer('maxDecompressedSizeBytes', o.maxDecompressedSizeBytes, 1);
  v.number('maxCompressionRatio', o.maxCompressionRatio, 1);
  v.integer('maxReportSizeBytes', o.maxReportSizeBytes, 1);
  v.integer('maxChunksPerReport', o.maxChunksPerReport, 1, MAX_CHUNKS_PER_REPORT);
  v.timerMs('bodyTimeoutMs', o.bodyTimeoutMs, 1);
  v.integer('maxConcurrentRequests', o.maxConcurrentRequests, 1);
  v.integer('maxConcurrentRequestsPerTenant', o.maxConcurrentRequestsPerTenant, 1);
  v.integer('maxJsonValues', o.maxJsonValues, 1);
  v.timerMs('authenticateTimeoutMs', o.authenticateTimeoutMs, 1);
  v.integer('retryAfterSeconds', o.retryAfterSeconds, 0);
  v.boolean('dropChunksOnDelivery', o.dropChunksOnDelivery);
  v.integer('incompleteReportTtlMs', o.incompleteReportTtlMs, 1);
  v.integer('deliveredReportTtlMs', o.deliveredReportTtlMs, 1);
  if (o.maxReportSizeBytes < o.maxDecompressedSizeBytes) {
    v.fail('maxReportSizeBytes', `>= \`maxDecompressedSizeBytes\` (${o.maxDecompressedSizeBytes})`, o.maxReportSizeBytes);
  }
  return Object.freeze(o);
}
