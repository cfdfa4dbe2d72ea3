/**
 * The model of the pipeline model test: the operations, the run configuration
 * and `Run`, which applies an operation to a real pipeline and checks it against
 * what the model predicts. See `model.test.ts`.
 */
import { expect, vi } from 'vitest';
import type { ChunkManager, Report } from '../../src/chunk/index.js';
import { IllegalStateError, InvalidArgumentError, PipelineStoppedError, QueueFullError, UploadHttpError, UploadTimeoutError } from '../../src/errors.js';
import { UploadPipeline, type PipelineItem } from '../../src/pipeline/index.js';
import { HeldUploader, type HeldCall } from './model-uploader.js';


export type How = 'ok' | 'duplicate' | '503' | '503-retry-after' | '400' | '401' | 'throw';
export type Submit = { readonly kind: 'submit'; readonly count: number; readonly priority: number; readonly signal: 'none' | 'own' | 'shared'; readonly bad: 'none' | 'metadata' | 'finding'; readonly findings: number };
export type Op =
  | Submit
  | { readonly kind: 'answer'; readonly pick: number; readonly how: How; readonly retryAfterMs: number }
  | { readonly kind: 'abort'; readonly pick: number }
  | { readonly kind: 'advance'; readonly ms: number }
  | { readonly kind: 'flush' | 'start' }
  | { readonly kind: 'stop'; readonly timeoutMs: number };

export interface Config {
  readonly workers: number;
  readonly retryAttempts: number;
  readonly queueSize: number;
  readonly maxQueueBytes: number;
  readonly uploadTimeoutMs: number;
  readonly retryDelayMs: number;
  readonly abortMode: 'honour' | 'ignore' | 'mixed';
  readonly startLate: boolean;
  /** Every `completed` listener submits one more report. */
  readonly chain: boolean;
}

/** A terminal event as `kind:reason` (`completed:201`, `failed:aborted`, `spilled:large`). */
export type Outcome = string;

/** What the model knows of one submitted report. */
export interface Rec {
  readonly id: string;
  readonly item: PipelineItem; // the view events carry; `bodyBytes` is read live
  readonly bad: boolean;
  readonly large: boolean; // the outbox would split it
  readonly ac: AbortController | undefined;
  readonly read: { taken: boolean }; // something read the report after submit(): the encoder took it
  phase: 'waiting' | 'uploading' | 'retrying';
  attempts: number;
  /** Its retry fires at `retryAt` at the earliest, by `retryDue` for sure (a 0 ms timer set in a tick waits 1 ms, as in Node); `retryFired` once an advance reached `retryDue`. */
  retryAt: number;
  retryDue: number;
  retryFired: boolean;
  startedAt: number;
  /** The call of the attempt under way (the uploader may see it before or after `started`), and calls so far. */
  call: HeldCall | undefined;
  calls: number;
  outcome: Outcome | undefined;
  /** What the step that decided it predicts: a terminal event, `'retry'`, or `'encoder'` (settled by {@link Run.encoded}). */
  expected: Outcome | 'retry' | 'encoder' | undefined;
  /** The error the test answered or aborted with, which the event must carry. */
  error: Error | undefined;
}

export const TENANT = 'tenant-a';
export const CHUNK_AT_FINDINGS = 3;
export const MAX_RETRY_AFTER_MS = 600_000;
export const CHAINED: Submit = { kind: 'submit', count: 1, priority: 1, signal: 'none', bad: 'none', findings: 1 };

export function reportOf(op: Submit): Report {
  if (op.bad === 'metadata') return { metadata: { scanner: 'x', runs: 1n }, findings: [], assets: [] };
  if (op.bad === 'finding') return { metadata: { scanner: 'x' }, findings: [{ id: 'F-0', severity: 10n }], assets: [] };
  return { metadata: { scanner: 'x' }, findings: Array.from({ length: op.findings }, (_, i) => ({ id: `F-${i}`, severity: i % 5 })), assets: [] };
}

export function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

/** One run: the pipeline, its uploader and outbox, and the model beside them. */
export class Run {
  readonly recs = new Map<string, Rec>();
  readonly problems: string[] = [];
  readonly answeredOk = new Set<string>();
  readonly waiters: { recs: Rec[]; idleAtStart: boolean; emptiedAtStart: number; flushed: boolean; idle: boolean }[] = [];
  readonly pipeline: UploadPipeline;
  readonly uploader: HeldUploader;
  step: Op['kind'] | 'finish' = 'start';
  submitting: { op: Submit; ac: AbortController | undefined; read: { taken: boolean } } | undefined;
  shared: AbortController | undefined;
  stopping: Promise<void> | undefined;
  stopped = false;
  emptied = 0; // times the last live report settled
  events = 0;
  /** With an outbox: the reports this step gave the encoder, in order, and the bytes held before them. */
  batch: { readonly heldBytes: number; readonly recs: Rec[] } | undefined;

  constructor(readonly cfg: Config, readonly outbox: ChunkManager | undefined) {
    this.uploader = new HeldUploader((n) => (cfg.abortMode === 'mixed' ? n % 2 === 1 : cfg.abortMode === 'ignore'));
    this.uploader.onCall = (call) => this.guard('call', () => this.onCall(call));
    const { workers, retryAttempts, queueSize, maxQueueBytes, uploadTimeoutMs, retryDelayMs } = cfg;
    const p = new UploadPipeline({ uploader: this.uploader, outbox, tenantId: TENANT, workers, retryAttempts, queueSize, maxQueueBytes, uploadTimeoutMs, retryDelayMs, maxRetryDelayMs: retryDelayMs * 4 });
    this.pipeline = p;
    p.on('submitted', (item) => this.guard('submitted', () => this.onSubmitted(item)));
    p.on('started', (item, attempt) => this.guard('started', () => this.onStarted(item, attempt)));
    p.on('retry', (item, error, retry, delayMs) => this.guard('retry', () => this.onRetry(item, error, retry, delayMs)));
    p.on('completed', (item, result) => this.guard('completed', () => this.onTerminal(item, `completed:${result.status}`)));
    p.on('failed', (item, error, reason) => this.guard('failed', () => this.onTerminal(item, `failed:${reason}`, error)));
    p.on('spilled', (item, reason, receipt) => this.guard('spilled', () => this.onTerminal(item, `spilled:${reason}`, undefined, receipt.reportId)));
  }

  /** Runs a listener's checks and the invariants, and records what failed (a listener's throw would only be a warning). */
  guard(where: string, fn: () => void): void {
    this.events++;
    try {
      fn();
      this.invariants(where);
    } catch (err) {
      this.problems.push(`${where} (during ${this.step}): ${(err as Error).message}`);
    }
  }

  rec(item: PipelineItem | string): Rec {
    const id = typeof item === 'string' ? item : item.id;
    const r = this.recs.get(id);
    if (r === undefined || (typeof item !== 'string' && r.item !== item)) throw new Error(`an event for ${id}, which was never submitted`);
    return r;
  }

  live(): Rec[] {
    return [...this.recs.values()].filter((r) => r.outcome === undefined);
  }

  /** Measured, not uploading and not waiting for a retry: in the upload queue for sure. */
  queued(r: Rec): boolean {
    return r.outcome === undefined && r.item.bodyBytes !== undefined && (r.phase === 'waiting' || (r.phase === 'retrying' && this.retried(r)));
  }

  retried(r: Rec): boolean {
    return r.retryDue < Date.now() || (r.retryDue === Date.now() && r.retryFired);
  }

  spillOrFail(reason: string): Outcome {
    return this.outbox === undefined ? `failed:${reason}` : `spilled:${reason}`;
  }

  onSubmitted(item: PipelineItem): void {
    const s = this.submitting;
    if (s === undefined) throw new Error('submitted outside submit()');
    expect(this.recs.has(item.id), 'a fresh id').toBe(false);
    expect([item.tenantId, item.priority, item.attempts, item.bodyBytes]).toEqual([TENANT, s.op.priority, 0, undefined]);
    const bad = s.op.bad !== 'none';
    const large = this.outbox !== undefined && !bad && s.op.findings >= CHUNK_AT_FINDINGS;
    const r: Rec = { id: item.id, item, bad, large, ac: s.ac, read: s.read, phase: 'waiting', attempts: 0, retryAt: 0, retryDue: 0, retryFired: false, startedAt: 0, call: undefined, calls: 0, outcome: undefined, expected: undefined, error: undefined };
    this.recs.set(item.id, r);
  }

  /** An attempt of `r` begins (its `started` event or its call, whichever comes first): it was queued, and first in line. */
  begins(r: Rec): void {
    const now = Date.now();
    expect(r.outcome, 'no attempt after the terminal event').toBeUndefined();
    expect(this.stopping, 'no attempt after stop()').toBeUndefined();
    const due = r.phase === 'waiting' || (r.phase === 'retrying' && (this.retried(r) || (this.step === 'advance' && r.retryAt <= now)));
    expect(r.item.bodyBytes !== undefined && due, `it was queued (phase ${r.phase}, retry due ${r.retryAt - now} ms from now)`).toBe(true);
    if (this.pipeline.stats().spilling > 0) return; // a measured report may be on its way to the outbox, not in the queue
    const ahead = this.live().filter((x) => x !== r && this.queued(x) && x.item.priority > r.item.priority);
    expect(ahead.map((x) => `${x.id} priority ${x.item.priority}`), `nothing of higher priority than ${r.item.priority} waits`).toEqual([]);
  }

  onStarted(item: PipelineItem, attempt: number): void {
    const r = this.rec(item);
    if (r.call === undefined) this.begins(r);
    expect(attempt).toBe(r.attempts + 1);
    Object.assign(r, { phase: 'uploading', attempts: attempt, startedAt: Date.now() });
  }

  onCall(call: HeldCall): void {
    const r = this.rec(call.reportId);
    if (r.phase !== 'uploading') this.begins(r);
    expect(r.outcome, 'no upload after the terminal event').toBeUndefined();
    expect(r.call === undefined && r.calls === r.attempts - (r.phase === 'uploading' ? 1 : 0), 'one call per attempt').toBe(true);
    expect(call.signal.aborted).toBe(false);
    expect(this.uploader.calls.length + 1, 'calls in the uploader').toBeLessThanOrEqual(this.cfg.workers);
    r.call = call;
    r.calls++;
  }

  onRetry(item: PipelineItem, error: Error, retry: number, delayMs: number): void {
    const r = this.rec(item);
    expect([r.outcome, r.phase, this.stopping], 'a retry of a live upload, not while stopping').toEqual([undefined, 'uploading', undefined]);
    expect(retry).toBe(r.attempts);
    expect(retry).toBeLessThanOrEqual(this.cfg.retryAttempts);
    if (r.expected === 'retry') expect(error).toBe(r.error);
    else expect([this.step, error instanceof UploadTimeoutError], 'a retry nobody answered is a timeout').toEqual(['advance', true]);
    const retryAfterMs = (error as UploadHttpError).retryAfterMs;
    if (retryAfterMs !== undefined) expect(delayMs).toBe(Math.min(retryAfterMs, MAX_RETRY_AFTER_MS));
    else expect(Number.isInteger(delayMs) && delayMs >= 0 && delayMs <= this.cfg.retryDelayMs * Math.min(4, 2 ** (retry - 1)), `delay ${delayMs}`).toBe(true);
    Object.assign(r, { phase: 'retrying', retryAt: Date.now() + delayMs, retryDue: Date.now() + Math.max(1, delayMs), retryFired: false, call: undefined });
  }

  onTerminal(item: PipelineItem, outcome: Outcome, error?: Error, spilledId?: string): void {
    const r = this.rec(item);
    expect(r.outcome, `a second terminal event, ${outcome}`).toBeUndefined();
    Object.assign(r, { outcome, call: undefined });
    if (this.live().length === 0) this.emptied++;
    if (spilledId !== undefined) expect(spilledId).toBe(r.id);
    if (this.outbox === undefined) expect(outcome, 'nothing spills without an outbox').not.toMatch(/^spilled/);
    else expect(outcome, 'with an outbox nothing fails for a stop').not.toBe('failed:stopped');
    if (outcome === 'failed:invalid') expect(error).toBeInstanceOf(InvalidArgumentError);
    // Still with the encoder (or spilled by it once measured): its outcome. Measured and passed on, anything may follow.
    if (r.expected === 'encoder' && (r.item.bodyBytes === undefined || outcome === 'spilled:queue-full')) {
      expect(outcome, 'what the encoder decides').toBe(r.bad ? 'failed:invalid' : r.large ? 'spilled:large' : 'spilled:queue-full');
    } else if (r.expected !== undefined && r.expected !== 'retry' && r.expected !== 'encoder') {
      expect(outcome).toBe(r.expected);
      if (['failed:aborted', 'failed:rejected', 'failed:unauthorized'].includes(outcome)) expect(error).toBe(r.error);
      if (outcome === 'failed:stopped' && r.phase !== 'uploading') expect(error).toBeInstanceOf(PipelineStoppedError);
    } else {
      // Outcomes no step decided: the clock's (a timed-out last attempt, stop()'s grace running out).
      const timedOut = r.phase === 'uploading' && r.attempts === this.cfg.retryAttempts + 1 && outcome === this.spillOrFail('retries-exhausted');
      const stopped = this.stopping !== undefined && r.phase === 'uploading' && outcome === this.spillOrFail('stopped');
      expect(this.step === 'advance' || this.step === 'finish', `${outcome} with no step deciding it`).toBe(true);
      expect(timedOut || stopped, `${outcome} after ${r.attempts} attempts (phase ${r.phase}), stopping: ${this.stopping !== undefined}`).toBe(true);
      if (outcome === 'failed:retries-exhausted') expect(error).toBeInstanceOf(UploadTimeoutError);
    }
    if (this.cfg.chain && outcome.startsWith('completed')) this.submit(CHAINED);
  }

  /** The stats add up and agree with the events seen so far. */
  invariants(where: string): void {
    const s = this.pipeline.stats();
    const m = `stats ${JSON.stringify(s)} at ${where}`;
    expect(s.submitted, m).toBe(s.queued + s.inProgress + s.retrying + s.completed + s.failed + s.spilled);
    expect(s.inProgress, m).toBe(s.uploading + s.spilling);
    expect(s.encoding, m).toBeLessThanOrEqual(s.queued);
    expect(s.uploading, m).toBeLessThanOrEqual(this.cfg.workers);
    expect(Object.values(s).every((n) => Number.isInteger(n) && n >= 0), m).toBe(true);
    if (s.queued + s.uploading + s.retrying === 0) expect(s.queuedBytes, m).toBe(0);
    const ended = (kind: string): number => [...this.recs.values()].filter((r) => r.outcome?.startsWith(kind)).length;
    expect([s.submitted, s.completed, s.failed, s.spilled], m).toEqual([this.recs.size, ended('completed'), ended('failed'), ended('spilled')]);
    expect(this.uploader.calls.length, 'calls in the uploader').toBeLessThanOrEqual(this.cfg.workers);
  }

  /** Waits on real turns of the event loop until the pipeline is quiet (see the file's comment). */
  async settle(): Promise<void> {
    const deadline = performance.now() + 1_000;
    do {
      if (performance.now() > deadline) throw new Error(`never quiet: ${JSON.stringify({ stats: this.pipeline.stats(), state: this.pipeline.state, calls: this.uploader.calls.length, live: this.live().map((r) => [r.phase, r.item.bodyBytes, r.read.taken]) })}`);
      await new Promise<void>((resolve) => setImmediate(resolve));
    } while (!this.quiet());
  }

  quiet(): boolean {
    const s = this.pipeline.stats();
    const live = this.live();
    if (s.spilling > 0) return false;
    if (this.stopping !== undefined && !this.stopped && live.length === 0) return false;
    if (this.pipeline.state !== 'running') return true;
    // The encoder finishes what it took, and takes everything while it may: with an outbox, or under the byte bound.
    const mayTake = this.outbox !== undefined || s.queuedBytes < this.cfg.maxQueueBytes;
    if (live.some((r) => r.item.bodyBytes === undefined && (r.read.taken || mayTake))) return false;
    return this.uploader.calls.length >= this.cfg.workers || !live.some((r) => this.queued(r));
  }

  /**
   * What the encoder decided. With an outbox it takes a step's reports at once,
   * in order: one that cannot be serialised fails, one the outbox would split
   * goes there, and so does one whose body would take the bytes held past
   * `maxQueueBytes` (some being held already). Without one, a measured report
   * is queued (a failed one was checked by its event).
   */
  encoded(): void {
    let held = this.batch?.heldBytes ?? 0;
    for (const r of this.batch?.recs ?? []) {
      const bytes = r.item.bodyBytes;
      if (r.bad) r.expected = 'failed:invalid';
      else if (r.large) r.expected = 'spilled:large';
      else if (bytes === undefined) throw new Error(`${r.id} was never measured`);
      else if (held > 0 && held + bytes > this.cfg.maxQueueBytes) r.expected = 'spilled:queue-full';
      else {
        r.expected = undefined;
        held += bytes;
      }
      expect(r.outcome, `${r.id}: what the encoder decided`).toBe(r.expected);
    }
    this.batch = undefined;
    for (const r of this.recs.values()) if (r.expected === 'encoder') r.expected = r.item.bodyBytes === undefined ? (r.outcome ?? 'encoder') : undefined;
  }

  /** After a step: listeners found nothing, every prediction came true, the model agrees with the stats. */
  async check(): Promise<void> {
    await this.settle();
    expect(this.problems).toEqual([]);
    this.encoded();
    this.invariants(`after ${this.step}`);
    const now = Date.now();
    for (const r of this.recs.values()) {
      if (r.expected === 'retry') {
        expect(r.phase, `${r.id} was to be retried`).toBe('retrying');
        r.expected = undefined;
      } else if (r.expected !== undefined && r.expected !== 'encoder') expect(r.outcome, `${r.id}: the predicted outcome`).toBe(r.expected);
      if (r.outcome !== undefined || r.phase !== 'uploading') continue;
      expect(r.call !== undefined && this.uploader.calls.includes(r.call) && !r.call.signal.aborted && r.calls === r.attempts, `${r.id}'s attempt is in the uploader`).toBe(true);
      expect(now - r.startedAt, `${r.id}'s attempt is within uploadTimeoutMs`).toBeLessThan(this.cfg.uploadTimeoutMs);
    }
    const live = this.live();
    const s = this.pipeline.stats();
    const uploading = live.filter((r) => r.phase === 'uploading').length;
    const retrying = live.filter((r) => r.phase === 'retrying' && !this.retried(r)).length;
    expect([s.uploading, s.retrying, s.queued], 'uploading, retrying, queued').toEqual([uploading, retrying, live.length - uploading - retrying]);
    expect(s.encoding, 'reports not measured yet').toBe(live.filter((r) => r.item.bodyBytes === undefined).length);
    if (this.outbox !== undefined && live.filter((r) => r.item.bodyBytes !== undefined).length > 1) expect(s.queuedBytes, 'with an outbox the byte bound holds').toBeLessThanOrEqual(this.cfg.maxQueueBytes);
    expect(this.stopped, 'stop() resolves when, and only when, nothing is live').toBe(this.stopping !== undefined && live.length === 0);
    for (const w of this.waiters) {
      expect(w.flushed, 'flush() resolves once what was submitted before it settled').toBe(w.recs.every((r) => r.outcome !== undefined));
      expect(w.idle, 'onIdle() resolves once nothing is live').toBe(w.idleAtStart || this.emptied > w.emptiedAtStart);
    }
  }

  async run(op: Op): Promise<void> {
    this.step = op.kind;
    const p = this.pipeline;
    switch (op.kind) {
      case 'submit':
        for (let i = 0; i < op.count; i++) this.submit(op);
        break;
      case 'answer':
        this.answer(op);
        break;
      case 'abort': {
        const acs = [...new Set([...this.recs.values()].map((r) => r.ac).filter((ac) => ac !== undefined))];
        const ac = acs[op.pick % Math.max(1, acs.length)];
        if (ac === undefined) break;
        const reason = new Error('the caller gave up');
        for (const r of this.live()) if (r.ac === ac) Object.assign(r, { expected: 'failed:aborted', error: reason });
        if (ac === this.shared) this.shared = undefined;
        ac.abort(reason);
        break;
      }
      case 'advance':
        await vi.advanceTimersByTimeAsync(op.ms);
        for (const r of this.live()) if (r.phase === 'retrying' && r.retryDue <= Date.now()) r.retryFired = true;
        break;
      case 'flush': {
        const w = { recs: this.live(), idleAtStart: this.live().length === 0, emptiedAtStart: this.emptied, flushed: false, idle: false };
        this.waiters.push(w);
        void p.flush().then(() => (w.flushed = true));
        void p.onIdle().then(() => (w.idle = true));
        break;
      }
      case 'start':
        if (p.state === 'closing' || p.state === 'closed') expect(() => p.start()).toThrow(IllegalStateError);
        else {
          if (p.state === 'idle') {
            for (const r of this.live()) r.expected = 'encoder';
            if (this.outbox !== undefined) this.batch = { heldBytes: 0, recs: this.live() };
          }
          expect(p.start()).toBe(p);
        }
        break;
      case 'stop':
        if (this.stopping !== undefined) {
          expect(p.stop({ timeoutMs: op.timeoutMs }), 'stop() is idempotent').toBe(this.stopping);
          break;
        }
        // Everything not uploading settles now; an unmeasured report goes to the outbox as it is.
        for (const r of this.live()) if (r.phase !== 'uploading') r.expected = this.outbox !== undefined && r.bad ? 'failed:invalid' : this.spillOrFail('stopped');
        this.stopping = p.stop({ timeoutMs: op.timeoutMs });
        void this.stopping.then(() => (this.stopped = true));
        expect(p.state).toBe('closing');
        break;
    }
    await this.check();
  }

  submit(op: Submit): void {
    const p = this.pipeline;
    const read = { taken: false };
    const report = new Proxy(reportOf(op), {
      get: (target, key, receiver) => {
        if (this.submitting === undefined && !read.taken) {
          read.taken = true;
          // Without an outbox the encoder takes a report only under the byte bound (and nothing else reads it).
          if (this.outbox === undefined && p.stats().queuedBytes >= this.cfg.maxQueueBytes) this.problems.push(`the encoder took a report at ${p.stats().queuedBytes} bytes held`);
        }
        return Reflect.get(target, key, receiver) as unknown;
      },
    });
    const ac = op.signal === 'own' ? new AbortController() : op.signal === 'shared' ? (this.shared ??= new AbortController()) : undefined;
    const submit = (): string => p.submit(report, { priority: op.priority, signal: ac?.signal });
    if (this.stopping !== undefined) {
      expect(submit).toThrow(IllegalStateError);
      return;
    }
    const s = p.stats();
    const full = s.queued + s.uploading + s.retrying >= this.cfg.queueSize ? 'count' : s.queuedBytes >= this.cfg.maxQueueBytes ? 'bytes' : undefined;
    const refused = full === undefined ? undefined : this.outbox === undefined ? full : s.spilling >= this.cfg.queueSize ? 'spill-backlog' : undefined;
    const outer = this.submitting;
    this.submitting = { op, ac, read };
    try {
      if (refused !== undefined) {
        expect(thrownBy(submit), `a QueueFullError (${refused})`).toMatchObject({ name: QueueFullError.name, code: 'OUTPOST_QUEUE_FULL', bound: refused });
        expect(p.stats().submitted, 'a refused report is not counted').toBe(s.submitted);
        return;
      }
      const r = this.rec(submit());
      if (full !== undefined) r.expected = r.bad ? 'failed:invalid' : 'spilled:queue-full';
      else if (p.state === 'running') {
        r.expected = 'encoder';
        if (this.outbox !== undefined) (this.batch ??= { heldBytes: s.queuedBytes, recs: [] }).recs.push(r);
      }
    } finally {
      this.submitting = outer;
    }
  }

  answer(op: Extract<Op, { kind: 'answer' }>): void {
    const call = this.uploader.calls[op.pick % Math.max(1, this.uploader.calls.length)];
    if (call === undefined) return;
    const error = {
      ok: undefined,
      duplicate: undefined,
      '503': new UploadHttpError(503, { retryable: true }),
      '503-retry-after': new UploadHttpError(503, { retryable: true, retryAfterMs: op.retryAfterMs }),
      '400': new UploadHttpError(400, { retryable: false }),
      '401': new UploadHttpError(401, { retryable: false }),
      throw: new TypeError('the uploader broke'),
    }[op.how];
    const status = op.how === 'ok' ? 201 : 200;
    if (!call.signal.aborted) {
      // A live call: the model decides what follows. A stale one (its attempt timed out or was aborted) changes nothing.
      const r = this.rec(call.reportId);
      expect(r.call === call && r.outcome === undefined, `${r.id}'s current attempt`).toBe(true);
      let expected: Outcome | 'retry';
      if (error === undefined) expected = `completed:${status}`;
      else if (op.how === '400') expected = 'failed:rejected';
      else if (op.how === '401') expected = this.spillOrFail('unauthorized');
      else if (op.how === 'throw') expected = this.outbox === undefined ? 'failed:rejected' : 'spilled:uploader-error';
      else if (this.stopping !== undefined) expected = this.spillOrFail('stopped');
      else expected = r.attempts <= this.cfg.retryAttempts ? 'retry' : this.spillOrFail('retries-exhausted');
      Object.assign(r, { expected, error });
      if (error === undefined) this.answeredOk.add(r.id);
    }
    if (error === undefined) call.succeed({ status, duplicate: op.how === 'duplicate' });
    else call.fail(error);
  }

  /** stop() (unless a step did), let its grace run out, and check the end state. */
  async finish(timeoutMs: number): Promise<void> {
    if (this.stopping === undefined) await this.run({ kind: 'stop', timeoutMs });
    this.step = 'finish';
    await vi.advanceTimersByTimeAsync(timeoutMs + 1);
    await this.check();
    expect(this.live().map((r) => `${r.id} ${r.phase}`), 'every id has its terminal event once the grace ran out').toEqual([]);
    await this.stopping; // check() saw it resolve
    expect(this.pipeline.state).toBe('closed');
    const s = this.pipeline.stats();
    expect([s.queued, s.inProgress, s.retrying, s.queuedBytes]).toEqual([0, 0, 0, 0]);
    const completed = [...this.recs.values()].filter((r) => r.outcome?.startsWith('completed')).map((r) => r.id);
    expect(new Set(completed), 'completed = the ids whose live upload was answered 2xx').toEqual(this.answeredOk);
    // Late answers to calls that ignored their abort change nothing.
    const events = this.events;
    for (const call of [...this.uploader.calls]) call.succeed({ status: 201, duplicate: false });
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(this.events, 'no event after stop() resolved').toBe(events);
    expect(this.problems).toEqual([]);
  }
}
