/**
 * An {@link Uploader} for the pipeline's model-based test: every call is held
 * until the test answers it. A call honours its abort signal (rejects with the
 * reason and leaves) or ignores it (keeps its worker until the test answers),
 * as the test chooses per call.
 */
import type { ChunkUpload, ReportUpload, UploadCallOptions, UploadResult, Uploader } from '../../src/transport/index.js';

/** One upload waiting for the test to answer it. */
export interface HeldCall {
  readonly reportId: string;
  /** The attempt's signal (the pipeline aborts it on a timeout, a caller's abort or stop). */
  readonly signal: AbortSignal;
  /** Whether this call ignores its signal. */
  readonly ignoresAbort: boolean;
  /** Answers with a 2xx. */
  succeed(result: UploadResult): void;
  /** Answers with an error. */
  fail(err: Error): void;
}

/** Holds every unsettled call in {@link calls}, oldest first. */
export class HeldUploader implements Uploader {
  readonly calls: HeldCall[] = [];
  /** Most calls unsettled at once. */
  maxInFlight = 0;
  /** Called when a call arrives, before it is held (the test checks it there). */
  onCall: (call: HeldCall) => void = () => undefined;
  #n = 0;

  /** @param ignoresAbort - decides, per call (numbered from 0), whether it ignores its signal */
  constructor(readonly ignoresAbort: (n: number) => boolean) {}

  uploadChunk(_chunk: ChunkUpload): Promise<UploadResult> {
    return Promise.reject(new Error('the pipeline uploads whole reports, never chunks'));
  }

  uploadReport(report: ReportUpload, options?: UploadCallOptions): Promise<UploadResult> {
    const signal = options?.signal;
    if (signal === undefined) return Promise.reject(new Error('the pipeline gives every attempt a signal'));
    const ignoresAbort = this.ignoresAbort(this.#n++);
    return new Promise<UploadResult>((resolve, reject) => {
      const leave = (): void => {
        const at = this.calls.indexOf(call);
        if (at >= 0) this.calls.splice(at, 1);
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        leave();
        reject(signal.reason);
      };
      const call: HeldCall = {
        reportId: report.reportId,
        signal,
        ignoresAbort,
        succeed: (result) => {
          leave();
          resolve(result);
        },
        fail: (err) => {
          leave();
          reject(err);
        },
      };
      this.onCall(call);
      if (!ignoresAbort) {
        if (signal.aborted) {
          reject(signal.reason);
          return;
        }
        signal.addEventListener('abort', onAbort, { once: true });
      }
      this.calls.push(call);
      this.maxInFlight = Math.max(this.maxInFlight, this.calls.length);
    });
  }
}
