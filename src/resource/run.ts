/**
 * Enforced job timeouts: runs a job in a slot it already holds, aborts the
 * job's signal at its deadline (or when the caller or `close()` aborts), and
 * gives the slot back only when the job really ends.
 */
import { JobTimeoutError } from '../errors.js';
import type { Slot } from './admission.js';

/** How {@link runInSlot} runs a job. */
export interface RunInSlot {
  /** Signals that abort the job: the caller's, the controller's close. */
  readonly signals: readonly AbortSignal[];
  /** Deadline after the job starts, in ms; none when undefined. */
  readonly timeoutMs: number | undefined;
  /** Called once when the deadline passes, before the job's signal is aborted. */
  readonly onTimeout: (error: JobTimeoutError) => void;
  /** Jobs in flight: the job's settlement is added while it runs (for `close()` to wait on). */
  readonly track: Set<Promise<unknown>>;
}

/**
 * Runs `fn(signal)` holding `slot`. Settles with `fn`'s outcome, or rejects
 * at once with the abort reason ({@link JobTimeoutError} at the deadline);
 * either way the slot is released when `fn` itself settles: a job that
 * ignores its signal still uses the host.
 */
export function runInSlot<T>(slot: Slot, fn: (signal: AbortSignal) => T | PromiseLike<T>, options: RunInSlot): Promise<Awaited<T>> {
  const job = new AbortController();
  const listeners: [AbortSignal, () => void][] = [];
  let timer: NodeJS.Timeout | undefined;
  let settled = false;
  return new Promise<Awaited<T>>((resolve, reject) => {
    const settle = (ok: boolean, value: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const [s, l] of listeners) s.removeEventListener('abort', l);
      if (ok) resolve(value as Awaited<T>);
      else reject(value);
    };
    const abort = (reason: unknown): void => {
      job.abort(reason);
      settle(false, reason);
    };
    for (const s of options.signals) {
      if (s.aborted) {
        abort(s.reason);
        break;
      }
      const l = (): void => abort(s.reason);
      s.addEventListener('abort', l, { once: true });
      listeners.push([s, l]);
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
    const tracked = running.then(
      (value) => settle(true, value),
      (err: unknown) => settle(false, err),
    );
    options.track.add(tracked);
    void tracked.finally(() => {
      slot.release();
      options.track.delete(tracked);
    });
  });
}
