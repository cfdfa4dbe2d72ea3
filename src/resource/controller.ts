/**
 * `ResourceController`: admits work only while the host (or container) can
 * take it. Glues the sampler, the throttle decision, the slots and the
 * adaptive limit together, and owns the lifecycle.
 */
import { availableParallelism } from 'node:os';
import { CloseTimeoutError, IllegalStateError, InvalidArgumentError, OutpostError, ResourceReadError } from '../errors.js';
import { Adaptive } from './adaptive.js';
import { Admission, type Slot } from './admission.js';
import { describeValue, memoryOf, priorityOf, timeoutOf, type AcquireOptions, type RunOptions, type TryAcquireOptions } from './call-options.js';
import { isolated, ResourceEmitter, type ResourceControllerEvents, type ResourceMetrics, type ResourceStatus } from './events.js';
import { MAX_JOBS_LIMIT, resolveResourceControllerOptions, type ResolvedResourceControllerOptions, type ResourceControllerOptions } from './options.js';
import type { ResourceSource, SourceInfo } from './reading.js';
import { runInSlot, type RunningJob } from './run.js';
import { Sampler, type Sample } from './sampler.js';
import { checkDataDir } from './disk.js';
import { SystemSource } from './source.js';
import { thresholdsOf, Throttle } from './throttle.js';

/** Lifecycle state of a {@link ResourceController}. */
export type ResourceControllerState = 'idle' | 'running' | 'closing' | 'closed';

const CUSTOM_SOURCE: SourceInfo = Object.freeze({ cpu: 'custom', memory: 'custom', cpuCgroupPath: undefined, memoryCgroupPath: undefined, dataDir: undefined });

/** Whether `promise` settles within `ms` (a timer that holds the process: the caller is waiting on it). */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = promise.then(
    () => true,
    () => true,
  );
  const done = await Promise.race([settled, new Promise<boolean>((resolve) => (timer = setTimeout(resolve, Math.max(0, ms), false)))]);
  clearTimeout(timer);
  return done;
}

/**
 * Admits jobs only while CPU, memory and disk allow. It samples what the
 * kernel enforces on the process (its cgroup v2 or v1 limits, else the
 * host's) on an unref'd timer; when a signal goes over its threshold it
 * admits only `minConcurrentJobs` until every signal has stayed calm for
 * `cooldownMs`. `tryAcquire()` and `release()` only touch counters.
 *
 * @example
 * ```ts
 * await using resources = new ResourceController({ dataDir: '/var/lib/agent' });
 * await resources.start();
 * resources.on('throttled', (e) => log.warn(`throttled: ${e.message}`));
 * const report = await resources.run((signal) => scan(job, { signal }), { timeoutMs: 30 * 60_000 });
 * ```
 */
export class ResourceController {
  /** The resolved options. */
  readonly options: ResolvedResourceControllerOptions;
  readonly #emitter = new ResourceEmitter();
  readonly #throttle: Throttle;
  readonly #admission: Admission;
  readonly #adaptive: Adaptive;
  readonly #jobs = new Set<RunningJob>();
  #state: ResourceControllerState = 'idle';
  #source: ResourceSource | undefined;
  #sampler: Sampler | undefined;
  #samples = 0;
  #ceilingSet: boolean;
  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  /** @throws {@link InvalidOptionError} when an option is of the wrong type or out of range */
  constructor(options: ResourceControllerOptions = {}) {
    this.options = resolveResourceControllerOptions(options);
    const o = this.options;
    this.#ceilingSet = o.maxConcurrentJobs !== undefined;
    const max = o.maxConcurrentJobs ?? Math.max(o.minConcurrentJobs, availableParallelism());
    this.#throttle = new Throttle(o);
    this.#admission = new Admission(max, o.minConcurrentJobs, o.memoryThreshold);
    this.#adaptive = new Adaptive(thresholdsOf(o), o.resumeMargin, Math.max(1, o.minConcurrentJobs), max);
    // The callbacks run first: one that throws must not keep the listeners added with on() from running.
    if (o.onThrottled !== undefined) this.on('throttled', isolated('throttled', o.onThrottled));
    if (o.onResumed !== undefined) this.on('resumed', isolated('resumed', o.onResumed));
  }

  /** `'idle'` before `start()`, `'running'`, `'closing'`, `'closed'`. */
  get state(): ResourceControllerState {
    return this.#state;
  }

  /**
   * Checks that `dataDir` exists, takes the first sample, sets
   * `maxConcurrentJobs` to the effective CPUs when it was not given, and
   * starts sampling every `sampleIntervalMs`. The first sample decides on
   * memory, disk and OOM kills; CPU, a rate, is decided from the second
   * sample on. Until the first sample is in, only `minConcurrentJobs` jobs
   * are admitted (`acquire()` calls wait). Idempotent while running.
   * @throws (rejects) {@link IllegalStateError} after `close()`; {@link InvalidOptionError} when `dataDir` is not an existing directory (the controller is `idle` again)
   */
  start(): Promise<void> {
    if (this.#state === 'running') return this.#starting ?? Promise.resolve();
    if (this.#state !== 'idle') return Promise.reject(new IllegalStateError('start', this.#state));
    this.#state = 'running';
    // Limits are unknown until the first sample: hold admission to the slots that are always available.
    this.#admission.throttled = true;
    this.#starting = this.#start().catch((err: unknown) => {
      if (this.#state === 'running') this.#state = 'idle';
      this.#starting = undefined;
      throw err;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    const o = this.options;
    if (o.source === undefined && o.dataDir !== undefined) await checkDataDir(o.dataDir);
    if (this.#state !== 'running') return;
    this.#source = o.source ?? new SystemSource({ cgroupRoot: o.cgroupRoot, procRoot: o.procRoot, dataDir: o.dataDir });
    this.#sampler = new Sampler(
      this.#source,
      o.historySize,
      (sample) => this.#apply(sample),
      (err) => this.#loopFailed(err),
      () => this.#admission.readStarted(),
    );
    await this.#sampler.sample();
    if (this.#state !== 'running') return;
    this.#sampler.start(o.sampleIntervalMs);
  }

  /** Subscribes to an event. */
  on<K extends keyof ResourceControllerEvents>(event: K, listener: (...args: ResourceControllerEvents[K]) => void): this {
    this.#emitter.on(event, listener);
    return this;
  }

  /** Subscribes to the next occurrence of an event. */
  once<K extends keyof ResourceControllerEvents>(event: K, listener: (...args: ResourceControllerEvents[K]) => void): this {
    this.#emitter.once(event, listener);
    return this;
  }

  /** Unsubscribes a listener. */
  off<K extends keyof ResourceControllerEvents>(event: K, listener: (...args: ResourceControllerEvents[K]) => void): this {
    this.#emitter.off(event, listener);
    return this;
  }

  /**
   * A slot now, or `undefined` (counted in `rejectedJobs`) when at the limit,
   * throttled, when declared memory does not fit, or when `acquire()` calls
   * are waiting (it never jumps ahead of them). No syscall, no clock read.
   * @throws {@link IllegalStateError} unless running; {@link InvalidArgumentError} for a bad option; {@link JobTooLargeError} when `memoryBytes` can never fit
   */
  tryAcquire(options?: TryAcquireOptions): Slot | undefined {
    if (this.#state !== 'running') throw new IllegalStateError('acquire a slot', this.#state);
    if (options === undefined) return this.#admission.tryAcquire(0, 0);
    return this.#admission.tryAcquire(priorityOf(options), memoryOf(options));
  }

  /**
   * A slot, waiting for one if needed: by priority (higher first), first
   * come first served within a priority. Woken by a release, a resume, a
   * resize or a memory reading — never by polling.
   * @throws (rejects) `signal.reason` when aborted; {@link IllegalStateError} unless running or when closed while waiting; {@link JobTooLargeError} when `memoryBytes` can never fit (at once, or when a sample shows a smaller limit)
   */
  acquire(options: AcquireOptions = {}): Promise<Slot> {
    try {
      if (this.#state !== 'running') throw new IllegalStateError('acquire a slot', this.#state);
      return this.#admission.acquire(priorityOf(options), memoryOf(options), options.signal);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Acquires a slot, runs `fn(signal)`, and releases the slot however `fn`
   * ends. After `timeoutMs` the signal is aborted with
   * {@link JobTimeoutError}, a `job-timeout` event fires and `run()` rejects
   * at once; the slot stays held until `fn` really settles (a job that
   * ignores its signal still uses the host). Aborting `options.signal` or
   * `close()` aborts the job the same way.
   * @throws (rejects) what `fn` throws, {@link JobTimeoutError}, `signal.reason`, {@link IllegalStateError}, {@link JobTooLargeError}
   */
  async run<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options: RunOptions = {}): Promise<Awaited<T>> {
    if (typeof fn !== 'function') throw new InvalidArgumentError(`Expected \`fn\` to be a function, got ${describeValue(fn)}`);
    const timeoutMs = timeoutOf(options.timeoutMs);
    const slot = await this.acquire(options);
    if (this.#state !== 'running') {
      slot.release();
      throw new IllegalStateError('run a job', this.#state);
    }
    return runInSlot(slot, fn, {
      signal: options.signal,
      timeoutMs,
      onTimeout: (error) => this.#emitter.emit('job-timeout', { timeoutMs: error.timeoutMs, priority: slot.priority, memoryBytes: slot.memoryBytes, error }),
      jobs: this.#jobs,
    });
  }

  /**
   * Sets the most jobs admitted at once (the ceiling `autoAdapt` moves under).
   * Growing admits waiters at once; shrinking lets running jobs finish.
   * @throws {@link InvalidArgumentError} unless an integer from max(1, `minConcurrentJobs`) to 100 000; {@link IllegalStateError} once closing
   */
  setMaxConcurrentJobs(n: number): void {
    if (this.#state === 'closing' || this.#state === 'closed') throw new IllegalStateError('resize', this.#state);
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_JOBS_LIMIT) {
      throw new InvalidArgumentError(`Expected \`maxConcurrentJobs\` to be an integer from 1 to ${MAX_JOBS_LIMIT}, got ${describeValue(n)}`);
    }
    if (n < this.options.minConcurrentJobs) {
      throw new InvalidArgumentError(`Expected \`maxConcurrentJobs\` (${n}) to be at least \`minConcurrentJobs\` (${this.options.minConcurrentJobs})`);
    }
    this.#ceilingSet = true;
    this.#adaptive.reset(n);
    this.#admission.max = n;
    this.#admission.dispatch();
  }

  /**
   * The limit current load suggests, from max(1, `minConcurrentJobs`) to the
   * `maxConcurrentJobs` ceiling: halved on every breach, one more after a
   * calm sample (smoothed) in which every slot was in use, unchanged
   * otherwise. `autoAdapt: true` applies it after every sample.
   */
  adaptiveMaxJobs(): number {
    return this.#adaptive.recommend();
  }

  /** Where admission stands: throttled or not and why, slots, counters, the latest sample and its source. */
  status(): ResourceStatus {
    const a = this.#admission;
    const reasons = this.#throttle.reasons;
    return {
      throttled: this.#throttle.throttled,
      reason: reasons[0],
      reasons,
      activeJobs: a.active,
      pendingJobs: a.pending,
      rejectedJobs: a.rejected,
      maxJobs: a.max,
      minJobs: a.min,
      reservedMemoryBytes: a.reservedBytes,
      memoryBudgetBytes: a.budgetBytes,
      metrics: this.#sampler?.latest(),
      source: this.#source === undefined ? undefined : (this.#source.describe?.() ?? CUSTOM_SOURCE),
    };
  }

  /** The last `historySize` samples, oldest first. */
  history(): ResourceMetrics[] {
    return this.#sampler?.history() ?? [];
  }

  /**
   * Takes a sample now (besides the periodic ones) and applies it, as the
   * timer would. Joins a sample already in flight.
   * @throws (rejects) {@link IllegalStateError} unless running
   */
  async sample(): Promise<ResourceMetrics> {
    if (this.#state !== 'running') throw new IllegalStateError('sample', this.#state);
    await this.#starting;
    return (this.#sampler as Sampler).sample();
  }

  /**
   * Stops sampling (waiting for a sample in flight), rejects waiting
   * `acquire()` calls with {@link IllegalStateError}, aborts jobs started
   * with `run()` and waits for them to settle — all within
   * `closeTimeoutMs`. What is still running then is left behind: `close()`
   * resolves and emits {@link CloseTimeoutError} as an `error` event. Slots
   * held outside `run()` may still be released. Idempotent; leaves no timer
   * behind.
   */
  close(): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    const grace = this.options.closeTimeoutMs;
    const deadline = performance.now() + grace;
    const left = (): number => deadline - performance.now();
    const started = this.#starting === undefined || (await within(this.#starting, left()));
    const sampled = started && ((await this.#sampler?.stop(left())) ?? true);
    this.#admission.rejectAll(new IllegalStateError('acquire a slot', 'closing'));
    const reason = new IllegalStateError('run a job', 'closing');
    for (const job of this.#jobs) job.abort(reason);
    const jobs = [...this.#jobs];
    const settled = jobs.length === 0 || (await within(Promise.all(jobs.map((j) => j.settled)), left()));
    this.#state = 'closed';
    if (!settled || !sampled) this.#emitter.error(new CloseTimeoutError(grace, jobs.filter((j) => this.#jobs.has(j)).length, !sampled));
  }

  #apply({ metrics, errors }: Sample): void {
    // A read that outlived close() (see closeTimeoutMs) changes nothing.
    if (this.#state === 'closed') return;
    const admission = this.#admission;
    admission.setMemory(metrics.memoryScopes);
    // The first sample decides on everything but CPU: a rate needs a previous sample.
    const first = ++this.#samples === 1;
    if (first && !this.#ceilingSet && metrics.effectiveCpus !== undefined) {
      // Before anyone waiting is let in: the default limit is the effective CPUs.
      const max = Math.min(MAX_JOBS_LIMIT, Math.max(this.options.minConcurrentJobs, 1, Math.floor(metrics.effectiveCpus)));
      admission.max = max;
      this.#adaptive.reset(max);
    }
    const decision = this.#throttle.update(metrics, performance.now(), new Set(errors.map((e) => e.target)), first);
    this.#adaptive.update(metrics, { breach: decision.breach, peakActive: admission.takePeak() }, first);
    if (this.options.autoAdapt) admission.max = this.#adaptive.recommend();
    admission.throttled = this.#throttle.throttled;
    admission.dispatch();
    const emitter = this.#emitter;
    emitter.emit('sample', metrics);
    if (errors.length > 0) emitter.emit('sample-failed', { errors, metrics });
    for (const warning of decision.warnings) emitter.emit('warning', warning);
    if (decision.throttled !== undefined) emitter.emit('throttled', decision.throttled);
    if (decision.resumed !== undefined) emitter.emit('resumed', decision.resumed);
  }

  #loopFailed(err: unknown): void {
    if (this.#state !== 'running') return;
    this.#emitter.error(err instanceof OutpostError ? err : new ResourceReadError('source', 'Sampling failed', { cause: err }));
  }
}
