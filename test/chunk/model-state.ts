/**
 * The model of the model-based ChunkManager test: what the outbox should hold
 * (per report its state and per chunk its state, attempts, next attempt and
 * body), which uploads should be in flight, and which events each step should
 * emit. It predicts the outbox exactly, so the test compares, never guesses.
 */
import type { Report } from '../../src/chunk/index.js';
import { makeReport } from '../helpers/chunk.js';

export const HOUR_MS = 3_600_000;
/** `retentionHours` of every run. */
export const RETENTION_HOURS = 1;
/** Where the test clock starts, ms since the epoch. */
export const T0 = 1_700_000_000_000;
/** Tiny backoff, no jitter: retries 1, 2, 4 ms after the clock (the test's clock only moves on an `advance` command). */
export const RETRY_POLICY = { retryDelayMs: 1, maxRetryDelayMs: 4, jitter: 'none', random: () => 0 } as const;

/** The ids a run uses: few, so that submissions meet stored reports (duplicates, conflicts, ids stored again). */
export const TENANTS = ['tenant-a', 'tenant-b'] as const;
export const IDS = ['r0', 'r1', 'r2'] as const;

/** The options a run varies. */
export interface RunConfig {
  readonly maxConcurrentUploads: number;
  readonly maxRetries: number;
  readonly autoCleanupOnUpload: boolean;
  readonly cleanupOnReportComplete: boolean;
}

/** The content of a submission; the same spec is the same content. */
export interface ContentSpec {
  readonly name: string;
  readonly findings: number;
  readonly assets: number;
  /** Whether the manager (`minFindingsForChunking: 20`, `maxFindingsPerChunk: 10`) splits it. */
  readonly chunked: boolean;
}

export const CONTENTS: readonly ContentSpec[] = [
  { name: 'whole-3', findings: 3, assets: 2, chunked: false },
  { name: 'whole-8', findings: 8, assets: 3, chunked: false },
  { name: 'whole-0', findings: 0, assets: 0, chunked: false },
  { name: 'chunked-20', findings: 20, assets: 4, chunked: true },
  { name: 'chunked-35', findings: 35, assets: 30, chunked: true },
];

/** The report a spec stands for (its name in the metadata, so two specs never share content). */
export function reportOf(spec: ContentSpec): Report {
  const report = makeReport(spec.findings, spec.assets);
  return { ...report, metadata: { ...(report.metadata as object), content: spec.name } };
}

export type ChunkState = 'pending' | 'uploaded' | 'dead';

export interface ModelChunk {
  state: ChunkState;
  attempts: number;
  nextAttemptAt: number;
  /** `'either'`: the test does not care (a dead chunk's body after a late answer). */
  hasBody: boolean | 'either';
  uploadedAt: number;
}

/** One stored incarnation of a report (a report id can be stored again once its rows are deleted). */
export interface ModelReport {
  readonly uid: number;
  readonly tenantId: string;
  readonly reportId: string;
  readonly content: ContentSpec;
  readonly priority: number;
  readonly createdAt: number;
  readonly total: number;
  readonly chunks: ModelChunk[];
  state: 'pending' | 'completed' | 'dead';
  updatedAt: number;
  deadReason: string | undefined;
  /** Why it died: the only two ways allowed. */
  cause: 'rejected' | 'expired' | undefined;
  deleted: boolean;
  /** The server's copy was reassembled and compared with the content. */
  verified: boolean;
}

/** An upload the model expects in flight; `fresh` until the test matched it with a real call. */
export interface InFlight {
  readonly report: ModelReport;
  readonly index: number;
  fresh: boolean;
}

export const keyOf = (tenantId: string, reportId: string): string => `${tenantId}/${reportId}`;
const ref = (r: ModelReport, i: number): string => `${keyOf(r.tenantId, r.reportId)}#${i}`;

/** Normalised event lines, the same for the model and the manager. */
export const line = {
  created: (t: string, r: string, i: number, n: number) => `created ${t}/${r}#${i} of ${n}`,
  uploaded: (t: string, r: string, i: number, attempts: number, status: number) => `uploaded ${t}/${r}#${i} attempts=${attempts} status=${status}`,
  retry: (t: string, r: string, i: number, attempt: number, phase: string, delayMs: number) => `retry ${t}/${r}#${i} attempt=${attempt} ${phase} delay=${delayMs}`,
  dead: (t: string, r: string, i: number, reason: string) => `dead ${t}/${r}#${i} ${reason}`,
  completed: (t: string, r: string, n: number, durationMs: number) => `completed ${t}/${r} chunks=${n} after=${durationMs}ms`,
};

/** The model of one run. */
export class Model {
  clock = T0;
  /** Reports stored now, by tenant/id. */
  readonly reports = new Map<string, ModelReport>();
  /** Every incarnation ever accepted. */
  readonly accepted: ModelReport[] = [];
  /** Uploads in flight, in the order the uploader saw them. */
  inFlight: InFlight[] = [];
  /** Events expected since the last comparison. */
  expected: string[] = [];
  /** Events a step may emit but need not (see `lateAnswers`). */
  optional: string[] = [];
  #uid = 0;

  /**
   * @param lateAnswers - what an answer to an upload whose chunk was given up meanwhile (expired, its
   *   report dead or deleted) may do besides reaching the server. `'silent'`: nothing — no event, since a
   *   `chunk-dead` chunk "will never be uploaded". `'tolerant'`: the events the manager emits for it today
   *   (`chunk-uploaded`, `chunk-retry` or a second `chunk-dead`) are allowed, not required; no stored row
   *   may change either way.
   * @param cleanupWhileUploading - see the field
   */
  constructor(
    readonly cfg: RunConfig,
    readonly lateAnswers: 'silent' | 'tolerant',
    /** Whether a cleanup command may run while uploads are in flight (a generation constraint, read by the commands). */
    readonly cleanupWhileUploading: boolean,
  ) {}

  isLive(r: ModelReport): boolean {
    return !r.deleted && this.reports.get(keyOf(r.tenantId, r.reportId)) === r;
  }

  isInFlight(r: ModelReport, index: number): boolean {
    return this.inFlight.some((f) => f.report === r && f.index === index);
  }

  /** A new report was stored with `total` chunks. */
  accept(tenantId: string, reportId: string, content: ContentSpec, priority: number, total: number): void {
    const r: ModelReport = {
      uid: this.#uid++,
      tenantId,
      reportId,
      content,
      priority,
      createdAt: this.clock,
      total,
      chunks: Array.from({ length: total }, () => ({ state: 'pending' as const, attempts: 0, nextAttemptAt: 0, hasBody: true, uploadedAt: 0 })),
      state: 'pending',
      updatedAt: this.clock,
      deadReason: undefined,
      cause: undefined,
      deleted: false,
      verified: false,
    };
    this.reports.set(keyOf(tenantId, reportId), r);
    this.accepted.push(r);
    for (let i = 0; i < total; i++) this.expected.push(line.created(tenantId, reportId, i, total));
    this.claim();
  }

  /** A dead report submitted again with the same content: its rows are replaced by a new incarnation (see `accept`). */
  replaceDead(r: ModelReport): void {
    if (r.state !== 'dead' || !this.isLive(r)) throw new Error(`${keyOf(r.tenantId, r.reportId)} is not a stored dead report`);
    this.#delete(r);
  }

  /** The loop wakes: it claims the best ready chunks (priority, then age, then report, then index) into its free slots. */
  claim(): void {
    const free = this.cfg.maxConcurrentUploads - this.inFlight.length;
    if (free <= 0) return;
    const ready: InFlight[] = [];
    for (const r of this.reports.values()) {
      r.chunks.forEach((c, index) => {
        if (c.state === 'pending' && c.nextAttemptAt <= this.clock && !this.isInFlight(r, index)) ready.push({ report: r, index, fresh: true });
      });
    }
    ready.sort((a, b) => b.report.priority - a.report.priority || a.report.createdAt - b.report.createdAt || a.report.uid - b.report.uid || a.index - b.index);
    this.inFlight.push(...ready.slice(0, free));
  }

  /** The upload at `pos` succeeded. */
  uploadOk(pos: number, status: number): void {
    const [f] = this.inFlight.splice(pos, 1);
    if (f === undefined) throw new Error(`no upload in flight at ${pos}`);
    const r = f.report;
    const c = r.chunks[f.index] as ModelChunk;
    if (this.isLive(r) && c.state === 'pending') {
      c.state = 'uploaded';
      c.attempts++;
      c.uploadedAt = this.clock;
      if (this.cfg.autoCleanupOnUpload) c.hasBody = false;
      this.expected.push(line.uploaded(r.tenantId, r.reportId, f.index, c.attempts, status));
      if (r.chunks.every((x) => x.state === 'uploaded')) {
        r.state = 'completed';
        r.updatedAt = this.clock;
        this.expected.push(line.completed(r.tenantId, r.reportId, r.total, this.clock - r.createdAt));
        if (this.cfg.cleanupOnReportComplete) this.#delete(r);
      }
    } else {
      // The chunk was given up while its upload was in flight: the server has it, the outbox keeps it dead.
      if (this.isLive(r) && this.cfg.autoCleanupOnUpload) c.hasBody = 'either';
      if (this.lateAnswers === 'tolerant') this.optional.push(line.uploaded(r.tenantId, r.reportId, f.index, c.attempts + 1, status));
    }
    this.claim();
  }

  /** The upload at `pos` failed: a 400 (`permanent`) or a 503. */
  uploadFail(pos: number, permanent: boolean): void {
    const [f] = this.inFlight.splice(pos, 1);
    if (f === undefined) throw new Error(`no upload in flight at ${pos}`);
    const r = f.report;
    const c = r.chunks[f.index] as ModelChunk;
    if (this.isLive(r) && c.state === 'pending') {
      const expiresAt = r.createdAt + RETENTION_HOURS * HOUR_MS;
      if (permanent) this.#kill(r, f.index, 'rejected', `chunk ${f.index} rejected: OUTPOST_UPLOAD_HTTP_STATUS`);
      else if (this.clock >= expiresAt) this.#kill(r, f.index, 'expired', 'expired');
      else {
        const { attempt, phase, at } = this.#retry(c, expiresAt);
        c.attempts = attempt;
        c.nextAttemptAt = at;
        this.expected.push(line.retry(r.tenantId, r.reportId, f.index, attempt, phase, at - this.clock));
      }
    } else if (this.lateAnswers === 'tolerant') {
      const expiresAt = r.createdAt + RETENTION_HOURS * HOUR_MS;
      if (permanent) this.optional.push(line.dead(r.tenantId, r.reportId, f.index, 'rejected'));
      else if (this.clock >= expiresAt) this.optional.push(line.dead(r.tenantId, r.reportId, f.index, 'expired'));
      else {
        const { attempt, phase, at } = this.#retry(c, expiresAt);
        this.optional.push(line.retry(r.tenantId, r.reportId, f.index, attempt, phase, at - this.clock));
      }
    }
    this.claim();
  }

  /** The next attempt after a retryable failure: quick backoff (1, 2, 4 ms) for `maxRetries` retries, then `maxRetryDelayMs` × 0.5 (random() = 0), never past expiry. */
  #retry(c: ModelChunk, expiresAt: number): { attempt: number; phase: 'quick' | 'long'; at: number } {
    const attempt = c.attempts + 1;
    const phase = attempt <= this.cfg.maxRetries ? 'quick' : 'long';
    const { retryDelayMs, maxRetryDelayMs } = RETRY_POLICY;
    const delay = phase === 'quick' ? Math.min(maxRetryDelayMs, retryDelayMs * 2 ** (attempt - 1)) : Math.floor(maxRetryDelayMs * 0.5);
    return { attempt, phase, at: Math.min(this.clock + delay, expiresAt) };
  }

  /** The clock moved: the retry timer wakes the loop. */
  advance(ms: number): void {
    this.clock += ms;
    this.claim();
  }

  /** `cleanup()`: expire pending reports past retention, delete completed and dead ones past it, free old uploaded bodies. */
  cleanup(): void {
    const cutoff = this.clock - RETENTION_HOURS * HOUR_MS;
    this.#expire(cutoff);
    this.#deleteWhere('completed', cutoff);
    this.#deleteWhere('dead', cutoff);
    for (const r of this.reports.values()) for (const c of r.chunks) if (c.state === 'uploaded' && c.uploadedAt < cutoff) c.hasBody = false;
  }

  /** `cleanupToSize(0)`: every layer but dropping pending reports (`onStorageFull: 'reject'`). */
  cleanupToSize0(): void {
    for (const r of this.reports.values()) for (const c of r.chunks) if (c.state === 'uploaded') c.hasBody = false;
    this.#deleteWhere('completed', undefined);
    this.#expire(this.clock - RETENTION_HOURS * HOUR_MS);
    this.#deleteWhere('dead', undefined);
  }

  /** close() then a new manager on the same file: uploads in flight go back to pending, the start-up cleanup runs, then the loop claims. */
  restart(): void {
    this.inFlight = [];
    this.cleanup();
    this.claim();
  }

  #expire(cutoff: number): void {
    for (const r of [...this.reports.values()].sort((a, b) => a.uid - b.uid)) {
      if (r.state !== 'pending' || r.createdAt >= cutoff) continue;
      r.chunks.forEach((c, i) => {
        if (c.state !== 'pending') return;
        c.state = 'dead';
        this.expected.push(line.dead(r.tenantId, r.reportId, i, 'expired'));
      });
      this.#die(r, 'expired', 'expired');
    }
  }

  /** A chunk failed for good: it dies with `reason`, the report's other unsent chunks with `report-dead`. */
  #kill(r: ModelReport, index: number, reason: 'rejected' | 'expired', deadReason: string): void {
    this.expected.push(line.dead(r.tenantId, r.reportId, index, reason));
    r.chunks.forEach((c, i) => {
      if (c.state !== 'pending') return;
      c.state = 'dead';
      if (i !== index) this.expected.push(line.dead(r.tenantId, r.reportId, i, 'report-dead'));
    });
    this.#die(r, reason, deadReason);
  }

  #die(r: ModelReport, cause: 'rejected' | 'expired', deadReason: string): void {
    r.state = 'dead';
    r.cause = cause;
    r.deadReason = deadReason;
    r.updatedAt = this.clock;
  }

  #deleteWhere(state: 'completed' | 'dead', cutoff: number | undefined): void {
    for (const r of [...this.reports.values()]) if (r.state === state && (cutoff === undefined || r.updatedAt < cutoff)) this.#delete(r);
  }

  #delete(r: ModelReport): void {
    r.deleted = true;
    this.reports.delete(keyOf(r.tenantId, r.reportId));
  }

  /** The chunk states `getReport()` should show (`uploading` = pending with an upload in flight). */
  chunkView(r: ModelReport): { index: number; state: string; attempts: number; nextAttemptAt: number; hasBody: boolean | 'either' }[] {
    return r.chunks.map((c, index) => ({
      index,
      state: c.state === 'pending' && this.isInFlight(r, index) ? 'uploading' : c.state,
      attempts: c.attempts,
      nextAttemptAt: c.nextAttemptAt,
      hasBody: c.hasBody,
    }));
  }

  describeInFlight(): string {
    return this.inFlight.map((f) => `${ref(f.report, f.index)}${this.isLive(f.report) ? '' : ' (deleted)'}`).join(', ');
  }
}
