/**
 * `adaptiveMaxJobs()`: a recommended concurrency from current load, by
 * additive increase and multiplicative decrease (as TCP sizes its window):
 * halve on a breach, add one only while the smoothed load is calm and the
 * slots were actually all in use.
 */
import type { ResourceMetrics, ResourceSignal } from './events.js';

/** Weight of the newest sample in the smoothed load (an exponential moving average). */
const SMOOTHING = 0.5;
/** Factor applied on a breach. */
const DECREASE = 0.5;
const SIGNALS: readonly ResourceSignal[] = ['cpu', 'memory', 'disk', 'hostCpu', 'hostMemory'];
const CPU_SIGNALS: ReadonlySet<ResourceSignal> = new Set(['cpu', 'hostCpu']);

/** What one update needs to know besides the sample. */
export interface AdaptiveInput {
  /** The sample breached. */
  readonly breach: boolean;
  /** Most slots held at once since the previous sample. */
  readonly peakActive: number;
}

/** The recommendation's state. */
export class Adaptive {
  readonly #thresholds: Readonly<Record<ResourceSignal, number>>;
  readonly #margin: number;
  readonly #smoothed: Partial<Record<ResourceSignal, number>> = {};
  #value: number;
  #floor: number;
  #ceiling: number;

  /**
   * @param thresholds - per signal (1 = off)
   * @param margin - `resumeMargin`: smoothed load at or below threshold − margin is calm
   * @param floor - lowest recommendation (≥ 1)
   * @param ceiling - highest recommendation, and the starting point
   */
  constructor(thresholds: Readonly<Record<ResourceSignal, number>>, margin: number, floor: number, ceiling: number) {
    this.#thresholds = thresholds;
    this.#margin = margin;
    this.#floor = floor;
    this.#ceiling = ceiling;
    this.#value = ceiling;
  }

  /** Sets a new ceiling (`setMaxConcurrentJobs`) and starts again from it. */
  reset(ceiling: number): void {
    this.#ceiling = ceiling;
    this.#value = ceiling;
  }

  /** The recommended limit: an integer from the floor to the ceiling. */
  recommend(): number {
    return Math.max(this.#floor, Math.min(this.#ceiling, Math.floor(this.#value)));
  }

  /** Feeds one sample; with `ignoreCpu` (the first after start) its CPU figures are left out. */
  update(metrics: ResourceMetrics, input: AdaptiveInput, ignoreCpu = false): void {
    let calm = true;
    for (const signal of SIGNALS) {
      if (ignoreCpu && CPU_SIGNALS.has(signal)) continue;
      const value = metrics[signal];
      if (value === undefined || this.#thresholds[signal] >= 1) continue;
      const previous = this.#smoothed[signal];
      const smoothed = previous === undefined ? value : SMOOTHING * value + (1 - SMOOTHING) * previous;
      this.#smoothed[signal] = smoothed;
      if (smoothed > this.#thresholds[signal] - this.#margin) calm = false;
    }
    if (input.breach) this.#value = Math.max(this.#floor, this.recommend() * DECREASE);
    // Grow only when the recommended slots were all in use: room that is not used proves nothing.
    else if (calm && input.peakActive >= this.recommend()) this.#value = Math.min(this.#ceiling, this.recommend() + 1);
  }
}
