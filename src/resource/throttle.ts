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
  readonly hostCpuThreshold: number;
  readonly hostMemoryThreshold: number;
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

/** Signals in the order reasons are reported (the most dangerous first, after `oom`), with the reads each comes from. */
const SIGNALS: readonly (readonly [ResourceSignal, ResourceReadTarget])[] = [
  ['memory', 'memory'],
  ['hostMemory', 'memory'],
  ['disk', 'disk'],
  ['cpu', 'cpu'],
  ['hostCpu', 'cpu'],
];

/** The thresholds of every signal (1: off). */
export function thresholdsOf(s: ThrottleSettings): Readonly<Record<ResourceSignal, number>> {
  return { cpu: s.cpuThreshold, memory: s.memoryThreshold, disk: s.diskThreshold, hostCpu: s.hostCpuThreshold, hostMemory: s.hostMemoryThreshold };
}

/** Throttle state across samples. */
export class Throttle {
  readonly #s: ThrottleSettings;
  readonly #thresholds: Readonly<Record<ResourceSignal, number>>;
  /** The signals with a threshold under 1, in report order. */
  readonly #active: readonly (readonly [ResourceSignal, ResourceReadTarget])[];
  #throttled = false;
  #reasons: readonly ThrottleReason[] = [];
  #throttledAt = 0;
  #lastHotAt = 0;
  #lastOomKills: number | undefined;
  readonly #warned: Partial<Record<ResourceSignal, boolean>> = {};
  /** Since when each signal has been unreadable, for those that are. */
  readonly #failingSince: Partial<Record<ResourceSignal, number>> = {};

  /** @param settings - thresholds, margin and cooldown */
  constructor(settings: ThrottleSettings) {
    this.#s = settings;
    this.#thresholds = thresholdsOf(settings);
    // A threshold of 1 turns the signal off: nothing is over 100 %.
    this.#active = SIGNALS.filter(([signal]) => this.#thresholds[signal] < 1);
  }

  /** Whether admission is throttled. */
  get throttled(): boolean {
    return this.#throttled;
  }

  /** Reasons of the latest breach while throttled; empty when not throttled. */
  get reasons(): readonly ThrottleReason[] {
    return this.#reasons;
  }

  /**
   * Feeds one sample taken at `now` (a monotonic clock, in ms). `failed`
   * names the reads that failed: a signal left unknown by one holds the
   * resume back (as a warm signal would) for at most one `cooldownMs` from
   * when it started failing, so a read that never recovers cannot keep
   * admission throttled for ever. With `ignoreCpu` (the first sample after
   * start: CPU is a rate, and a custom source's first figure has no
   * baseline either) the CPU signals are not looked at.
   */
  update(metrics: ResourceMetrics, now: number, failed: ReadonlySet<ResourceReadTarget>, ignoreCpu = false): Decision {
    const reasons: ThrottleReason[] = [];
    const parts: string[] = [];
    const oom = metrics.oomKills;
    if (oom !== undefined && this.#lastOomKills !== undefined && oom > this.#lastOomKills) {
      reasons.push('oom');
      parts.push(`oom kills ${this.#lastOomKills} → ${oom}`);
    }
    if (oom !== undefined) this.#lastOomKills = oom;

    const warnings: WarningEvent[] = [];
    let hot = false;
    for (const [signal, target] of this.#active) {
      if (ignoreCpu && target === 'cpu') continue;
      const threshold = this.#thresholds[signal];
      const value = metrics[signal];
      if (value === undefined) {
        if (failed.has(target) || failed.has('source')) {
          const since = (this.#failingSince[signal] ??= now);
          if (now - since < this.#s.cooldownMs) hot = true;
        } else delete this.#failingSince[signal];
        continue;
      }
      delete this.#failingSince[signal];
      const level = this.#s.warningFactor * threshold;
      if (value > threshold) {
        reasons.push(signal);
        parts.push(`${signal} ${value.toFixed(2)} > ${threshold}`);
        this.#warned[signal] = true;
      } else if (value >= level) {
        if (this.#warned[signal] !== true) warnings.push({ signal, value, level, threshold, metrics });
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
