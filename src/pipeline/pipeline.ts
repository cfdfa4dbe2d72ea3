/**
 * `UploadPipeline`: `submit()` returns at once; a bounded in-memory priority
 * queue feeds upload workers; what cannot be sent goes to the outbox.
 */
import { randomUUID } from 'node:crypto';
import PQueue from 'p-queue';
import { IllegalStateError, InvalidArgumentError, OutpostError, PipelineStoppedError, QueueFullError } from '../errors.js';
import { isValidId } from '../internal/protocol.js';
import { SafeEmitter, type ErrorEvents } from '../internal/safe-emitter.js';
import * as v from '../internal/validate.js';
import type { Report } from '../chunk/index.js';
import type { UploadResult } from '../transport/index.js';
import { startAttempt } from './attempt.js';
import { Backlog, Encoder, type Encoded } from './encoder.js';
import type { FailReason, PipelineStats, SpillReason, UploadPipelineEvents } from './events.js';
import { holdsBytes, isTerminal, Item, type ItemState } from './item.js';
import { resolvePipelineOptions, type PipelineOptions, type ResolvedPipelineOptions } from './options.js';
import { asError, nextStep } from './outcome.js';
import { CallerSignals } from './signals.js';
import { Spiller, type SpillResult } from './spiller.js';
import { Waiters } from './waiters.js';

/** Lifecycle state of an {@link UploadPipeline}. */
export type UploadPipelineState = 'idle' | 'running' | 'closing' | 'closed';

/** Per-call options of {@link UploadPipeline.submit}. */
export interface PipelineSubmitOptions {
  /** Tenant of the report: 1–256 characters of `[A-Za-z0-9_-]`. @default the pipeline's `tenantId` */
  readonly tenantId?: string | undefined;
  /** Report id (same rules), sent as the report id so the server de-duplicates; must not be live in this pipeline for the same tenant. @default a random UUID */
  readonly reportId?: string | undefined;
  /** The job that produced the report, carried in events. At most 256 characters. */
  readonly jobId?: string | undefined;
  /** Upload priority, an integer: higher goes first, equal priorities in submission order. @default 0 */
  readonly priority?: number | undefined;
  /** Aborting it before the report is acknowledged or spilled gives it up: `failed` with reason `'aborted'`. */
  readonly signal?: AbortSignal | undefined;
}

type Counts = Record<ItemState, number>;

/** Background work never throws into the host: a bug shows as a process warning, not a crash. */
const unexpected = (err: unknown): void => {
  process.emitWarning(new OutpostError('OUTPOST_PIPELINE_BUG', 'Background work of the upload pipeline failed', { cause: err }));
};

/**
 * Non-blocking uploads. `submit()` validates, queues and returns an id without
 * I/O or serialisation; a background encoder compresses the report and
 * `workers` uploaders send it, highest priority first, retrying retryable
 * failures on the shared {@link RetryPolicy} without holding a worker during
 * the backoff. With an `outbox`, what the queue cannot take, what runs out of
 * retries and what is left at `stop()` is stored durably instead of lost.
 * Every submitted id ends in exactly one `completed`, `failed` or `spilled` event.
 *
 * @example
 * ```ts
 * await using outbox = new ChunkManager({ uploader, databasePath });
 * await outbox.start();
 * await using pipeline = new UploadPipeline({ uploader, outbox, tenantId: 'acme' });
 * pipeline.start();
 * const id = pipeline.submit({ metadata, findings, assets }, { jobId: 'job-7', priority: 10 });
 * pipeline.on('failed', (item, error, reason) => log.error({ id: item.id, reason }, error.message));
 * ```
 */
export class UploadPipeline {
  /** The resolved options. */
  readonly options: ResolvedPipelineOptions;
  readonly #emitter = new SafeEmitter<UploadPipelineEvents & ErrorEvents>('pipeline');
  readonly #queue: PQueue;
  readonly #backlog = new Backlog();
  readonly #encoder: Encoder;
  readonly #spiller: Spiller | undefined;
  readonly #signals = new CallerSignals((item) => this.#callerAborted(item));
  /** Live items in submission order, by tenant and id. */
  readonly #live = new Map<string, Item>();
  readonly #counts: Counts = { encoding: 0, queued: 0, uploading: 0, retrying: 0, spilling: 0, completed: 0, failed: 0, spilled: 0 };
  readonly #waiters = new Waiters();
  #submitted = 0;
  #queuedBytes = 0;
  #seq = 0;
  #enqueueSeq = 0;
  /** Entries of the upload queue whose item left it another way (aborted): skipped when reached. */
  #tombstones = 0;
  #state: UploadPipelineState = 'idle';
  #stopping: Promise<void> | undefined;
  /** The one error of the reports `stop()` fails (a stack trace per report would cost ms for thousands). */
  #stopError: PipelineStoppedError | undefined;
  /** Wakes `stop()` when the last upload in flight settles. */
  #onNoUploads: (() => void) | undefined;

  /** @throws {@link InvalidOptionError} when an option is missing or out of range */
  constructor(options: PipelineOptions) {
    this.options = resolvePipelineOptions(options);
    const o = this.options;
    this.#queue = new PQueue({ concurrency: o.workers, autoStart: false });
    this.#encoder = new Encoder({
      backlog: this.#backlog,
      outbox: o.outbox,
      compressionLevel: o.compressionLevel,
      canStart: () => this.#state === 'running' && (o.outbox !== undefined || this.#queuedBytes < o.maxQueueBytes),
      onEncoded: (item, encoded) => this.#encoded(item, encoded),
      onError: unexpected,
    });
    if (o.outbox !== undefined) this.#spiller = new Spiller(o.outbox, (item, result) => this.#spillSettled(item, result), unexpected);
    if (o.onSubmitted !== undefined) this.on('submitted', o.onSubmitted);
    if (o.onCompleted !== undefined) this.on('completed', o.onCompleted);
    if (o.onFailed !== undefined) this.on('failed', o.onFailed);
    if (o.onSpilled !== undefined) this.on('spilled', o.onSpilled);
  }

  /** `'idle'` before `start()`, `'running'`, `'closing'` during `stop()`, `'closed'`. */
  get state(): UploadPipelineState {
    return this.#state;
  }

  /**
   * Starts encoding and uploading (reports submitted before are sent now).
   * Idempotent while running.
   * @throws {@link IllegalStateError} after `stop()`, or when the `outbox` is not running
   */
  start(): this {
    if (this.#state === 'running') return this;
    if (this.#state !== 'idle') throw new IllegalStateError('start', this.#state);
    const outbox = this.options.outbox;
    if (outbox !== undefined && outbox.state !== 'running') throw new IllegalStateError('start the pipeline', `its outbox is ${outbox.state} (start the outbox first)`);
    this.#state = 'running';
    this.#queue.start();
    this.#encoder.kick();
    return this;
  }

  /** Subscribes to an event. */
  on<K extends keyof UploadPipelineEvents>(event: K, listener: (...args: UploadPipelineEvents[K]) => void): this {
    this.#emitter.on(event, listener);
    return this;
  }

  /** Subscribes to the next occurrence of an event. */
  once<K extends keyof UploadPipelineEvents>(event: K, listener: (...args: UploadPipelineEvents[K]) => void): this {
    this.#emitter.once(event, listener);
    return this;
  }

  /** Unsubscribes. */
  off<K extends keyof UploadPipelineEvents>(event: K, listener: (...args: UploadPipelineEvents[K]) => void): this {
    this.#emitter.off(event, listener);
    return this;
  }

  /**
   * Accepts a report for upload and returns its id at once: no I/O, and the
   * report is serialised later, in the background (do not change it after
   * submitting). When the queue holds `queueSize` reports or `maxQueueBytes`
   * bytes, the report goes to the outbox (`spilled`, reason `'queue-full'`),
   * or, without one, `submit()` throws.
   *
   * @throws {@link QueueFullError} when full and there is no running outbox (or the outbox has `queueSize` spills still being written)
   * @throws {@link InvalidArgumentError} for a report that is not an object with array `findings`/`assets`, a bad tenant, id, job id or priority, or an id live here for the same tenant
   * @throws {@link IllegalStateError} once `stop()` has begun
   * @throws `signal.reason` when `signal` is already aborted
   */
  submit(report: Report, options: PipelineSubmitOptions = {}): string {
    if (this.#state === 'closing' || this.#state === 'closed') throw new IllegalStateError('submit a report', this.#state);
    checkShape(report);
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('Submit options must be an object');
    const tenantId = options.tenantId ?? this.options.tenantId;
    if (tenantId === undefined) throw new InvalidArgumentError('`tenantId` is required: pass it to submit() or give the pipeline a default `tenantId`');
    if (tenantId !== this.options.tenantId && !isValidId(tenantId)) throw new InvalidArgumentError(`\`tenantId\` must be 1–256 characters of [A-Za-z0-9_-], got ${JSON.stringify(tenantId)}`);
    let id = options.reportId;
    if (id === undefined) id = randomUUID();
    else {
      if (!isValidId(id)) throw new InvalidArgumentError(`\`reportId\` must be 1–256 characters of [A-Za-z0-9_-], got ${JSON.stringify(id)}`);
      if (this.#live.has(`${tenantId}/${id}`)) throw new InvalidArgumentError(`Report ${id} of tenant ${tenantId} is already in the pipeline`);
    }
    const jobId = options.jobId;
    if (jobId !== undefined && (typeof jobId !== 'string' || jobId.length > 256)) {
      throw new InvalidArgumentError(`\`jobId\` must be a string of at most 256 characters, got ${typeof jobId === 'string' ? `${jobId.length} characters` : typeof jobId}`);
    }
    const priority = options.priority ?? 0;
    if (!Number.isSafeInteger(priority)) throw new InvalidArgumentError(`\`priority\` must be an integer, got ${String(priority)}`);
    const signal = options.signal;
    signal?.throwIfAborted();

    const o = this.options;
    const c = this.#counts;
    const held = c.encoding + c.queued + c.uploading + c.retrying; // what `queueSize` bounds
    const full = held >= o.queueSize ? 'count' : this.#queuedBytes >= o.maxQueueBytes ? 'bytes' : undefined;
    if (full !== undefined) {
      if (o.outbox === undefined || o.outbox.state !== 'running') throw new QueueFullError(full, full === 'count' ? o.queueSize : o.maxQueueBytes);
      if (c.spilling >= o.queueSize) throw new QueueFullError('spill-backlog', o.queueSize);
    }

    const item = new Item(id, tenantId, jobId, priority, this.#seq++, report, signal);
    this.#live.set(item.key, item);
    this.#submitted++;
    c.encoding++; // every item is born `encoding`; `#move` takes it on from there
    this.#signals.add(item);
    if (this.#emitter.has('submitted')) {
      this.#emitter.emit('submitted', item.view);
      if (item.state !== 'encoding') return id; // a listener aborted it or stopped the pipeline: already settled
    }
    if (full !== undefined) this.#spill(item, 'queue-full');
    else {
      this.#backlog.push(item);
      this.#encoder.kick();
    }
    return id;
  }

  /** Counters; `submitted = queued + inProgress + retrying + completed + failed + spilled` always holds. */
  stats(): PipelineStats {
    const c = this.#counts;
    return {
      submitted: this.#submitted,
      queued: c.encoding + c.queued,
      inProgress: c.uploading + c.spilling,
      retrying: c.retrying,
      completed: c.completed,
      failed: c.failed,
      spilled: c.spilled,
      queuedBytes: this.#queuedBytes,
      uploading: c.uploading,
      spilling: c.spilling,
      encoding: c.encoding,
    };
  }

  /**
   * Resolves when every report submitted before the call is settled
   * (completed, failed or spilled); later submissions do not hold it up.
   * Reports waiting for a retry keep it waiting: pass a `signal` to bound it.
   * Before `start()` it waits for `start()` (or `stop()`).
   * @throws `signal.reason` when `signal` aborts first
   */
  flush(options: { readonly signal?: AbortSignal | undefined } = {}): Promise<void> {
    return this.#waiters.wait(this.#seq, this.#oldestLive(), options?.signal);
  }

  /** Resolves when nothing is live: no report queued, in progress or waiting for a retry (at once if so already). */
  onIdle(options: { readonly signal?: AbortSignal | undefined } = {}): Promise<void> {
    return this.#waiters.wait(Number.POSITIVE_INFINITY, this.#live.size === 0 ? Number.POSITIVE_INFINITY : this.#oldestLive(), options?.signal);
  }

  /**
   * Stops: refuses new reports; hands every report queued or waiting for a
   * retry to the outbox (or fails it with reason `'stopped'`); lets uploads in
   * flight finish for up to `timeoutMs`, then aborts them and treats them the
   * same way. Resolves when every report is settled. Idempotent: a second call
   * returns the first call's promise (its `timeoutMs` is ignored).
   * @param options.timeoutMs - grace for uploads in flight, in ms @default `stopTimeoutMs`
   * @throws {@link InvalidOptionError} (as a rejection) for a bad `timeoutMs`
   */
  stop(options: { readonly timeoutMs?: number } = {}): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping;
    let timeoutMs: number;
    try {
      timeoutMs = v.timerMs('timeoutMs', options?.timeoutMs ?? this.options.stopTimeoutMs, 0);
    } catch (err) {
      return Promise.reject(err);
    }
    this.#stopping = this.#stop(timeoutMs);
    return this.#stopping;
  }

  /** `stop()` with the default `stopTimeoutMs`. Idempotent. */
  close(): Promise<void> {
    return this.stop();
  }

  /** Same as {@link UploadPipeline.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #stop(timeoutMs: number): Promise<void> {
    this.#state = 'closing';
    this.#queue.pause();
    this.#queue.clear();
    this.#tombstones = 0;
    this.#backlog.clear();
    for (const item of [...this.#live.values()]) {
      if (item.state === 'encoding' || item.state === 'queued' || item.state === 'retrying') this.#stopped(item);
    }
    if (this.#counts.uploading > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          for (const item of this.#live.values()) item.attempt?.abort(new PipelineStoppedError('The upload pipeline stopped and aborted this upload'));
          resolve();
        }, timeoutMs);
        this.#onNoUploads = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#onNoUploads = undefined;
    }
    await this.onIdle();
    this.#state = 'closed';
  }

  #oldestLive(): number {
    const first = this.#live.values().next();
    return first.done === true ? this.#seq : first.value.seq;
  }

  /** Moves `item` to `to`, keeping the counters and `queuedBytes` right; settles it when `to` is terminal. */
  #move(item: Item, to: ItemState): void {
    const from = item.state;
    const c = this.#counts;
    c[from]--;
    c[to]++;
    const bytes = item.bodyBytes ?? 0;
    if (holdsBytes(from)) this.#queuedBytes -= bytes;
    if (holdsBytes(to)) this.#queuedBytes += bytes;
    item.state = to;
    if (from === 'queued' && to !== 'uploading') this.#tombstoned();
    if (from === 'uploading' && c.uploading === 0) this.#onNoUploads?.();
    if (holdsBytes(from) && !holdsBytes(to)) this.#encoder.kick(); // room for the encoder again, if it waited
    if (!isTerminal(to)) return;
    this.#live.delete(item.key);
    this.#signals.remove(item);
    item.report = undefined;
    item.body = undefined;
    item.upload = undefined;
    if (this.#waiters.size > 0) this.#waiters.check(this.#live.size === 0 ? Number.POSITIVE_INFINITY : this.#oldestLive());
  }

  #complete(item: Item, result: UploadResult): void {
    this.#move(item, 'completed');
    this.#emitter.emit('completed', item.view, result);
  }

  #fail(item: Item, error: Error, reason: FailReason): void {
    this.#move(item, 'failed');
    this.#emitter.emit('failed', item.view, error, reason);
  }

  /** The pipeline stops before `item` was sent. */
  #stopped(item: Item): void {
    if (item.timer !== undefined) clearTimeout(item.timer);
    item.timer = undefined;
    if (this.#spiller !== undefined) this.#spill(item, 'stopped');
    else this.#fail(item, (this.#stopError ??= new PipelineStoppedError()), 'stopped');
  }

  /** Hands `item` to the outbox; it is `spilling` until the outbox has it durably. */
  #spill(item: Item, reason: SpillReason): void {
    this.#move(item, 'spilling');
    item.spillReason = reason;
    (this.#spiller as Spiller).push(item);
  }

  #spillSettled(item: Item, result: SpillResult): void {
    if (item.state !== 'spilling') return;
    if (result.ok) {
      this.#move(item, 'spilled');
      this.#emitter.emit('spilled', item.view, item.spillReason as SpillReason, result.receipt);
    } else this.#fail(item, result.error, result.reason);
  }

  #callerAborted(item: Item): void {
    const reason = asError(item.signal?.reason);
    switch (item.state) {
      case 'retrying':
        clearTimeout(item.timer);
        item.timer = undefined;
        this.#fail(item, reason, 'aborted');
        break;
      case 'encoding':
      case 'queued': // left in the backlog or the upload queue: skipped when reached
        this.#fail(item, reason, 'aborted');
        break;
      case 'uploading':
        item.attempt?.abort(item.signal?.reason); // the attempt settles it
        break;
      case 'spilling':
        if (!item.spillStarted) this.#fail(item, reason, 'aborted'); // else the outbox has the signal and settles it
        break;
      default:
    }
  }

  #encoded(item: Item, encoded: Encoded): void {
    if (item.state !== 'encoding') return; // aborted or stopped meanwhile
    if (encoded.kind === 'invalid') this.#fail(item, asError(encoded.error), 'invalid');
    else if (encoded.kind === 'large') this.#spill(item, 'large');
    else {
      item.encoded(encoded.body);
      // Measured now: if it takes the queue past the byte bound and the outbox can take it, it goes there.
      const o = this.options;
      if (o.outbox !== undefined && this.#queuedBytes > 0 && this.#queuedBytes + (item.bodyBytes as number) > o.maxQueueBytes) this.#spill(item, 'queue-full');
      else this.#enqueue(item);
    }
  }

  #enqueue(item: Item): void {
    this.#move(item, 'queued');
    item.enqueueSeq = this.#enqueueSeq++;
    this.#queue.add(() => this.#upload(item), { priority: item.priority }).catch(unexpected);
  }

  /** An entry of the upload queue went stale; rebuild the queue when they outnumber the live ones. */
  #tombstoned(): void {
    if (this.#state !== 'running' || ++this.#tombstones <= Math.max(1024, this.#counts.queued)) return;
    this.#queue.clear();
    this.#tombstones = 0;
    const queued = [...this.#live.values()].filter((i) => i.state === 'queued');
    queued.sort((a, b) => b.priority - a.priority || a.enqueueSeq - b.enqueueSeq);
    for (const item of queued) this.#queue.add(() => this.#upload(item), { priority: item.priority }).catch(unexpected);
  }

  /** One attempt; holds its worker until the uploader's promise settles, so at most `workers` requests run. */
  async #upload(item: Item): Promise<void> {
    if (item.state !== 'queued') {
      this.#tombstones--;
      return;
    }
    this.#move(item, 'uploading');
    item.attempts++;
    item.attempt = new AbortController();
    const attempt = startAttempt(item.attempt, () => this.options.uploaderFor(item.tenantId), item.upload as NonNullable<Item['upload']>, this.options.uploadTimeoutMs);
    if (this.#emitter.has('started')) this.#emitter.emit('started', item.view, item.attempts);
    try {
      const result = await attempt.outcome;
      if (typeof result !== 'object' || result === null) throw new TypeError(`uploadReport() must resolve to an UploadResult object, got ${result === null ? 'null' : typeof result}`);
      item.attempt = undefined;
      this.#complete(item, result);
    } catch (err) {
      item.attempt = undefined;
      this.#attemptFailed(item, err);
    }
    await attempt.settled;
  }

  #attemptFailed(item: Item, err: unknown): void {
    const step = nextStep(err, {
      policy: this.options.retryPolicy,
      attempts: item.attempts,
      retryAttempts: this.options.retryAttempts,
      hasOutbox: this.#spiller !== undefined,
      stopping: this.#state !== 'running',
      callerAborted: item.signal?.aborted === true,
    });
    if (step.kind === 'fail') this.#fail(item, step.error, step.reason);
    else if (step.kind === 'spill') this.#spill(item, step.reason);
    else {
      this.#move(item, 'retrying');
      item.timer = setTimeout(() => {
        item.timer = undefined;
        if (item.state === 'retrying' && this.#state === 'running') this.#enqueue(item);
      }, step.delayMs);
      this.#emitter.emit('retry', item.view, step.error, item.attempts, step.delayMs);
    }
  }
}

/** Cheap shape checks on the caller's path (serialisation problems surface later, as `'invalid'`). */
function checkShape(report: unknown): void {
  if (typeof report !== 'object' || report === null || Array.isArray(report) || ArrayBuffer.isView(report)) {
    throw new InvalidArgumentError(`A report must be an object with \`findings\` and \`assets\` arrays, got ${report === null ? 'null' : Array.isArray(report) ? 'an array' : typeof report}`);
  }
  for (const field of ['findings', 'assets'] as const) {
    const value = (report as Report)[field];
    if (value !== undefined && !Array.isArray(value)) throw new InvalidArgumentError(`The report's \`${field}\` must be an array, got ${value === null ? 'null' : typeof value}`);
  }
}
