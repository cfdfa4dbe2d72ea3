/**
 * The loopback server of the pipeline benchmark (`bench/pipeline.bench.ts`),
 * in a worker thread so that it does not share the event loop of the client
 * it is fed by (as on separate hosts). Either a bare node:http sink that
 * reads the body and answers 201 `{"status":"stored"}` (what the ingest
 * handler answers for a stored report), or the real ingest handler of
 * `bench/chunk-server.ts` (SQLite `:memory:`, bearer token `TOKEN`).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { startIngestServer } from './chunk-server.js';
import { startWorkerServer } from './worker-server.js';

export { TENANT, TOKEN } from './chunk-server.js';

const ROLE = 'outpost-pipeline-bench-sink';
const STORED = '{"status":"stored"}';

/** Which server: a bare sink, or the ingest handler. */
export type ServerKind = 'sink' | 'ingest';

/** A running server. */
export interface BenchServer {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Closes the server; resolves with a one-line summary of what it saw. Throws when the ingest handler refused anything. */
  stop(): Promise<string>;
}

async function serveSink(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('serveSink() runs in a worker');
  let requests = 0;
  let bytes = 0;
  const server = createServer((req, res) => {
    requests++;
    req.on('data', (data: Buffer) => void (bytes += data.length));
    req.on('end', () => {
      res.writeHead(201, { 'content-type': 'application/json', 'content-length': String(STORED.length) });
      res.end(STORED);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port.once('message', () => {
    server.closeAllConnections();
    server.close(() => {
      port.postMessage({ requests, bytes });
      port.close();
    });
  });
  port.postMessage({ port: (server.address() as AddressInfo).port });
}

/** Starts the server of `kind` in a worker thread. */
export async function startServer(kind: ServerKind): Promise<BenchServer> {
  if (kind === 'ingest') {
    const s = await startIngestServer();
    return {
      url: s.url,
      async stop() {
        const { stats, errors } = await s.stop();
        if (stats.rejected !== 0 || errors !== 0) throw new Error(`ingest server rejected ${stats.rejected} requests, ${errors} errors`);
        return `ingest server: ${stats.requests} requests, ${stats.stored} stored, ${stats.duplicates} duplicates, ${stats.delivered} delivered`;
      },
    };
  }
  const s = await startWorkerServer<{ requests: number; bytes: number }>(import.meta.url, ROLE);
  return {
    url: s.url,
    async stop() {
      const { requests, bytes } = await s.stop();
      return `sink server: ${requests} requests, ${(bytes / 1e6).toFixed(1)} MB of bodies`;
    },
  };
}

if (!isMainThread && workerData === ROLE) await serveSink();
