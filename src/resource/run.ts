/**
 * Enforced job timeouts: runs a job in a slot it already holds, aborts the
 * job's signal at its deadline (or when the caller or `close()` aborts), and
 * gives the slot back only when the job really ends.
 */
import { JobTimeoutError } from '../errors.js';
import type { Slot } from './admission.js';

/** A job in flight, as the controller's `close()` sees it. */
export interface RunningJob {
  /** Aborts the job's signal with `reason`; `run()` rejects with it at once. */
  abort(reason: unknown): void;
  /** Settles when the job's function itself has settled (and its slot was released). */
  readonly settled: Promise<void>;
}

/** How {@link runInSlot} runs a job. */
export interface RunInSlot {
  /** The caller's signal, if any: aborting it aborts the job. */
  readonly signal: AbortSignal | undefined;
  /** Deadline after the job starts, in ms; none when undefined. */
  readonly timeoutMs: number | undefined;
  /** Called once when the deadline passes, before the job's signal is aborted. */
  readonly onTimeout: (error: JobTimeoutError) => void;
  /**
   * Jobs in flight: the job is added while it runs, for `close()` to abort and wait on
   * (a set rather than a listener per job on a shared signal: no listener-count warning).
   */
  readonly jobs: Set<RunningJob>;
}

/**
 * Runs `fn(signal)` holding `slot`. Settles with `fn`'s outcome, or rejects
 * at once with the abort reason ({@link JobTimeoutError} at the deadline);
 * either way the slot is released when `fn` itself settles: a job that
 * ignores its signal still uses the host.
 */
export function runInSlot<T>(slot: Slot, fn: (signal: AbortSignal) => T | PromiseLike<T>, options: RunInSlot): Promise<Awaited<T>> {
  const job = new AbortController();
  const caller = options.signal;
  let onCallerAbort: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  let settled = false;
  return new Promise<Awaited<T>>((resolve, reject) => {
    const settle = (ok: boolean, value: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (onCallerAbort !== undefined) caller?.removeEventListener('abort', onCallerAbort);
      if (ok) resolve(value as Awaited<T>);
      else reject(value);
    };
    const abort = (reason: unknown): void => {
      job.abort(reason);
      settle(false, reason);
    };
    if (caller?.aborted === true) abort(caller.reason);
    else if (caller !== undefined) {
      onCallerAbort = () => abort(caller.reason);
      caller.addEventListener('abort', onCallerAbort, { once: true });
    }
    const timeoutMs = options.timeoutMs;
    if (timeoutMs !== undefined && !settled) {
      timer = setTimeout(() => {
        const error = new JobTimeoutError(timeoutMs);
        options.onTimeout(error);
        abort(error);
      }, timeoutMs);
      timer.unref();
    }
    let running: Promise<Awaited<T>>;
    try {
      running = job.signal.aborted ? Promise.reject(job.signal.reason) : Promise.resolve(fn(job.signal));
    } catch (err) {
      running = Promise.reject(err);
    }
    const done = running
      .then(
        (value) => settle(true, value),
        (err: unknown) => settle(false, err),
      )
      .finally(() => {
        slot.release();
        options.jobs.delete(entry);
      });
    const entry: RunningJob = { abort, settled: done };
    options.jobs.add(entry);
  });
}
