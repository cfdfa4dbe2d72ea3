/**
 * `UploadPipeline`: `submit()` returns at once; a bounded in-memory priority
 * queue feeds upload workers; what cannot be sent goes to the outbox.
 */
import { randomUUID } from 'node:crypto';
import PQueue from 'p-queue';
import { IllegalStateError, InvalidArgumentError, PipelineStoppedError, QueueFullError, UploadTimeoutError } from '../errors.js';
import { isValidId } from '../internal/protocol.js';
import { SafeEmitter, type ErrorEvents } from '../internal/safe-emitter.js';
import * as v from '../internal/validate.js';
import type { Report } from '../chunk/index.js';
import type { UploadResult } from '../transport/index.js';
import { Backlog, ENCODE_AHEAD, encodeItem, type Encoded } from './encoder.js';
import type { FailReason, PipelineStats, SpillReason, UploadPipelineEvents } from './events.js';
import { holdsBytes, isTerminal, Item, type ItemState } from './item.js';
import { resolvePipelineOptions, type PipelineOptions, type ResolvedPipelineOptions } from './options.js';
import { asError, nextStep } from './outcome.js';
import { Waiters } from './waiters.js';

/** Lifecycle state of an {@link UploadPipeline}. */
export type UploadPipelineState = 'idle' | 'running' | 'closing' | 'closed';

/** Per-call options of {@link UploadPipeline.submit}. */
export interface PipelineSubmitOptions {
  /** Tenant of the report: 1–256 characters of `[A-Za-z0-9_-]`. @default the pipeline's `tenantId` */
  readonly tenantId?: string | undefined;
  /** Report id (same rules), sent as the report id so the server de-duplicates; must not be live in this pipeline already. @default a random UUID */
  readonly reportId?: string | undefined;
  /** The job that produced the report, carried in events. At most 256 characters. */
  readonly jobId?: string | undefined;
  /** Upload priority, an integer: higher goes first, equal priorities in submission order. @default 0 */
  readonly priority?: number | undefined;
  /** Aborting it before the report is acknowledged or spilled gives it up: `failed` with reason `'aborted'`. */
  readonly signal?: AbortSignal | undefined;
}

type Counts = Record<ItemState, number>;

const noop = (): void => undefined;
/** Background work never throws into the host: a bug shows as a process warning, not a crash. */
const unexpected = (err: unknown): void => {
  process.emitWarning(asError(err), { code: 'OUTPOST_PIPELINE_BUG' });
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
  /** Live items in submission order. */
  readonly #live = new Map<string, Item>();
  readonly #counts: Counts = { encoding: 0, queued: 0, uploading: 0, retrying: 0, spilling: 0, completed: 0, failed: 0, spilled: 0 };
  readonly #waiters = new Waiters();
  #submitted = 0;
  #queuedBytes = 0;
  #seq = 0;
  #state: UploadPipelineState = 'idle';
  #encoding = false;
  #stopping: Promise<void> | undefined;
  /** Wakes `stop()` when the last upload in flight settles. */
  #onNoUploads: (() => void) | undefined;

  /** @throws {@link InvalidOptionError} when an option is missing or out of range */
  constructor(options: PipelineOptions) {
    this.options = resolvePipelineOptions(options);
    this.#queue = new PQueue({ concurrency: this.options.workers, autoStart: false });
    const { onSubmitted, onCompleted, onFailed, onSpilled } = this.options;
    if (onSubmitted !== undefined) this.on('submitted', onSubmitted);
    if (onCompleted !== undefined) this.on('completed', onCompleted);
    if (onFailed !== undefined) this.on('failed', onFailed);
    if (onSpilled !== undefined) this.on('spilled', onSpilled);
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
    this.#kickEncoder();
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
   * @throws {@link QueueFullError} when full and there is no outbox (or the outbox has `queueSize` spills still being written)
   * @throws {@link InvalidArgumentError} for a report that is not an object, a bad tenant, id, job id or priority, or an id still live here
   * @throws {@link IllegalStateError} once `stop()` has begun
   * @throws `signal.reason` when `signal` is already aborted
   */
  submit(report: Report, options: PipelineSubmitOptions = {}): string {
    if (this.#state === 'closing' || this.#state === 'closed') throw new IllegalStateError('submit a report', this.#state);
    if (typeof report !== 'object' || report === null || Array.isArray(report) || ArrayBuffer.isView(report)) {
      throw new InvalidArgumentError(`A report must be an object with \`findings\` and \`assets\` arrays, got ${report === null ? 'null' : Array.isArray(report) ? 'an array' : typeof report}`);
    }
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('Submit options must be an object');
    const tenantId = options.tenantId ?? this.options.tenantId;
    if (tenantId === undefined) throw new InvalidArgumentError('`tenantId` is required: pass it to submit() or give the pipeline a default `tenantId`');
    if (!isValidId(tenantId)) throw new InvalidArgumentError(`\`tenantId\` must be 1–256 characters of [A-Za-z0-9_-], got ${JSON.stringify(tenantId)}`);
    let id = options.reportId;
    if (id === undefined) id = randomUUID();
    else {
      if (!isValidId(id)) throw new InvalidArgumentError(`\`reportId\` must be 1–256 characters of [A-Za-z0-9_-], got ${JSON.stringify(id)}`);
      if (this.#live.has(id)) throw new InvalidArgumentError(`Report ${id} is already in the pipeline`);
    }
    const jobId = options.jobId;
    if (jobId !== undefined && (typeof jobId !== 'string' || jobId.length > 256)) throw new InvalidArgumentError(`\`jobId\` must be a string of at most 256 characters, got ${typeof jobId}`);
    const priority = options.priority ?? 0;
    if (!Number.isSafeInteger(priority)) throw new InvalidArgumentError(`\`priority\` must be an integer, got ${String(priority)}`);
    const signal = options.signal;
    signal?.throwIfAborted();

    const o = this.options;
    const c = this.#counts;
    const held = c.encoding + c.queued + c.uploading + c.retrying; // what `queueSize` bounds
    const full = held >= o.queueSize ? 'count' : this.#queuedBytes >= o.maxQueueBytes ? 'bytes' : undefined;
    if (full !== undefined) {
      if (o.outbox === undefined) throw new QueueFullError(full, full === 'count' ? o.queueSize : o.maxQueueBytes);
      if (c.spilling >= o.queueSize) throw new QueueFullError('spill-backlog', o.queueSize);
    }

    const item = new Item(id, tenantId, jobId, priority, this.#seq++, report, signal);
    this.#live.set(id, item);
    this.#submitted++;
    c.encoding++; // every item is born `encoding`; `#move` takes it on from there
    if (signal !== undefined) {
      item.onAbort = () => this.#callerAborted(item);
      signal.addEventListener('abort', item.onAbort, { once: true });
    }
    if (this.#emitter.has('submitted')) this.#emitter.emit('submitted', item);
    if (full !== undefined) this.#spill(item, 'queue-full');
    else {
      this.#backlog.push(item);
      this.#kickEncoder();
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
    return this.#waiters.wait(this.#seq, this.#oldestLive(), options.signal);
  }

  /** Resolves when nothing is live: no report queued, in progress or waiting for a retry (at once if so already). */
  onIdle(options: { readonly signal?: AbortSignal | undefined } = {}): Promise<void> {
    return this.#waiters.wait(Number.POSITIVE_INFINITY, this.#live.size === 0 ? Number.POSITIVE_INFINITY : this.#oldestLive(), options.signal);
  }

  /**
   * Stops: refuses new reports; hands every report queued or waiting for a
   * retry to the outbox (or fails it with reason `'stopped'`); lets uploads in
   * flight finish for up to `timeoutMs`, then aborts them and treats them the
   * same way. Resolves when every report is settled. Idempotent.
   * @param options.timeoutMs - grace for uploads in flight, in ms @default `stopTimeoutMs`
   * @throws {@link InvalidOptionError} for a bad `timeoutMs`
   */
  stop(options: { readonly timeoutMs?: number } = {}): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping;
    const timeoutMs = v.timerMs('timeoutMs', options.timeoutMs ?? this.options.stopTimeoutMs, 0);
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
    if (from === 'uploading' && c.uploading === 0) this.#onNoUploads?.();
    if (!isTerminal(to)) return;
    this.#live.delete(item.id);
    if (item.onAbort !== undefined) item.signal?.removeEventListener('abort', item.onAbort);
    item.report = undefined;
    item.body = undefined;
    item.upload = undefined;
    if (this.#waiters.size > 0) this.#waiters.check(this.#live.size === 0 ? Number.POSITIVE_INFINITY : this.#oldestLive());
  }

  #complete(item: Item, result: UploadResult): void {
    this.#move(item, 'completed');
    this.#emitter.emit('completed', item, result);
  }

  #fail(item: Item, error: Error, reason: FailReason): void {
    this.#move(item, 'failed');
    this.#emitter.emit('failed', item, error, reason);
  }

  /** The pipeline stops before `item` was sent. */
  #stopped(item: Item): void {
    if (item.timer !== undefined) clearTimeout(item.timer);
    item.timer = undefined;
    if (this.options.outbox !== undefined) this.#spill(item, 'stopped');
    else this.#fail(item, new PipelineStoppedError(), 'stopped');
  }

  /** Hands `item` to the outbox; it is `spilling` until the outbox has it durably. */
  #spill(item: Item, reason: SpillReason): void {
    const outbox = this.options.outbox;
    if (outbox === undefined) throw new Error('unreachable: spill without an outbox');
    this.#move(item, 'spilling');
    const options = { tenantId: item.tenantId, reportId: item.id, priority: item.priority, signal: item.signal };
    // Started on a microtask: a spill from submit() must not serialise the report on the caller's path.
    const stored = Promise.resolve().then(() =>
      item.body !== undefined ? outbox.submitEncodedReport(item.body, options) : outbox.submitReport(item.report as Report, options),
    );
    stored.then(
      (receipt) => {
        this.#move(item, 'spilled');
        this.#emitter.emit('spilled', item, reason, receipt);
      },
      (err: unknown) => {
        if (item.signal?.aborted === true) this.#fail(item, asError(err), 'aborted');
        else if (err instanceof InvalidArgumentError && item.body === undefined) this.#fail(item, err, 'invalid');
        else this.#fail(item, asError(err), 'spill-failed');
      },
    );
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
      case 'queued': // left behind in the backlog or p-queue: skipped when reached
        this.#fail(item, reason, 'aborted');
        break;
      case 'uploading':
        item.attempt?.abort(item.signal?.reason); // the attempt settles it
        break;
      default: // spilling: the outbox has the signal and settles it
    }
  }

  #kickEncoder(): void {
    if (this.#encoding || this.#state !== 'running') return;
    this.#encoding = true;
    this.#encodeLoop()
      .catch(unexpected)
      .finally(() => {
        this.#encoding = false;
        // A submission may have landed between the loop's last look and now.
        if (this.#backlog.waiting) this.#kickEncoder();
      });
  }

  /** Encodes the backlog, {@link ENCODE_AHEAD} at a time, handing items on in submission order. */
  async #encodeLoop(): Promise<void> {
    await Promise.resolve(); // never inside submit()
    const window: { item: Item; job: Promise<Encoded> }[] = [];
    const { outbox, compressionLevel } = this.options;
    while (this.#state === 'running') {
      while (window.length < ENCODE_AHEAD) {
        const item = this.#backlog.next();
        if (item === undefined) break;
        window.push({ item, job: encodeItem(item.report as Report, outbox, compressionLevel) });
      }
      const head = window.shift();
      if (head === undefined) return;
      const encoded = await head.job;
      const item = head.item;
      if (item.state !== 'encoding') continue; // aborted or stopped meanwhile
      if (encoded.kind === 'invalid') this.#fail(item, asError(encoded.error), 'invalid');
      else if (encoded.kind === 'large') this.#spill(item, 'large');
      else {
        item.encoded(encoded.body);
        // Measured now: over the byte bound, and the outbox can take it, it goes there instead of memory.
        if (outbox !== undefined && this.#queuedBytes > 0 && this.#queuedBytes + (item.bodyBytes as number) > this.options.maxQueueBytes) this.#spill(item, 'queue-full');
        else this.#enqueue(item);
      }
    }
  }

  #enqueue(item: Item): void {
    this.#move(item, 'queued');
    this.#queue.add(() => this.#upload(item), { priority: item.priority }).catch(unexpected);
  }

  /** One attempt; holds its worker until the uploader's promise settles, so at most `workers` requests run. */
  async #upload(item: Item): Promise<void> {
    if (item.state !== 'queued') return; // settled while it waited
    this.#move(item, 'uploading');
    item.attempts++;
    const controller = new AbortController();
    item.attempt = controller;
    const timeoutMs = this.options.uploadTimeoutMs;
    const timer = setTimeout(() => controller.abort(new UploadTimeoutError(timeoutMs)), timeoutMs);
    if (this.#emitter.has('started')) this.#emitter.emit('started', item, item.attempts);
    let call: Promise<UploadResult>;
    try {
      call = this.options.uploaderFor(item.tenantId).uploadReport(item.upload as NonNullable<Item['upload']>, { signal: controller.signal });
    } catch (err) {
      call = Promise.reject(err);
    }
    try {
      const result = await abortable(call, controller.signal);
      item.attempt = undefined;
      clearTimeout(timer);
      this.#complete(item, result);
    } catch (err) {
      item.attempt = undefined;
      clearTimeout(timer);
      this.#attemptFailed(item, err);
    }
    await call.then(noop, noop);
  }

  #attemptFailed(item: Item, err: unknown): void {
    const step = nextStep(err, {
      policy: this.options.retryPolicy,
      attempts: item.attempts,
      retryAttempts: this.options.retryAttempts,
      hasOutbox: this.options.outbox !== undefined,
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
      this.#emitter.emit('retry', item, step.error, item.attempts, step.delayMs);
    }
  }
}

/** Settles like `promise`, or rejects with `signal.reason` as soon as `signal` aborts (the promise is left to settle on its own). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
