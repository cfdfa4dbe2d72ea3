/**
 * The one retry policy of the library: exponential backoff with full jitter,
 * capped, and `Retry-After` honoured (capped too).
 */
import { UploadError } from '../errors.js';
import { sleep } from '../internal/abort.js';
import * as v from '../internal/validate.js';
import { asRetryableNetworkError } from './classify.js';

/** Options of {@link RetryPolicy}. */
export interface RetryPolicyOptions {
  /** Ceiling of the first retry's delay; each later retry doubles it (× `backoffFactor`). @default 5000 (5 s) */
  readonly retryDelayMs?: number;
  /** Growth of the delay ceiling per retry. @default 2 */
  readonly backoffFactor?: number;
  /** Cap on the backoff delay ceiling. @default 300000 (5 min) */
  readonly maxRetryDelayMs?: number;
  /** Cap on a server's `Retry-After`; a server asking for longer is waited on for this long. @default 600000 (10 min) */
  readonly maxRetryAfterMs?: number;
  /**
   * `'full'`: the delay is uniform in [0, ceiling) (AWS "full jitter"), so a fleet
   * of agents does not retry in lock-step. `'none'`: exactly the ceiling.
   * @default 'full'
   */
  readonly jitter?: 'full' | 'none';
  /** Source of randomness in [0, 1), for tests. @default Math.random */
  readonly random?: () => number;
}

/** Defaults of {@link RetryPolicyOptions}. */
export const retryPolicyDefaults = Object.freeze({
  /** 5 s. */
  retryDelayMs: 5_000,
  /** Doubles the ceiling per retry. */
  backoffFactor: 2,
  /** 5 min. */
  maxRetryDelayMs: 300_000,
  /** 10 min. */
  maxRetryAfterMs: 600_000,
  /** Full jitter. */
  jitter: 'full',
  /** `Math.random`. */
  random: Math.random,
} as const satisfies Required<RetryPolicyOptions>);

const KEYS = Object.keys(retryPolicyDefaults);

/** Validated options with every default filled in. */
export type ResolvedRetryPolicyOptions = { readonly [K in keyof RetryPolicyOptions]-?: Exclude<RetryPolicyOptions[K], undefined> };

/** Merges `options` over {@link retryPolicyDefaults} and validates the result. */
export function resolveRetryPolicyOptions(options: RetryPolicyOptions = {}): ResolvedRetryPolicyOptions {
  v.knownKeys('RetryPolicy', options, KEYS);
  const o = { ...retryPolicyDefaults, ...stripUndefined(options) };
  v.timerMs('retryDelayMs', o.retryDelayMs, 0);
  v.number('backoffFactor', o.backoffFactor, 1, 100);
  v.timerMs('maxRetryDelayMs', o.maxRetryDelayMs, 0);
  v.timerMs('maxRetryAfterMs', o.maxRetryAfterMs, 0);
  if (o.jitter !== 'full' && o.jitter !== 'none') v.fail('jitter', "'full' or 'none'", o.jitter);
  v.fn('random', o.random);
  if (o.maxRetryDelayMs < o.retryDelayMs) {
    v.fail('maxRetryDelayMs', `>= \`retryDelayMs\` (${o.retryDelayMs})`, o.maxRetryDelayMs);
  }
  return Object.freeze(o);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/** Options of {@link RetryPolicy.retry}. */
export interface RetryOptions {
  /** Retries after the first attempt (so `maxRetries + 1` attempts at most). @default 3 */
  readonly maxRetries?: number;
  /** Aborts the wait and the loop; the promise rejects with `signal.reason`. */
  readonly signal?: AbortSignal | undefined;
  /** Called before each wait with the failure, the retry number (1-based) and the delay chosen. */
  readonly onRetry?: (error: UploadError, retry: number, delayMs: number) => void;
}

/**
 * The shared retry policy. The chunk outbox and the pipeline both ask it two
 * questions: *is this failure worth retrying?* and *how long should I wait?*;
 * {@link RetryPolicy.retry} answers both in a loop for simple callers.
 *
 * @example
 * ```ts
 * const policy = new RetryPolicy({ retryDelayMs: 1_000, maxRetryDelayMs: 60_000 });
 * const result = await policy.retry((signal) => uploader.uploadReport(report, { signal }), { maxRetries: 5 });
 * ```
 */
export class RetryPolicy {
  /** The resolved options. */
  readonly options: ResolvedRetryPolicyOptions;

  /** @throws {@link InvalidOptionError} when an option is out of range */
  constructor(options: RetryPolicyOptions = {}) {
    this.options = resolveRetryPolicyOptions(options);
  }

  /**
   * Whether `error` is worth retrying: an {@link UploadError} marked
   * `retryable`, or a raw error carrying a transient network code
   * ({@link RETRYABLE_NETWORK_CODES}). Anything else is not.
   */
  isRetryable(error: unknown): boolean {
    return error instanceof UploadError ? error.retryable : asRetryableNetworkError(error) !== undefined;
  }

  /**
   * The backoff ceiling before retry number `retry` (1-based), without jitter:
   * `min(maxRetryDelayMs, retryDelayMs × backoffFactor^(retry-1))`.
   */
  backoffCeilingMs(retry: number): number {
    const { retryDelayMs, backoffFactor, maxRetryDelayMs } = this.options;
    const exponent = Math.max(0, Math.floor(retry) - 1);
    return Math.min(maxRetryDelayMs, retryDelayMs * backoffFactor ** exponent);
  }

  /**
   * How long to wait before retry number `retry` (1-based) after `error`. A
   * server's `Retry-After` replaces the backoff (capped by `maxRetryAfterMs`);
   * otherwise the capped exponential ceiling with full jitter.
   */
  delayMs(retry: number, error?: unknown): number {
    const retryAfterMs = error instanceof UploadError ? error.retryAfterMs : undefined;
    if (retryAfterMs !== undefined) return Math.min(Math.max(0, retryAfterMs), this.options.maxRetryAfterMs);
    const ceiling = this.backoffCeilingMs(retry);
    return this.options.jitter === 'full' ? Math.floor(this.options.random() * ceiling) : ceiling;
  }

  /**
   * Runs `attempt` until it succeeds, fails permanently, or `maxRetries`
   * retries are used; waits {@link RetryPolicy.delayMs} between attempts.
   *
   * @throws the last {@link UploadError} (permanent, or retryable with retries exhausted);
   * any other error `attempt` throws, unchanged and at once; `signal.reason` when aborted
   */
  async retry<T>(attempt: (signal: AbortSignal | undefined) => Promise<T>, options: RetryOptions = {}): Promise<T> {
    const maxRetries = v.integer('maxRetries', options.maxRetries ?? 3, 0);
    for (let retry = 0; ; retry++) {
      options.signal?.throwIfAborted();
      try {
        return await attempt(options.signal);
      } catch (err) {
        if (options.signal?.aborted) throw options.signal.reason;
        const error = err instanceof UploadError ? err : asRetryableNetworkError(err);
        if (error === undefined) throw err;
        if (!error.retryable || retry >= maxRetries) throw error;
        const delay = this.delayMs(retry + 1, error);
        options.onRetry?.(error, retry + 1, delay);
        await sleep(delay, options.signal);
      }
    }
  }
}
