/**
 * `ResourceController`: admits work only while the host (or container) can
 * take it. Glues the sampler, the throttle decision, the slots and the
 * adaptive limit together, and owns the lifecycle.
 */
import { availableParallelism } from 'node:os';
import { IllegalStateError, InvalidArgumentError, OutpostError, ResourceReadError } from '../errors.js';
import { MAX_TIMER_MS } from '../internal/validate.js';
import { Adaptive } from './adaptive.js';
import { Admission, type Slot } from './admission.js';
import { ResourceEmitter, type ResourceControllerEvents, type ResourceMetrics, type ResourceStatus } from './events.js';
import { MAX_JOBS_LIMIT, resolveResourceControllerOptions, type ResolvedResourceControllerOptions, type ResourceControllerOptions } from './options.js';
import { runInSlot } from './run.js';
import { Sampler, type Sample } from './sampler.js';
import { SystemSource, type ResourceSource, type SourceInfo } from './source.js';
import { Throttle } from './throttle.js';

/** Lifecycle state of a {@link ResourceController}. */
export type ResourceControllerState = 'idle' | 'running' | 'closing' | 'closed';

/** Options of {@link ResourceController.tryAcquire}. */
export interface TryAcquireOptions {
  /** Priority recorded on the slot (an integer; higher is served first by `acquire()`). @default 0 */
  readonly priority?: number | undefined;
  /** Memory the job will use, in bytes: it is admitted only if the projected memory stays under `memoryThreshold`. @default 0 (not checked) */
  readonly memoryBytes?: number | undefined;
}

/** Options of {@link ResourceController.acquire}. */
export interface AcquireOptions extends TryAcquireOptions {
  /** Stops waiting: the call rejects with `signal.reason`. */
  readonly signal?: AbortSignal | undefined;
}

/** Options of {@link ResourceController.run}. */
export interface RunOptions extends AcquireOptions {
  /** Aborts the job's signal this long after it started (not counting the wait for a slot), in ms; `run()` then rejects with {@link JobTimeoutError}. @default none */
  readonly timeoutMs?: number | undefined;
}

const CUSTOM_SOURCE: SourceInfo = Object.freeze({ cpu: 'custom', memory: 'custom', cgroupPath: undefined, dataDir: undefined });

function describeValue(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : `${String(value)} (${typeof value})`;
}

/**
 * Admits jobs only while CPU, memory and disk allow. It samples what the
 * kernel enforces on the process (cgroup v2 or v1 limits, else the host) on
 * an unref'd timer; when a signal goes over its threshold it admits only
 * `minConcurrentJobs` until every signal has stayed calm for `cooldownMs`.
 * `tryAcquire()` and `release()` only touch counters.
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
  readonly #closeAbort = new AbortController();
  readonly #runs = new Set<Promise<unknown>>();
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
    this.#adaptive = new Adaptive({ cpu: o.cpuThreshold, memory: o.memoryThreshold, disk: o.diskThreshold }, o.resumeMargin, Math.max(1, o.minConcurrentJobs), max);
    if (o.onThrottled !== undefined) this.on('throttled', o.onThrottled);
    if (o.onResumed !== undefined) this.on('resumed', o.onResumed);
  }

  /** `'idle'` before `start()`, `'running'`, `'closing'`, `'closed'`. */
  get state(): ResourceControllerState {
    return this.#state;
  }

  /**
   * Takes the first sample (a baseline: CPU is a rate, and this sample is
   * not used for decisions), sets `maxConcurrentJobs` to the effective CPUs
   * when it was not given, and starts sampling every `sampleIntervalMs`.
   * Idempotent while running.
   * @throws {@link IllegalStateError} after `close()`
   */
  start(): Promise<void> {
    if (this.#state === 'running') return this.#starting ?? Promise.resolve();
    if (this.#state !== 'idle') return Promise.reject(new IllegalStateError('start', this.#state));
    this.#state = 'running';
    this.#starting = this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    const o = this.options;
    this.#source = o.source ?? new SystemSource({ cgroupRoot: o.cgroupRoot, procRoot: o.procRoot, dataDir: o.dataDir });
    this.#sampler = new Sampler(this.#source, o.historySize, (sample) => this.#apply(sample), (err) => this.#loopFailed(err));
    const first = await this.#sampler.sample();
    if (this.#state !== 'running') return;
    if (!this.#ceilingSet && first.effectiveCpus !== undefined) {
      const max = Math.min(MAX_JOBS_LIMIT, Math.max(o.minConcurrentJobs, 1, Math.floor(first.effectiveCpus)));
      this.#admission.max = max;
      this.#adaptive.reset(max);
    }
    this.#sampler.start(o.sampleIntervalMs);
  }

  /** Subscribes to an event. */
  on<K extends keyof ResourceControllerEvents>(event: K, listener: (...args: ResourceControllerEvents[K]) => void): this {
    (this.#emitter.events.on as (e: K, l: (...args: ResourceControllerEvents[K]) => void) => unknown)(event, listener);
    return this;
  }

  /** Subscribes to the next occurrence of an event. */
  once<K extends keyof ResourceControllerEvents>(event: K, listener: (...args: ResourceControllerEvents[K]) => void): this {
    (this.#emitter.events.once as (e: K, l: (...args: ResourceControllerEvents[K]) => void) => unknown)(event, listener);
    return this;
  }

  /** Unsubscribes a listener. */
  off<K extends keyof ResourceControllerEvents>(event: K, listener: (...args: ResourceControllerEvents[K]) => void): this {
    (this.#emitter.events.off as (e: K, l: (...args: ResourceControllerEvents[K]) => void) => unknown)(event, listener);
    return this;
  }

  /**
   * A slot now, or `undefined` (counted in `rejectedJobs`) when at the limit,
   * throttled, when declared memory does not fit, or when `acquire()` calls
   * are waiting (it never jumps ahead of them). No syscall, no clock read.
   * @throws {@link IllegalStateError} unless running; {@link InvalidArgumentError} for a bad option
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
   * @throws (rejects) `signal.reason` when aborted; {@link IllegalStateError} unless running or when closed while waiting
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
   * @throws (rejects) what `fn` throws, {@link JobTimeoutError}, `signal.reason`, {@link IllegalStateError}
   */
  async run<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options: RunOptions = {}): Promise<Awaited<T>> {
    if (typeof fn !== 'function') throw new InvalidArgumentError(`Expected \`fn\` to be a function, got ${describeValue(fn)}`);
    const timeoutMs = options.timeoutMs;
    if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMER_MS)) {
      throw new InvalidArgumentError(`Expected \`timeoutMs\` to be an integer from 1 to ${MAX_TIMER_MS}, got ${describeValue(timeoutMs)}`);
    }
    const slot = await this.acquire(options);
    return runInSlot(slot, fn, {
      signals: options.signal === undefined ? [this.#closeAbort.signal] : [options.signal, this.#closeAbort.signal],
      timeoutMs,
      onTimeout: (error) => this.#emitter.emit('job-timeout', { timeoutMs: error.timeoutMs, priority: slot.priority, memoryBytes: slot.memoryBytes, error }),
      track: this.#runs,
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
   * with `run()` and waits for them to settle. Slots held outside `run()`
   * may still be released. Idempotent; leaves no timer behind.
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
    await this.#starting?.catch(() => undefined);
    await this.#sampler?.stop();
    this.#admission.rejectAll(new IllegalStateError('acquire a slot', 'closing'));
    this.#closeAbort.abort(new IllegalStateError('run a job', 'closing'));
    await Promise.allSettled([...this.#runs]);
    this.#state = 'closed';
  }

  #apply({ metrics, errors }: Sample): void {
    const admission = this.#admission;
    admission.setBudget({ fraction: metrics.memory, limitBytes: metrics.memoryLimitBytes });
    let decision: ReturnType<Throttle['update']> | undefined;
    if (++this.#samples === 1) {
      // The first sample is a baseline: CPU and event-loop figures need a previous one.
      this.#throttle.baseline(metrics);
      admission.takePeak();
    } else {
      decision = this.#throttle.update(metrics, performance.now(), new Set(errors.map((e) => e.target)));
      this.#adaptive.update(metrics, { breach: decision.breach, peakActive: admission.takePeak() });
      if (this.options.autoAdapt) admission.max = this.#adaptive.recommend();
      admission.throttled = this.#throttle.throttled;
    }
    admission.dispatch();
    const emitter = this.#emitter;
    emitter.emit('sample', metrics);
    if (errors.length > 0) emitter.emit('sample-failed', { errors, metrics });
    if (decision === undefined) return;
    for (const warning of decision.warnings) emitter.emit('warning', warning);
    if (decision.throttled !== undefined) emitter.emit('throttled', decision.throttled);
    if (decision.resumed !== undefined) emitter.emit('resumed', decision.resumed);
  }

  #loopFailed(err: unknown): void {
    if (this.#state !== 'running') return;
    this.#emitter.error(err instanceof OutpostError ? err : new ResourceReadError('source', 'Sampling failed', { cause: err }));
  }
}

function priorityOf(options: TryAcquireOptions): number {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`Expected the options to be an object, got ${describeValue(options)}`);
  const p = options.priority;
  if (p === undefined) return 0;
  if (typeof p !== 'number' || !Number.isSafeInteger(p)) throw new InvalidArgumentError(`Expected \`priority\` to be an integer, got ${describeValue(p)}`);
  return p;
}

function memoryOf(options: TryAcquireOptions): number {
  const m = options.memoryBytes;
  if (m === undefined) return 0;
  if (typeof m !== 'number' || !Number.isSafeInteger(m) || m < 0) throw new InvalidArgumentError(`Expected \`memoryBytes\` to be a non-negative integer, got ${describeValue(m)}`);
  return m;
}
