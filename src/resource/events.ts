/**
 * The resource controller's typed events and the shapes `status()` and
 * `history()` return.
 */
import { ListenerError, type CloseTimeoutError, type JobTimeoutError, type OutpostError, type ResourceReadError } from '../errors.js';
import { SafeEmitter } from '../internal/safe-emitter.js';
import type { MemoryScope, SourceInfo } from './reading.js';

/** A signal with a threshold: `hostCpu` and `hostMemory` only when their opt-in thresholds are set. */
export type ResourceSignal = 'cpu' | 'memory' | 'disk' | 'hostCpu' | 'hostMemory';

/** Why admission is throttled: a signal over its threshold, or a rise of the cgroup's OOM-kill count. */
export type ThrottleReason = ResourceSignal | 'oom';

/** One sample. Fractions are 0–1; `undefined` means unknown (not measured, or the read failed). */
export interface ResourceMetrics {
  /** When the sample was taken, ms since the epoch. */
  readonly at: number;
  /** CPU in use as a fraction of what the process may use: `cgroupCpu` when the process is in a cgroup (see `status().source.cpu`), else `hostCpu`. Unknown in the first sample (CPU is a rate). */
  readonly cpu: number | undefined;
  /** The group's CPU time ÷ (wall time × effective CPUs) over the last interval, or, where larger, a limited ancestor's CPU time ÷ its quota. */
  readonly cgroupCpu: number | undefined;
  /** Busy fraction of the CPUs the process may run on, every process counted, over the last interval (reported; throttles only with `hostCpuThreshold`). */
  readonly hostCpu: number | undefined;
  /** CPUs the process can use: min(cgroup quota ÷ period, CPUs it may run on). */
  readonly effectiveCpus: number | undefined;
  /** Memory in use: `cgroupMemory` when the process is in a cgroup (see `status().source.memory`), else `hostMemory`. Page cache does not count. */
  readonly memory: number | undefined;
  /** Working set (usage − inactive file cache) ÷ min(cgroup limit, MemTotal); the largest over the group and its limited ancestors. */
  readonly cgroupMemory: number | undefined;
  /** 1 − MemAvailable ÷ MemTotal (reported; throttles only with `hostMemoryThreshold`). */
  readonly hostMemory: number | undefined;
  /** Bytes in use behind `memory` (at its fullest level). */
  readonly memoryUsedBytes: number | undefined;
  /** The limit behind `memory`, in bytes. */
  readonly memoryLimitBytes: number | undefined;
  /** Every level `memory` is measured on (the group and each limited ancestor, or the host), with its working set and limit: declared memory must fit in each. */
  readonly memoryScopes: readonly MemoryScope[] | undefined;
  /** OOM kills the cgroup has counted. */
  readonly oomKills: number | undefined;
  /** Used fraction of the filesystem holding `dataDir`. */
  readonly disk: number | undefined;
  /** Bytes in use on that filesystem. */
  readonly diskUsedBytes: number | undefined;
  /** Bytes in use plus bytes available on it. */
  readonly diskTotalBytes: number | undefined;
  /** Event-loop utilization of this process over the last interval (reported, not a throttle signal). */
  readonly eventLoop: number | undefined;
}

/** What `status()` returns. */
export interface ResourceStatus {
  /** Whether admission is limited to `minConcurrentJobs`. */
  readonly throttled: boolean;
  /** The first reason of the latest breach while throttled (`oom`, `memory`, `hostMemory`, `disk`, `cpu`, `hostCpu`, in that order); `undefined` when not throttled. */
  readonly reason: ThrottleReason | undefined;
  /** Every reason of the latest breach while throttled. */
  readonly reasons: readonly ThrottleReason[];
  /** Slots held now. */
  readonly activeJobs: number;
  /** `acquire()` calls waiting for a slot. */
  readonly pendingJobs: number;
  /** `tryAcquire()` calls refused since start. */
  readonly rejectedJobs: number;
  /** Jobs admitted at once while not throttled, now. */
  readonly maxJobs: number;
  /** Jobs admitted at once while throttled. */
  readonly minJobs: number;
  /** Bytes declared by the jobs holding slots (`memoryBytes`). */
  readonly reservedMemoryBytes: number;
  /** The most memory declared jobs may hold at once: `memoryThreshold` × the tightest known limit, in bytes; `undefined` until a limit is known. A job declaring more is refused with `JobTooLargeError`. */
  readonly memoryBudgetBytes: number | undefined;
  /** The latest sample; `undefined` before `start()`. */
  readonly metrics: ResourceMetrics | undefined;
  /** Which readers are in use; `undefined` before `start()`. */
  readonly source: SourceInfo | undefined;
}

/** Admission was throttled (`throttled`). */
export interface ThrottledEvent {
  /** The first reason (`oom`, `memory`, `hostMemory`, `disk`, `cpu`, `hostCpu`, in that order). */
  readonly reason: ThrottleReason;
  /** Every signal over its threshold, and `oom` when the OOM-kill count rose. */
  readonly reasons: readonly ThrottleReason[];
  /** Human-readable, e.g. `cpu 0.93 > 0.85`. */
  readonly message: string;
  /** The sample that breached. */
  readonly metrics: ResourceMetrics;
}

/** Admission resumed after the cooldown (`resumed`). */
export interface ResumedEvent {
  /** How long admission was throttled, in ms. */
  readonly throttledMs: number;
  /** The sample that ended the cooldown. */
  readonly metrics: ResourceMetrics;
}

/** A signal reached its warning level, `warningFactor × threshold` (`warning`). Fires once until the signal falls below the level by `resumeMargin`. */
export interface WarningEvent {
  /** Which signal. */
  readonly signal: ResourceSignal;
  /** Its value, 0–1. */
  readonly value: number;
  /** The warning level it reached. */
  readonly level: number;
  /** Its throttle threshold. */
  readonly threshold: number;
  /** The sample. */
  readonly metrics: ResourceMetrics;
}

/** Some inputs of a sample could not be read (`sample-failed`); their signals are unknown for it. */
export interface SampleFailedEvent {
  /** One error per failed read, each naming its signal (`target`) and file (`path`). */
  readonly errors: readonly ResourceReadError[];
  /** The sample, with the affected signals `undefined`. */
  readonly metrics: ResourceMetrics;
}

/** A job run with `run()` timed out (`job-timeout`): its signal was aborted. */
export interface JobTimeoutEvent {
  /** The timeout, in ms. */
  readonly timeoutMs: number;
  /** The job's priority. */
  readonly priority: number;
  /** Memory the job declared, in bytes (0 when none). */
  readonly memoryBytes: number;
  /** The error `run()` rejected with. */
  readonly error: JobTimeoutError;
}

/** Events of a {@link ResourceController}. */
export interface ResourceControllerEvents {
  /** A sample was taken (every `sampleIntervalMs`). */
  sample: [metrics: ResourceMetrics];
  /** A signal breached its threshold: admission is limited to `minConcurrentJobs`. */
  throttled: [event: ThrottledEvent];
  /** Every signal stayed calm for `cooldownMs`: admission is back to `maxJobs`. */
  resumed: [event: ResumedEvent];
  /** A signal reached its warning level. */
  warning: [event: WarningEvent];
  /** Some inputs of a sample could not be read. */
  'sample-failed': [event: SampleFailedEvent];
  /** A `run()` job timed out. */
  'job-timeout': [event: JobTimeoutEvent];
  /** A failure the host must see: an unexpected error in the sampling loop (sampling goes on), or a `close()` that gave up waiting ({@link CloseTimeoutError}). */
  error: [error: OutpostError];
}

/** The controller's emitter. @internal */
export class ResourceEmitter extends SafeEmitter<ResourceControllerEvents> {
  constructor() {
    super('resource');
  }
}

/**
 * A callback option (`onThrottled`, `onResumed`) as a listener that reports
 * its own throw as a process warning ({@link ListenerError}): the listeners
 * added after it with `on()` still run.
 */
export function isolated<A extends unknown[]>(event: string, fn: (...args: A) => void): (...args: A) => void {
  return (...args) => {
    try {
      fn(...args);
    } catch (err) {
      process.emitWarning(new ListenerError(`resource '${event}'`, err));
    }
  };
}
