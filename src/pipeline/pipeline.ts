/**
 * `UploadPipeline`: `submit()` returns at once; a bounded in-memory priority
 * queue feeds upload workers; what cannot be sent goes to the outbox.
 */
import PQueue from 'p-queue';
import { IllegalStateError, InvalidArgumentError, OutpostError, PipelineStoppedError, QueueFullError } from '../errors.js';
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
import { Ledger } from './ledger.js';
import { checkSubmission, type PipelineSubmitOptions } from './submission.js';

/** Lifecycle state of an {@link UploadPipeline}. */
export type UploadPipelineState = 'idle' | 'running' | 'closing' | 'closed';


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
  readonly #books = new Ledger();
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
      canStart: () => this.#state === 'running' && (o.outbox !== undefined || this.#books.queuedBytes < o.maxQueueBytes),
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
    const { tenantId, id, jobId, priority, signal } = checkSubmission(report, options, this.options.tenantId);
    if (options?.reportId !== undefined && this.#books.isLive(`${tenantId}/${id}`)) throw new InvalidArgumentError(`Report ${id} of tenant ${tenantId} is already in the pipeline`);

    const o = this.options;
    const books = this.#books;
    const full = books.held >= o.queueSize ? 'count' : books.queuedBytes >= o.maxQueueBytes ? 'bytes' : undefined;
    if (full !== undefined) {
      if (o.outbox === undefined || o.outbox.state !== 'running') throw new QueueFullError(full, full === 'count' ? o.queueSize : o.maxQueueBytes);
      if (books.counts.spilling >= o.queueSize) throw new QueueFullError('spill-backlog', o.queueSize);
    }

    const item = new Item(id, tenantId, jobId, priority, books.nextSeq(), report, signal);
    books.admit(item); // born `encoding`; `#move` takes it on from there
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
    return this.#books.stats();
  }

  /**
   * Resolves when every report submitted before the call is settled
   * (completed, failed or spilled); later submissions do not hold it up.
   * Reports waiting for a retry keep it waiting: pass a `signal` to bound it.
   * Before `start()` it waits for `start()` (or `stop()`).
   * @throws `signal.reason` when `signal` aborts first
   */
  flush(options: { readonly signal?: AbortSignal | undefined } = {}): Promise<void> {
    return this.#books.flush(options?.signal);
  }

  /** Resolves when nothing is live: no report queued, in progress or waiting for a retry (at once if so already). */
  onIdle(options: { readonly signal?: AbortSignal | undefined } = {}): Promise<void> {
    return this.#books.idle(options?.signal);
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
    for (const item of this.#books.liveItems()) {
      if (item.state === 'encoding' || item.state === 'queued' || item.state === 'retrying') this.#stopped(item);
    }
    if (this.#books.counts.uploading > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          for (const item of this.#books.liveItems()) item.attempt?.abort(new PipelineStoppedError('The upload pipeline stopped and aborted this upload'));
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

  /** Moves `item` to `to` in the books, then does what the move calls for. */
  #move(item: Item, to: ItemState): void {
    const from = item.state;
    this.#books.move(item, to);
    if (from === 'queued' && to !== 'uploading') this.#tombstoned();
    if (from === 'uploading' && this.#books.counts.uploading === 0) this.#onNoUploads?.();
    if (holdsBytes(from) && !holdsBytes(to)) this.#encoder.kick(); // room for the encoder again, if it waited
    if (!isTerminal(to)) return;
    this.#signals.remove(item);
    item.report = undefined;
    item.body = undefined;
    item.upload = undefined;
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
      const held = this.#books.queuedBytes;
      if (o.outbox !== undefined && held > 0 && held + (item.bodyBytes as number) > o.maxQueueBytes) this.#spill(item, 'queue-full');
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
    if (this.#state !== 'running' || ++this.#tombstones <= Math.max(1024, this.#books.counts.queued)) return;
    this.#queue.clear();
    this.#tombstones = 0;
    const queued = this.#books.liveItems().filter((i) => i.state === 'queued');
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
