/**
 * The sampling loop: reads the source on an unref'd timer (one sample at a
 * time, never overlapping), adds the event-loop utilization of the last
 * interval, keeps the last `historySize` samples, and hands each sample on.
 */
import { performance as perf, type EventLoopUtilization } from 'node:perf_hooks';
import { ResourceReadError, type ResourceReadTarget } from '../errors.js';
import type { ResourceMetrics } from './events.js';
import type { MemoryScope, ResourceSource, SourceReading } from './reading.js';

/** A sample and what failed while taking it. */
export interface Sample {
  readonly metrics: ResourceMetrics;
  readonly errors: readonly ResourceReadError[];
}

/** Fields that are fractions, each with the signal it belongs to. */
const FRACTIONS = [
  ['cpu', 'cpu'],
  ['cgroupCpu', 'cpu'],
  ['hostCpu', 'cpu'],
  ['memory', 'memory'],
  ['cgroupMemory', 'memory'],
  ['hostMemory', 'memory'],
  ['disk', 'disk'],
] as const satisfies readonly (readonly [keyof SourceReading, ResourceReadTarget])[];

/** Fields that are counts or amounts (non-negative, finite), each with its signal. */
const AMOUNTS = [
  ['effectiveCpus', 'cpu'],
  ['memoryUsedBytes', 'memory'],
  ['memoryLimitBytes', 'memory'],
  ['oomKills', 'memory'],
  ['diskUsedBytes', 'disk'],
  ['diskTotalBytes', 'disk'],
] as const satisfies readonly (readonly [keyof SourceReading, ResourceReadTarget])[];

const amount = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;

function describeValue(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : typeof value === 'object' && value !== null ? 'an object' : String(value);
}

/** `memoryScopes` as given (checked), or one level made of `memory` / `memoryUsedBytes` and `memoryLimitBytes`. */
function scopesOf(r: SourceReading, memory: number | undefined, used: number | undefined, limit: number | undefined, errors: ResourceReadError[]): readonly MemoryScope[] | undefined {
  const given: unknown = r.memoryScopes;
  if (given === undefined) {
    if (limit === undefined || limit <= 0) return undefined;
    const usedBytes = memory !== undefined ? memory * limit : used;
    return usedBytes === undefined ? undefined : [{ usedBytes, limitBytes: limit }];
  }
  if (Array.isArray(given) && given.length > 0 && given.every((x: unknown) => typeof x === 'object' && x !== null && amount((x as MemoryScope).usedBytes) && amount((x as MemoryScope).limitBytes) && (x as MemoryScope).limitBytes > 0)) {
    return (given as readonly MemoryScope[]).map(({ usedBytes, limitBytes }) => ({ usedBytes, limitBytes }));
  }
  errors.push(new ResourceReadError('memory', 'The source reported `memoryScopes` that are not a non-empty list of { usedBytes, limitBytes > 0 }'));
  return undefined;
}

/**
 * Turns a reading (from any source, so checked field by field) into metrics.
 * A field that is present but not a valid value — a fraction over 1, a
 * negative or non-numeric figure — is left unknown and reported in `errors`.
 */
function toMetrics(r: SourceReading, at: number, eventLoop: number | undefined, errors: ResourceReadError[]): ResourceMetrics {
  const values: Partial<Record<keyof SourceReading, number>> = {};
  for (const [name, target] of FRACTIONS) {
    const x: unknown = r[name];
    if (x === undefined) continue;
    if (amount(x) && x <= 1) values[name] = x;
    else errors.push(new ResourceReadError(target, `The source reported \`${name}\` = ${describeValue(x)}, not a fraction from 0 to 1`));
  }
  for (const [name, target] of AMOUNTS) {
    const x: unknown = r[name];
    if (x === undefined) continue;
    if (amount(x)) values[name] = x;
    else errors.push(new ResourceReadError(target, `The source reported \`${name}\` = ${describeValue(x)}, not a non-negative number`));
  }
  return {
    at,
    cpu: values.cpu,
    cgroupCpu: values.cgroupCpu,
    hostCpu: values.hostCpu,
    effectiveCpus: values.effectiveCpus,
    memory: values.memory,
    cgroupMemory: values.cgroupMemory,
    hostMemory: values.hostMemory,
    memoryUsedBytes: values.memoryUsedBytes,
    memoryLimitBytes: values.memoryLimitBytes,
    memoryScopes: scopesOf(r, values.memory, values.memoryUsedBytes, values.memoryLimitBytes, errors),
    oomKills: values.oomKills,
    disk: values.disk,
    diskUsedBytes: values.diskUsedBytes,
    diskTotalBytes: values.diskTotalBytes,
    eventLoop,
  };
}

/** Every failure a reading lists, each as a {@link ResourceReadError} (a foreign error becomes the `cause` of one). */
function failuresOf(r: SourceReading): ResourceReadError[] {
  const listed: unknown = r.failures;
  if (listed === undefined) return [];
  if (!Array.isArray(listed)) return [new ResourceReadError('source', `The source reported \`failures\` that are not a list: ${describeValue(listed)}`)];
  return listed.map((e: unknown) => (e instanceof ResourceReadError ? e : new ResourceReadError('source', 'The resource source reported a failure', { cause: e })));
}

/** Samples a source periodically and keeps a bounded history. */
export class Sampler {
  readonly #source: ResourceSource;
  readonly #onSample: (sample: Sample) => void;
  readonly #onError: (err: unknown) => void;
  readonly #onReadStart: () => void;
  readonly #history: (ResourceMetrics | undefined)[];
  #next = 0;
  #count = 0;
  #elu: EventLoopUtilization | undefined;
  #inFlight: Promise<ResourceMetrics> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #intervalMs = 0;

  /**
   * @param source - where readings come from
   * @param historySize - samples kept
   * @param onSample - called with every sample, before `sample()` resolves
   * @param onError - called when the loop itself fails (never with a read failure: those are in the sample)
   * @param onReadStart - called just before each read starts (what happens after it cannot be in the reading)
   */
  constructor(source: ResourceSource, historySize: number, onSample: (sample: Sample) => void, onError: (err: unknown) => void, onReadStart: () => void = () => undefined) {
    this.#source = source;
    this.#history = new Array<ResourceMetrics | undefined>(historySize);
    this.#onSample = onSample;
    this.#onError = onError;
    this.#onReadStart = onReadStart;
  }

  /** Starts the periodic loop (the first sample is `intervalMs` away). */
  start(intervalMs: number): void {
    this.#running = true;
    this.#intervalMs = intervalMs;
    this.#schedule(intervalMs);
  }

  /**
   * Stops the loop and waits for a sample in flight, at most `timeoutMs`.
   * Leaves no timer behind.
   * @returns whether no read is left in flight
   */
  async stop(timeoutMs: number): Promise<boolean> {
    this.#running = false;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const inFlight = this.#inFlight;
    if (inFlight === undefined) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      inFlight.then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((resolve) => (timer = setTimeout(resolve, timeoutMs, false))),
    ]);
    clearTimeout(timer);
    return done;
  }

  /** Takes a sample now; joins the one in flight if there is one. */
  sample(): Promise<ResourceMetrics> {
    this.#inFlight ??= this.#take().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  /** The kept samples, oldest first. */
  history(): ResourceMetrics[] {
    const size = this.#history.length;
    const out: ResourceMetrics[] = [];
    const start = this.#count < size ? 0 : this.#next;
    for (let i = 0; i < Math.min(this.#count, size); i++) out.push(this.#history[(start + i) % size] as ResourceMetrics);
    return out;
  }

  /** The latest sample. */
  latest(): ResourceMetrics | undefined {
    return this.#count === 0 ? undefined : this.#history[(this.#next + this.#history.length - 1) % this.#history.length];
  }

  async #take(): Promise<ResourceMetrics> {
    let reading: SourceReading;
    let errors: ResourceReadError[];
    this.#onReadStart();
    try {
      reading = await this.#source.read();
      if (typeof reading !== 'object' || reading === null) throw new TypeError(`read() resolved with ${String(reading)}, not a reading`);
      errors = failuresOf(reading);
    } catch (err) {
      reading = {};
      errors = [new ResourceReadError('source', 'The resource source failed to read', { cause: err })];
    }
    const elu = perf.eventLoopUtilization();
    const eventLoop = this.#elu === undefined ? undefined : perf.eventLoopUtilization(elu, this.#elu).utilization;
    this.#elu = elu;
    const metrics = toMetrics(reading, Date.now(), eventLoop === undefined || Number.isNaN(eventLoop) ? undefined : eventLoop, errors);
    this.#history[this.#next] = metrics;
    this.#next = (this.#next + 1) % this.#history.length;
    this.#count++;
    this.#onSample({ metrics, errors });
    return metrics;
  }

  #schedule(delayMs: number): void {
    if (!this.#running) return;
    this.#timer = setTimeout(() => void this.#tick(), delayMs);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    this.#timer = undefined;
    const started = performance.now();
    try {
      await this.sample();
    } catch (err) {
      this.#onError(err);
    }
    // Keep the cadence: the next sample is one interval after this one began.
    this.#schedule(Math.max(0, this.#intervalMs - (performance.now() - started)));
  }
}
