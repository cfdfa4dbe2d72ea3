/**
 * Per-call options of `tryAcquire()`, `acquire()` and `run()`, and their
 * validation (a few type checks: these calls are on the hot path).
 */
import { InvalidArgumentError } from '../errors.js';
import { MAX_TIMER_MS } from '../internal/validate.js';

/** Options of {@link ResourceController.tryAcquire}. */
export interface TryAcquireOptions {
  /** Priority recorded on the slot (an integer; higher is served first by `acquire()`). @default 0 */
  readonly priority?: number | undefined;
  /**
   * Memory the job will use, in bytes: it is admitted only if the projected memory stays under
   * `memoryThreshold` at every level that limits the process; more than `memoryThreshold` × the
   * tightest limit is refused with `JobTooLargeError`. @default 0 (not checked)
   */
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

/** A value as error messages show it: `"3" (string)`, `1.5 (number)`. */
export function describeValue(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : `${String(value)} (${typeof value})`;
}

/** The priority of a call; 0 when not given. @throws {@link InvalidArgumentError} */
export function priorityOf(options: TryAcquireOptions): number {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`Expected the options to be an object, got ${describeValue(options)}`);
  const p = options.priority;
  if (p === undefined) return 0;
  if (typeof p !== 'number' || !Number.isSafeInteger(p)) throw new InvalidArgumentError(`Expected \`priority\` to be an integer, got ${describeValue(p)}`);
  return p;
}

/** The declared memory of a call; 0 when not given. @throws {@link InvalidArgumentError} */
export function memoryOf(options: TryAcquireOptions): number {
  const m = options.memoryBytes;
  if (m === undefined) return 0;
  if (typeof m !== 'number' || !Number.isSafeInteger(m) || m < 0) throw new InvalidArgumentError(`Expected \`memoryBytes\` to be a non-negative integer, got ${describeValue(m)}`);
  return m;
}

/** The timeout of a `run()` call. @throws {@link InvalidArgumentError} */
export function timeoutOf(timeoutMs: unknown): number | undefined {
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMER_MS)) {
    throw new InvalidArgumentError(`Expected \`timeoutMs\` to be an integer from 1 to ${MAX_TIMER_MS}, got ${describeValue(timeoutMs)}`);
  }
  return timeoutMs;
}
