/**
 * Shared helpers of the pipeline tests: an in-process uploader whose answers
 * the test gives (now or later), an event recorder that checks the stats
 * invariant inside every event, and `until()`, which lets real I/O (zstd on
 * libuv's thread pool, SQLite) run under fake timers.
 */
import { vi } from 'vitest';
import type { PipelineItem, PipelineOptions, PipelineStats, UploadPipelineEvents } from '../../src/pipeline/index.js';
import { UploadPipeline } from '../../src/pipeline/index.js';
import type { ReportUpload, UploadResult, Uploader } from '../../src/transport/index.js';

// Captured before any test fakes the timers: these stay real.
const realSetImmediate = globalThis.setImmediate;
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

/** A successful answer. */
export const OK: UploadResult = Object.freeze({ status: 201, duplicate: false });

/** One real turn of the event loop (poll phase included), whether or not the timers are fake. */
export function realTurn(): Promise<void> {
  return new Promise<void>((resolve) => realSetImmediate(resolve));
}

/**
 * Waits until `cond()` holds, letting real I/O progress and firing fake timers
 * that are due now (never moving the fake clock). Throws after `timeoutMs` of
 * real time, naming `what`.
 */
export async function until(cond: () => boolean, what = 'a condition', timeoutMs = 5_000): Promise<void> {
  let expired = false;
  const deadline = realSetTimeout(() => {
    expired = true;
  }, timeoutMs);
  try {
    for (;;) {
      if (cond()) return;
      if (expired) throw new Error(`Timed out waiting for ${what}`);
      await realTurn();
      if (vi.isFakeTimers()) await vi.advanceTimersByTimeAsync(0);
    }
  } finally {
    realClearTimeout(deadline);
  }
}

/** Lets the loop run `turns` real turns (and due fake timers): for asserting that something does NOT happen. */
export async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) {
    await realTurn();
    if (vi.isFakeTimers()) await vi.advanceTimersByTimeAsync(0);
  }
}

/** One call the {@link DeferredUploader} received, answered by the test. */
export interface Call {
  readonly upload: ReportUpload;
  readonly reportId: string;
  /** The signal the pipeline passed. */
  readonly signal: AbortSignal;
  /** 1 for the first call with this report id. */
  readonly attempt: number;
  /** `Date.now()` when the call came (the fake clock under fake timers). */
  readonly at: number;
  settled: boolean;
  resolve(result?: UploadResult): void;
  reject(error: Error): void;
}

/**
 * An in-process {@link Uploader}. Each `uploadReport` call is recorded and
 * stays pending until the test answers it (`call.resolve()`, `call.reject()`),
 * unless `answer` answers at once. `honourSignal` (default) rejects a call
 * with its signal's reason when the signal aborts, like a real uploader.
 */
export class DeferredUploader implements Uploader {
  readonly calls: Call[] = [];
  /** Answers a call at once: a result or an error settles it, `undefined` leaves it pending. */
  answer: (call: Call) => UploadResult | Error | undefined = () => undefined;
  /** Whether a call rejects when its signal aborts; `false` makes an uploader that ignores its signal. */
  honourSignal = true;
  /** Calls not settled yet. */
  inFlight = 0;
  /** Most calls unsettled at once. */
  maxInFlight = 0;
  readonly #attempts = new Map<string, number>();

  uploadChunk(): Promise<UploadResult> {
    return Promise.reject(new Error('the pipeline sends whole reports only'));
  }

  uploadReport(upload: ReportUpload, options: { signal?: AbortSignal | undefined } = {}): Promise<UploadResult> {
    const signal = options.signal ?? new AbortController().signal;
    const attempt = (this.#attempts.get(upload.reportId) ?? 0) + 1;
    this.#attempts.set(upload.reportId, attempt);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    let call!: Call;
    const promise = new Promise<UploadResult>((resolve, reject) => {
      const done = (): boolean => {
        if (call.settled) return false;
        call.settled = true;
        this.inFlight--;
        signal.removeEventListener('abort', onAbort);
        return true;
      };
      const onAbort = (): void => {
        if (done()) reject(signal.reason);
      };
      call = {
        upload,
        reportId: upload.reportId,
        signal,
        attempt,
        at: Date.now(),
        settled: false,
        resolve: (result = OK) => {
          if (done()) resolve(result);
        },
        reject: (error) => {
          if (done()) reject(error);
        },
      };
      if (this.honourSignal) signal.addEventListener('abort', onAbort, { once: true });
    });
    this.calls.push(call);
    const now = this.answer(call);
    if (now instanceof Error) call.reject(now);
    else if (now !== undefined) call.resolve(now);
    return promise;
  }

  /** The calls for `reportId`, in order. */
  of(reportId: string): Call[] {
    return this.calls.filter((c) => c.reportId === reportId);
  }

  /** The calls still pending. */
  pending(): Call[] {
    return this.calls.filter((c) => !c.settled);
  }

  /** The report ids called, in order. */
  order(): string[] {
    return this.calls.map((c) => c.reportId);
  }
}

export const EVENTS = ['submitted', 'started', 'retry', 'completed', 'failed', 'spilled'] as const satisfies readonly (keyof UploadPipelineEvents)[];
export type EventName = (typeof EVENTS)[number];

/** One event a {@link Recorder} saw. */
export interface Entry {
  readonly event: EventName;
  readonly id: string;
  /** The item (a live view: read `attempts` etc. from `args` or at the time). */
  readonly item: PipelineItem;
  /** The event's arguments after the item. */
  readonly args: readonly unknown[];
  /** `Date.now()` when it fired. */
  readonly at: number;
  readonly stats: PipelineStats;
}

/** Whether `s` breaks a documented stats invariant; the message says which. */
export function statsViolation(s: PipelineStats, workers: number): string | undefined {
  const sum = s.queued + s.inProgress + s.retrying + s.completed + s.failed + s.spilled;
  if (s.submitted !== sum) return `submitted ${s.submitted} != queued+inProgress+retrying+completed+failed+spilled ${sum}`;
  if (s.inProgress !== s.uploading + s.spilling) return `inProgress ${s.inProgress} != uploading ${s.uploading} + spilling ${s.spilling}`;
  if (s.uploading > workers) return `uploading ${s.uploading} > workers ${workers}`;
  for (const [key, value] of Object.entries(s)) if (value < 0) return `${key} is negative (${value})`;
  return undefined;
}

/** Records every event of a pipeline and checks the stats invariant inside each. */
export class Recorder {
  readonly log: Entry[] = [];
  readonly violations: string[] = [];

  constructor(readonly pipeline: UploadPipeline) {
    for (const event of EVENTS) {
      pipeline.on(event, (item: PipelineItem, ...args: unknown[]) => {
        const stats = pipeline.stats();
        const bad = statsViolation(stats, pipeline.options.workers);
        if (bad !== undefined) this.violations.push(`${event} ${item.id}: ${bad}`);
        this.log.push({ event, id: item.id, item, args, at: Date.now(), stats });
      });
    }
  }

  /** The entries of `event` (for `id` when given). */
  of(event: EventName, id?: string): Entry[] {
    return this.log.filter((e) => e.event === event && (id === undefined || e.id === id));
  }

  /** The terminal entries (`completed`, `failed`, `spilled`) of `id`. */
  terminals(id: string): Entry[] {
    return this.log.filter((e) => e.id === id && (e.event === 'completed' || e.event === 'failed' || e.event === 'spilled'));
  }

  /** The one terminal entry of `id`, or `undefined` while it is live. */
  outcome(id: string): Entry | undefined {
    return this.terminals(id)[0];
  }

  /** `[event, reason]` of the terminal entry of `id` (reason: the failed or spilled reason). */
  ended(id: string): [EventName, unknown] | undefined {
    const e = this.outcome(id);
    if (e === undefined) return undefined;
    return [e.event, e.event === 'failed' ? e.args[1] : e.event === 'spilled' ? e.args[0] : undefined];
  }

  /** Waits until `id` has its terminal event. */
  async settled(id: string): Promise<Entry> {
    await until(() => this.outcome(id) !== undefined, `report ${id} to settle`);
    return this.outcome(id) as Entry;
  }
}

/** Creates pipelines and closes them all after a test. */
export class Pipelines {
  readonly #open: UploadPipeline[] = [];
  readonly #recorders: Recorder[] = [];

  /** A new pipeline with a {@link Recorder}. Started unless `start` is false. */
  open(options: PipelineOptions, start = true): { p: UploadPipeline; rec: Recorder } {
    const p = new UploadPipeline(options);
    this.#open.push(p);
    const rec = new Recorder(p);
    this.#recorders.push(rec);
    if (start) p.start();
    return { p, rec };
  }

  /**
   * Stops every pipeline, aborting uploads in flight at once; under fake
   * timers it moves the clock until they are stopped (a test may have called
   * `stop()` with a long timeout already). Then checks what must hold for
   * every pipeline: the stats invariant held in every event, and every
   * submitted id ended in exactly one `completed`, `failed` or `spilled`.
   */
  async closeAll(): Promise<void> {
    const recorders = this.#recorders.splice(0);
    const pipelines = this.#open.splice(0);
    let done = false;
    const all = Promise.all(pipelines.map((p) => p.stop({ timeoutMs: 0 }))).finally(() => {
      done = true;
    });
    for (let i = 0; i < 10_000 && !done; i++) {
      await realTurn();
      if (vi.isFakeTimers()) await vi.advanceTimersByTimeAsync(1_000);
    }
    await all;
    const problems: string[] = [];
    for (const rec of recorders) {
      problems.push(...rec.violations);
      for (const e of rec.of('submitted')) {
        const ends = rec.terminals(e.id).map((t) => t.event);
        if (ends.length !== 1) problems.push(`report ${e.id} ended ${ends.length} times (${ends.join(', ')})`);
      }
    }
    if (problems.length > 0) throw new Error(`Pipeline invariants broken:\n${problems.join('\n')}`);
  }
}

/** A report with `n` findings, small and compressible. */
export function smallReport(n = 3, tag = 'r'): { metadata: { tool: string }; findings: { id: string; rule: string }[]; assets: never[] } {
  return { metadata: { tool: tag }, findings: Array.from({ length: n }, (_, i) => ({ id: `${tag}-${i}`, rule: 'ssh-root-login' })), assets: [] };
}
