/**
 * One HTTP exchange on undici's dispatch API: a request whose small response
 * is collected into a Buffer, aborted for real at its deadline or when the
 * caller's signal fires. It skips what `request()` builds per call and this
 * uploader never needs (a Readable for the response body, an AbortSignal of
 * our own), which is most of the client-side cost of an upload.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';

/** A complete response. */
export interface Exchange {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The body, or `undefined` when it was longer than `maxResponseBytes` (and the socket was dropped). */
  readonly body: Buffer | undefined;
}

/** Limits and cancellation of one exchange. */
export interface ExchangeOptions {
  /** The whole exchange must finish within this, in milliseconds, or it is aborted with `timeoutError()`. */
  readonly timeoutMs: number;
  readonly timeoutError: () => Error;
  readonly signal: AbortSignal | undefined;
  readonly maxResponseBytes: number;
}

class TooLong extends Error {}

/**
 * Sends `request` through `dispatcher`. Rejects with `timeoutError()` at the
 * deadline, with `signal.reason` on abort, and with undici's error otherwise;
 * in each case the request itself is aborted, not abandoned.
 */
export function exchange(dispatcher: Dispatcher, request: Dispatcher.DispatchOptions, options: ExchangeOptions): Promise<Exchange> {
  return new Promise<Exchange>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(options.signal.reason);
      return;
    }
    let controller: Dispatcher.DispatchController | undefined;
    let settled = false;
    let abortReason: Error | undefined;
    let status = 0;
    let headers: IncomingHttpHeaders = {};
    const parts: Buffer[] = [];
    let size = 0;
    let tooLong = false;

    const finish = (error: unknown, value?: Exchange): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (value !== undefined) resolve(value);
      else reject(error);
    };
    const abort = (reason: Error): void => {
      abortReason ??= reason;
      controller?.abort(reason); // before the request starts, onRequestStart aborts it
      finish(reason);
    };
    const onAbort = (): void => abort(options.signal?.reason as Error);
    const timer = setTimeout(() => abort(options.timeoutError()), options.timeoutMs);

    if (options.signal !== undefined) options.signal.addEventListener('abort', onAbort, { once: true });

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (abortReason !== undefined) c.abort(abortReason);
      },
      onResponseStart(_c, statusCode, responseHeaders) {
        status = statusCode;
        headers = responseHeaders;
      },
      onResponseData(c, chunk) {
        if (tooLong) return;
        size += chunk.length;
        if (size > options.maxResponseBytes) {
          tooLong = true;
          parts.length = 0;
          c.abort(new TooLong());
          return;
        }
        parts.push(chunk);
      },
      onResponseEnd() {
        finish(undefined, { status, headers, body: parts.length === 1 ? parts[0] : Buffer.concat(parts, size) });
      },
      onResponseError(_c, error) {
        if (error instanceof TooLong) finish(undefined, { status, headers, body: undefined });
        else finish(abortReason ?? error);
      },
    };
    try {
      dispatcher.dispatch(request, handler);
    } catch (err) {
      finish(err);
    }
  });
}
