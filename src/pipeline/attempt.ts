/**
 * One upload attempt: the request gets an `AbortSignal` that fires at the
 * attempt's deadline (or when the caller, or `stop()`, aborts it), so the
 * request itself ends, not just the wait for it.
 * @internal
 */
import { UploadTimeoutError } from '../errors.js';
import type { ReportUpload, UploadResult, Uploader } from '../transport/index.js';

/** An attempt under way. */
export interface Attempt {
  /** The attempt's result, or its failure: rejects as soon as the signal aborts, whatever the uploader does. */
  readonly outcome: Promise<UploadResult>;
  /** Settles when the uploader's own promise does: until then the request may still hold a connection. */
  readonly settled: Promise<void>;
}

const noop = (): void => undefined;

/**
 * Starts `upload` on `uploader` with a deadline of `timeoutMs`, aborted by
 * `controller` (made by the caller, so an abort during the uploader's own
 * synchronous part is not lost).
 */
export function startAttempt(controller: AbortController, uploader: () => Uploader, upload: ReportUpload, timeoutMs: number): Attempt {
  const signal = controller.signal;
  const timer = setTimeout(() => controller.abort(new UploadTimeoutError(timeoutMs)), timeoutMs);
  let call: Promise<UploadResult>;
  try {
    // A custom uploader may return a non-promise or a bare thenable: make it a real promise.
    call = Promise.resolve(uploader().uploadReport(upload, { signal }));
  } catch (err) {
    call = Promise.reject(err);
  }
  const outcome = new Promise<UploadResult>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    call.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
  const settled = call.then(noop, noop).finally(() => clearTimeout(timer));
  // The deadline is over once the outcome is known, even if the uploader has not settled.
  outcome.then(
    () => clearTimeout(timer),
    () => clearTimeout(timer),
  );
  return { outcome, settled };
}
