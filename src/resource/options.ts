/**
 * Options of the {@link ResourceController}: declared, defaulted and validated here, once.
 */
import { InvalidOptionError, type CloseTimeoutError } from '../errors.js';
import * as v from '../internal/validate.js';
import type { ResumedEvent, ThrottledEvent } from './events.js';
import type { ResourceSource } from './reading.js';

/**
 * Options of {@link ResourceController}. Thresholds are fractions from 0 to 1
 * (0.85, never 85). A threshold of 1 turns its signal off (nothing is over 100 %).
 */
export interface ResourceControllerOptions {
  /** Throttle when CPU use is over this fraction of the CPUs the process may use: its cgroup's usage against min(quota, CPUs it may run on), or, outside a cgroup, the host's busy time on those CPUs. @default 0.85 */
  readonly cpuThreshold?: number;
  /** Throttle when memory use (working set, page cache excluded) is over this fraction of min(cgroup limit, MemTotal) — at the group or any ancestor with a limit — or, outside a cgroup, the host's. Jobs that declare `memoryBytes` must fit under it. @default 0.85 */
  readonly memoryThreshold?: number;
  /** Opt-in: also throttle when the host's CPUs this process may run on are busier than this fraction, every process counted (a guest that yields to its neighbours). @default 1 (off) */
  readonly hostCpuThreshold?: number;
  /** Opt-in: also throttle when the host's memory (1 − MemAvailable ÷ MemTotal) is over this fraction, whatever the cgroup's own use. @default 1 (off) */
  readonly hostMemoryThreshold?: number;
  /** Throttle when the filesystem holding `dataDir` is fuller than this fraction. Needs `dataDir`. @default 0.9 */
  readonly diskThreshold?: number;
  /** A `warning` event fires when a signal reaches `warningFactor × threshold`. @default 0.8 */
  readonly warningFactor?: number;
  /** Jobs admitted at once while not throttled (the ceiling that `autoAdapt` moves under). @default the effective CPUs, known after `start()`: min(cgroup CPU quota, CPUs the process may run on), rounded down, at least 1 */
  readonly maxConcurrentJobs?: number;
  /** Jobs always admitted, throttled or not (0: nothing runs while throttled). @default 1 */
  readonly minConcurrentJobs?: number;
  /** After a breach, every signal must stay at or below `threshold − resumeMargin` this long before admission resumes, in ms. @default 30000 (30 s) */
  readonly cooldownMs?: number;
  /** How far below its threshold a signal must fall to count as calm, as a fraction (0.10: 0.85 → 0.75). @default 0.1 */
  readonly resumeMargin?: number;
  /** Time between samples, in ms. Sampling runs on an unref'd timer. @default 5000 (5 s) */
  readonly sampleIntervalMs?: number;
  /** Samples kept for `history()`. @default 120 (10 minutes at the default interval) */
  readonly historySize?: number;
  /** Apply `adaptiveMaxJobs()` after every sample (between `minConcurrentJobs` and the `maxConcurrentJobs` ceiling). @default false */
  readonly autoAdapt?: boolean;
  /** A directory on the filesystem to watch for `diskThreshold` (typically where the outbox lives). @default none: no disk signal */
  readonly dataDir?: string;
  /** Where cgroup hierarchies are mounted; point it at a fake tree in tests. @default '/sys/fs/cgroup' */
  readonly cgroupRoot?: string;
  /** Where procfs is mounted; point it at a fake tree in tests. @default '/proc' */
  readonly procRoot?: string;
  /** How long `close()` waits, in all, for a sample in flight and for `run()` jobs to settle after they were aborted; then it resolves and reports what it left behind as an `error` event ({@link CloseTimeoutError}). In ms; 0 waits for nothing. @default 10000 (10 s) */
  readonly closeTimeoutMs?: number;
  /** Readings from elsewhere instead of the built-in {@link SystemSource} (then `cgroupRoot`, `procRoot` and `dataDir` do not apply). */
  readonly source?: ResourceSource;
  /** Sugar for `on('throttled', ...)`. */
  readonly onThrottled?: (event: ThrottledEvent) => void;
  /** Sugar for `on('resumed', ...)`. */
  readonly onResumed?: (event: ResumedEvent) => void;
}

/** Defaults of {@link ResourceControllerOptions}. */
export const resourceControllerDefaults = Object.freeze({
  /** CPU fraction that throttles. */
  cpuThreshold: 0.85,
  /** Memory fraction that throttles. */
  memoryThreshold: 0.85,
  /** Disk fraction that throttles. */
  diskThreshold: 0.9,
  /** Host CPU fraction that throttles (1: off). */
  hostCpuThreshold: 1,
  /** Host memory fraction that throttles (1: off). */
  hostMemoryThreshold: 1,
  /** Warning level, as a fraction of each threshold. */
  warningFactor: 0.8,
  /** Jobs always admitted. */
  minConcurrentJobs: 1,
  /** Calm time before resuming, in ms. */
  cooldownMs: 30_000,
  /** Distance below the threshold that counts as calm. */
  resumeMargin: 0.1,
  /** Sampling period, in ms. */
  sampleIntervalMs: 5_000,
  /** Samples kept. */
  historySize: 120,
  /** Resize from load after every sample. */
  autoAdapt: false,
  /** Longest wait of `close()`, in ms. */
  closeTimeoutMs: 10_000,
  /** cgroup mount point. */
  cgroupRoot: '/sys/fs/cgroup',
  /** procfs mount point. */
  procRoot: '/proc',
});

/** Validated options with every default filled in; `maxConcurrentJobs` is `undefined` until the effective CPUs are known. */
export interface ResolvedResourceControllerOptions
  extends Required<Omit<ResourceControllerOptions, 'maxConcurrentJobs' | 'dataDir' | 'source' | 'onThrottled' | 'onResumed'>> {
  /** The configured ceiling, or `undefined` to use the effective CPUs. */
  readonly maxConcurrentJobs: number | undefined;
  /** The watched directory, if any. */
  readonly dataDir: string | undefined;
  /** A custom source, if one was given. */
  readonly source: ResourceSource | undefined;
  /** Throttle callback, if given. */
  readonly onThrottled: ((event: ThrottledEvent) => void) | undefined;
  /** Resume callback, if given. */
  readonly onResumed: ((event: ResumedEvent) => void) | undefined;
}

/** Most jobs a controller admits at once. */
export const MAX_JOBS_LIMIT = 100_000;

const KEYS = [...Object.keys(resourceControllerDefaults), 'maxConcurrentJobs', 'dataDir', 'source', 'onThrottled', 'onResumed'];

/** Thresholds that throttle, each with its option name. */
const SIGNAL_THRESHOLDS = ['cpuThreshold', 'memoryThreshold', 'diskThreshold', 'hostCpuThreshold', 'hostMemoryThreshold'] as const;

/**
 * A fraction from 0 to 1. A value that reads as a percentage (over 1, at most
 * 100, and a whole number or at least 2: 85, 90, 2.5 — not 1.5) gets a hint.
 */
function fraction(name: string, value: unknown): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0 || value > 1) {
    const percentage = typeof value === 'number' && value > 1 && value <= 100 && (value >= 2 || Number.isInteger(value));
    v.fail(name, 'a fraction from 0 to 1', value, percentage ? `Fractions are 0–1: did you mean ${value / 100}?` : '');
  }
  return value;
}

function threshold(name: string, value: unknown): number {
  fraction(name, value);
  if (value === 0) v.fail(name, 'a fraction above 0 and at most 1', value);
  return value as number;
}

/**
 * Merges `options` over {@link resourceControllerDefaults} and validates every field.
 * @throws {@link InvalidOptionError} naming the field (both, for cross-field errors), what was expected and what came
 */
export function resolveResourceControllerOptions(options: ResourceControllerOptions = {}): ResolvedResourceControllerOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('ResourceController options must be an object');
  v.knownKeys('ResourceController', options, KEYS);
  const defined = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as ResourceControllerOptions;
  const o = { ...resourceControllerDefaults, ...defined };

  for (const name of SIGNAL_THRESHOLDS) threshold(name, o[name]);
  threshold('warningFactor', o.warningFactor);
  fraction('resumeMargin', o.resumeMargin);
  for (const name of SIGNAL_THRESHOLDS) {
    if (o[name] < 1 && o.resumeMargin >= o[name]) {
      throw new InvalidOptionError(`Expected \`resumeMargin\` (${o.resumeMargin}) to be below \`${name}\` (${o[name]}): a signal must be able to fall to threshold − margin to resume`);
    }
  }
  const max = o.maxConcurrentJobs === undefined ? undefined : v.integer('maxConcurrentJobs', o.maxConcurrentJobs, 1, MAX_JOBS_LIMIT);
  v.integer('minConcurrentJobs', o.minConcurrentJobs, 0, MAX_JOBS_LIMIT);
  if (max !== undefined && o.minConcurrentJobs > max) {
    throw new InvalidOptionError(`Expected \`minConcurrentJobs\` (${o.minConcurrentJobs}) to be at most \`maxConcurrentJobs\` (${max})`);
  }
  v.timerMs('cooldownMs', o.cooldownMs, 0);
  v.timerMs('sampleIntervalMs', o.sampleIntervalMs, 10);
  v.integer('historySize', o.historySize, 1, 1_000_000);
  v.boolean('autoAdapt', o.autoAdapt);
  v.timerMs('closeTimeoutMs', o.closeTimeoutMs, 0);
  v.nonEmptyString('cgroupRoot', o.cgroupRoot);
  v.nonEmptyString('procRoot', o.procRoot);
  if (o.dataDir !== undefined) v.nonEmptyString('dataDir', o.dataDir);
  if (o.source !== undefined) {
    const s = o.source as unknown;
    if (typeof s !== 'object' || s === null || typeof (s as ResourceSource).read !== 'function') v.fail('source', 'a ResourceSource (an object with read())', s);
    for (const name of ['cgroupRoot', 'procRoot', 'dataDir'] as const) {
      if (defined[name] !== undefined) throw new InvalidOptionError(`\`source\` replaces the built-in readers: \`${name}\` cannot be combined with it`);
    }
  }
  if (o.onThrottled !== undefined) v.fn('onThrottled', o.onThrottled);
  if (o.onResumed !== undefined) v.fn('onResumed', o.onResumed);
  return Object.freeze({
    ...o,
    maxConcurrentJobs: max,
    dataDir: o.dataDir,
    source: o.source,
    onThrottled: o.onThrottled,
    onResumed: o.onResumed,
  });
}
