/**
 * The sampling loop: reads the source on an unref'd timer (one sample at a
 * time, never overlapping), adds the event-loop utilization of the last
 * interval, keeps the last `historySize` samples, and hands each sample on.
 */
import { performance as perf, type EventLoopUtilization } from 'node:perf_hooks';
import { ResourceReadError } from '../errors.js';
import type { ResourceMetrics } from './events.js';
import type { ResourceSource, SourceReading } from './source.js';

/** A sample and what failed while taking it. */
export interface Sample {
  readonly metrics: ResourceMetrics;
  readonly errors: readonly ResourceReadError[];
}

const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) && x >= 0 ? x : undefined);

/** Turns a reading (from any source, so checked field by field) into metrics. */
function toMetrics(r: SourceReading, at: number, eventLoop: number | undefined): ResourceMetrics {
  return {
    at,
    cpu: num(r.cpu),
    cgroupCpu: num(r.cgroupCpu),
    hostCpu: num(r.hostCpu),
    effectiveCpus: num(r.effectiveCpus),
    memory: num(r.memory),
    cgroupMemory: num(r.cgroupMemory),
    hostMemory: num(r.hostMemory),
    memoryUsedBytes: num(r.memoryUsedBytes),
    memoryLimitBytes: num(r.memoryLimitBytes),
    oomKills: num(r.oomKills),
    disk: num(r.disk),
    diskUsedBytes: num(r.diskUsedBytes),
    diskTotalBytes: num(r.diskTotalBytes),
    eventLoop,
  };
}

/** Samples a source periodically and keeps a bounded history. */
export class Sampler {
  readonly #source: ResourceSource;
  readonly #onSample: (sample: Sample) => void;
  readonly #onError: (err: unknown) => void;
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
   */
  constructor(source: ResourceSource, historySize: number, onSample: (sample: Sample) => void, onError: (err: unknown) => void) {
    this.#source = source;
    this.#history = new Array<ResourceMetrics | undefined>(historySize);
    this.#onSample = onSample;
    this.#onError = onError;
  }

  /** Starts the periodic loop (the first sample is `intervalMs` away). */
  start(intervalMs: number): void {
    this.#running = true;
    this.#intervalMs = intervalMs;
    this.#schedule(intervalMs);
  }

  /** Stops the loop and waits for a sample in flight. Leaves no timer behind. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#inFlight?.catch(() => undefined);
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
    try {
      reading = await this.#source.read();
      if (typeof reading !== 'object' || reading === null) throw new TypeError(`read() resolved with ${String(reading)}, not a reading`);
      errors = Array.isArray(reading.failures) ? reading.failures.filter((e) => e instanceof ResourceReadError) : [];
    } catch (err) {
      reading = {};
      errors = [new ResourceReadError('source', 'The resource source failed to read', { cause: err })];
    }
    const elu = perf.eventLoopUtilization();
    const eventLoop = this.#elu === undefined ? undefined : perf.eventLoopUtilization(elu, this.#elu).utilization;
    this.#elu = elu;
    const metrics = toMetrics(reading, Date.now(), eventLoop === undefined || Number.isNaN(eventLoop) ? undefined : eventLoop);
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
