/**
 * An {@link Uploader} for the model-based test: every call is held until the
 * test settles it, so a command decides exactly which upload succeeds or fails.
 */
import type { BodyEncoding, ChunkUpload, ReportUpload, UploadCallOptions, UploadResult, Uploader } from '../../src/transport/index.js';

/** One upload waiting for the test to answer it. */
export interface HeldCall {
  readonly tenantId: string;
  readonly kind: 'chunk' | 'report';
  readonly reportId: string;
  readonly index: number;
  readonly total: number;
  readonly sha256: string;
  readonly encoding: BodyEncoding;
  /** A copy of the body as sent. */
  readonly body: Buffer;
  /** Answers the call with a 2xx. */
  succeed(result: UploadResult): void;
  /** Answers the call with an error (an `UploadError` in these tests). */
  fail(err: Error): void;
}

/** Holds every call in {@link calls}, in call order; an aborted call leaves the list and rejects with the signal's reason. */
export class HeldUploader {
  readonly calls: HeldCall[] = [];
  /** Calls aborted by their signal (a closing manager). */
  aborted = 0;
  readonly #byTenant = new Map<string, Uploader>();

  /** The uploader of `tenantId` (the manager's `uploader` function). */
  for(tenantId: string): Uploader {
    let uploader = this.#byTenant.get(tenantId);
    if (uploader === undefined) {
      uploader = {
        uploadChunk: (chunk: ChunkUpload, options?: UploadCallOptions) => this.#hold(tenantId, 'chunk', chunk, chunk.index, chunk.total, options?.signal),
        uploadReport: (report: ReportUpload, options?: UploadCallOptions) => this.#hold(tenantId, 'report', report, 0, 1, options?.signal),
      };
      this.#byTenant.set(tenantId, uploader);
    }
    return uploader;
  }

  #hold(tenantId: string, kind: 'chunk' | 'report', upload: ReportUpload, index: number, total: number, signal: AbortSignal | undefined): Promise<UploadResult> {
    return new Promise<UploadResult>((resolve, reject) => {
      if (signal?.aborted) {
        this.aborted++;
        reject(signal.reason);
        return;
      }
      const leave = (): void => {
        const at = this.calls.indexOf(call);
        if (at >= 0) this.calls.splice(at, 1);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        leave();
        this.aborted++;
        reject(signal?.reason);
      };
      const call: HeldCall = {
        tenantId,
        kind,
        reportId: upload.reportId,
        index,
        total,
        sha256: upload.sha256,
        encoding: upload.encoding,
        body: Buffer.from(upload.body),
        succeed: (result) => {
          leave();
          resolve(result);
        },
        fail: (err) => {
          leave();
          reject(err);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.calls.push(call);
    });
  }
}
