/**
 * The throttle decision: throttle as soon as a signal is over its threshold
 * (or the OOM-kill count rises), warn at `warningFactor × threshold`, and
 * resume only after every signal stayed at or below `threshold − margin`
 * for the whole cooldown. Pure: fed one sample at a time with its time.
 */
import type { ResourceReadTarget } from '../errors.js';
import type { ResourceMetrics, ResourceSignal, ResumedEvent, ThrottleReason, ThrottledEvent, WarningEvent } from './events.js';

/** The settings a {@link Throttle} decides by. */
export interface ThrottleSettings {
  readonly cpuThreshold: number;
  readonly memoryThreshold: number;
  readonly diskThreshold: number;
  readonly warningFactor: number;
  readonly resumeMargin: number;
  readonly cooldownMs: number;
}

/** What one sample changed. */
export interface Decision {
  /** Set when this sample started a throttle. */
  readonly throttled: ThrottledEvent | undefined;
  /** Set when this sample ended one. */
  readonly resumed: ResumedEvent | undefined;
  /** Signals that reached their warning level with this sample. */
  readonly warnings: readonly WarningEvent[];
  /** Whether this sample breached (over a threshold, or OOM kills rose). */
  readonly breach: boolean;
}

/** Signals in the order reasons are reported (the most dangerous first, after `oom`). */
const ORDER: readonly ResourceSignal[] = ['memory', 'disk', 'cpu'];

/** Throttle state across samples. */
export class Throttle {
  readonly #s: ThrottleSettings;
  readonly #thresholds: Readonly<Record<ResourceSignal, number>>;
  #throttled = false;
  #reasons: readonly ThrottleReason[] = [];
  #throttledAt = 0;
  #lastHotAt = 0;
  #lastOomKills: number | undefined;
  readonly #warned: Record<ResourceSignal, boolean> = { cpu: false, memory: false, disk: false };

  /** @param settings - thresholds, margin and cooldown */
  constructor(settings: ThrottleSettings) {
    this.#s = settings;
    this.#thresholds = { cpu: settings.cpuThreshold, memory: settings.memoryThreshold, disk: settings.diskThreshold };
  }

  /** Whether admission is throttled. */
  get throttled(): boolean {
    return this.#throttled;
  }

  /** Reasons of the latest breach while throttled; empty when not throttled. */
  get reasons(): readonly ThrottleReason[] {
    return this.#reasons;
  }

  /** Notes the OOM-kill count of a sample that is not used for decisions (the first one), so a later rise is seen. */
  baseline(metrics: ResourceMetrics): void {
    if (metrics.oomKills !== undefined) this.#lastOomKills = metrics.oomKills;
  }

  /**
   * Feeds one sample taken at `now` (a monotonic clock, in ms). `failed`
   * names the inputs that could not be read: such a sample does not count
   * toward resuming.
   */
  update(metrics: ResourceMetrics, now: number, failed: ReadonlySet<ResourceReadTarget>): Decision {
    const reasons: ThrottleReason[] = [];
    const parts: string[] = [];
    const oom = metrics.oomKills;
    if (oom !== undefined && this.#lastOomKills !== undefined && oom > this.#lastOomKills) {
      reasons.push('oom');
      parts.push(`oom kills ${this.#lastOomKills} → ${oom}`);
    }
    if (oom !== undefined) this.#lastOomKills = oom;

    const warnings: WarningEvent[] = [];
    let hot = failed.size > 0;
    for (const signal of ORDER) {
      const threshold = this.#thresholds[signal];
      const value = metrics[signal];
      // A threshold of 1 turns the signal off: nothing is over 100 %.
      if (threshold >= 1 || value === undefined) continue;
      const level = this.#s.warningFactor * threshold;
      if (value > threshold) {
        reasons.push(signal);
        parts.push(`${signal} ${value.toFixed(2)} > ${threshold}`);
        this.#warned[signal] = true;
      } else if (value >= level) {
        if (!this.#warned[signal]) warnings.push({ signal, value, level, threshold, metrics });
        this.#warned[signal] = true;
      } else if (value < level - this.#s.resumeMargin) {
        this.#warned[signal] = false;
      }
      if (value > threshold - this.#s.resumeMargin) hot = true;
    }

    let throttled: ThrottledEvent | undefined;
    let resumed: ResumedEvent | undefined;
    const [first] = reasons;
    if (first !== undefined) {
      this.#lastHotAt = now;
      this.#reasons = reasons;
      if (!this.#throttled) {
        this.#throttled = true;
        this.#throttledAt = now;
        throttled = { reason: first, reasons, message: parts.join(', '), metrics };
      }
    } else if (this.#throttled) {
      if (hot) this.#lastHotAt = now;
      else if (now - this.#lastHotAt >= this.#s.cooldownMs) {
        this.#throttled = false;
        this.#reasons = [];
        resumed = { throttledMs: now - this.#throttledAt, metrics };
      }
    }
    return { throttled, resumed, warnings, breach: first !== undefined };
  }
}
