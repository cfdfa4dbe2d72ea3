/**
 * Reads a request body with a byte limit and a time limit.
 */
import type { IncomingMessage } from 'node:http';
import { IngestError } from '../errors.js';

/**
 * Collects `req`'s body. Rejects with 413 as soon as more than `maxBytes`
 * arrive (whatever `Content-Length` said), with 408 when it takes longer
 * than `timeoutMs`, and with 400 when the client aborts. On rejection the
 * request is left paused; the caller closes the connection.
 */
export function readBody(req: IncomingMessage, maxBytes: number, timeoutMs: number): Promise<Buffer> {
  // A client gone while we authenticated, or a body parser mounted before us, leaves nothing to wait for.
  // (Node drops the buffered body of a destroyed request and emits nothing more, even when it had arrived in full.)
  if (req.destroyed) return Promise.reject(new IngestError('OUTPOST_INGEST_BAD_REQUEST', 'Client went away before its body was read'));
  if (req.readableEnded) {
    return Promise.reject(new IngestError('OUTPOST_INGEST_BAD_REQUEST', 'The request body was already consumed (mount the ingest handler before any body parser)'));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const finish = (err: IngestError | undefined): void => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (err === undefined) resolve(parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size));
      else {
        req.pause();
        reject(err);
      }
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) finish(new IngestError('OUTPOST_INGEST_TOO_LARGE', `Body exceeds ${maxBytes} bytes`));
      else parts.push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    const onError = (): void => finish(new IngestError('OUTPOST_INGEST_BAD_REQUEST', 'Request body could not be read'));
    const onClose = (): void => {
      if (!req.complete) finish(new IngestError('OUTPOST_INGEST_BAD_REQUEST', 'Client went away before its body was read'));
    };
    const timer = setTimeout(() => finish(new IngestError('OUTPOST_INGEST_BODY_TIMEOUT', `Body not received within ${timeoutMs} ms`)), timeoutMs);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}
