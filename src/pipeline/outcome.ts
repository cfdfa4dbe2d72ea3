/**
 * What follows a failed upload attempt: a retry, the outbox, or giving up.
 * One decision, in one place, on the shared {@link RetryPolicy}.
 * @internal
 */
import { PipelineStoppedError, UploadError, UploadHttpError } from '../errors.js';
import { asRetryableNetworkError, type RetryPolicy } from '../transport/index.js';
import type { FailReason, SpillReason } from './events.js';

/** The next step of an item whose attempt failed. */
export type NextStep =
  | { readonly kind: 'retry'; readonly error: UploadError; readonly delayMs: number }
  | { readonly kind: 'spill'; readonly reason: SpillReason }
  | { readonly kind: 'fail'; readonly reason: FailReason; readonly error: Error };

/** What the decision needs to know besides the error. */
export interface FailureContext {
  readonly policy: RetryPolicy;
  /** Attempts made so far (the failed one included). */
  readonly attempts: number;
  readonly retryAttempts: number;
  readonly hasOutbox: boolean;
  /** The pipeline is stopping: no new attempt will start. */
  readonly stopping: boolean;
  /** The caller's signal aborted. */
  readonly callerAborted: boolean;
}

/** Gives up with `reason`, or hands to the outbox when there is one and `reason` allows it. */
function spillOrFail(reason: SpillReason & FailReason, error: Error, hasOutbox: boolean): NextStep {
  return hasOutbox ? { kind: 'spill', reason } : { kind: 'fail', reason, error };
}

/** Wraps a thrown value that is not an `Error`. */
export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/**
 * Decides what follows a failed attempt:
 * - the caller aborted → `failed` (`'aborted'`);
 * - the pipeline stopped (the attempt was aborted by stop, or the failure is
 *   retryable while stopping) → outbox or `failed` (`'stopped'`);
 * - retryable with retries left → retry after the policy's delay (`Retry-After` honoured);
 * - retryable without → outbox or `failed` (`'retries-exhausted'`);
 * - 401/403 → outbox or `failed` (`'unauthorized'`);
 * - an error that is not an upload failure → outbox (`'uploader-error'`) or `failed` (`'rejected'`);
 * - anything else → `failed` (`'rejected'`).
 */
export function nextStep(thrown: unknown, ctx: FailureContext): NextStep {
  const error = asError(thrown);
  if (ctx.callerAborted) return { kind: 'fail', reason: 'aborted', error };
  if (error instanceof PipelineStoppedError) return spillOrFail('stopped', error, ctx.hasOutbox);
  const retryable = error instanceof UploadError ? (error.retryable ? error : undefined) : asRetryableNetworkError(error);
  if (retryable !== undefined && ctx.policy.isRetryable(retryable)) {
    if (ctx.stopping) return spillOrFail('stopped', error, ctx.hasOutbox);
    if (ctx.attempts <= ctx.retryAttempts) return { kind: 'retry', error: retryable, delayMs: ctx.policy.delayMs(ctx.attempts, retryable) };
    return spillOrFail('retries-exhausted', retryable, ctx.hasOutbox);
  }
  if (error instanceof UploadHttpError && (error.status === 401 || error.status === 403)) return spillOrFail('unauthorized', error, ctx.hasOutbox);
  // Not an upload failure: the uploader itself failed (closed, a token source that threw, a bug). The
  // server never judged the report, so the outbox, which keeps retrying, is the safe place for it.
  if (!(error instanceof UploadError) && ctx.hasOutbox) return { kind: 'spill', reason: 'uploader-error' };
  return { kind: 'fail', reason: 'rejected', error };
}
