/**
 * Writing responses, and what the handler reads off a request's URL.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { StoredReport } from './store.js';

/** Sends `body` as JSON with `status`; if headers went out already, drops the connection instead. */
export function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.end(text);
}

/** The request path without its query string, at most 2048 characters. */
export function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return (q === -1 ? url : url.slice(0, q)).slice(0, 2048);
}

/** `decodeURIComponent`, or the input as is when it is not valid percent-encoding. */
export function decodePathSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The protocol's report status document. */
export function statusBody(reportId: string, r: StoredReport): Record<string, unknown> {
  return { reportId, totalChunks: r.totalChunks, receivedChunks: r.receivedChunks, complete: r.complete };
}
