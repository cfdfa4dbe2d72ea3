/**
 * The loopback ingest server of the chunk benchmark: `createIngestHandler`
 * (SQLite `:memory:`, bearer-token authentication, a no-op `onReport`) on
 * `127.0.0.1:0`, in a worker thread so that it does not share the event loop
 * of the outbox it is fed by (as on separate hosts). Same pattern as
 * `bench/transport.bench.ts`.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createIngestHandler, staticTokenAuthenticator, type IngestStats } from 'outpost-sdk/ingest';
import { startWorkerServer } from './worker-server.js';

export const TOKEN = 'chunk-bench-token';
export const TENANT = 'tenant-a';
const ROLE = 'outpost-chunk-bench-ingest';

type FromServer = { readonly port: number } | { readonly stats: IngestStats; readonly errors: number };

async function serve(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('serve() runs in a worker');
  let errors = 0;
  const ingest = createIngestHandler({ store: ':memory:', authenticate: staticTokenAuthenticator({ [TOKEN]: TENANT }), onReport: () => {} });
  ingest.on('error', () => void errors++);
  const server = createServer(ingest);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port.once('message', () => {
    server.closeAllConnections();
    server.close(() => {
      void (async () => {
        await ingest.close();
        port.postMessage({ stats: ingest.stats(), errors } satisfies FromServer);
        port.close();
      })();
    });
  });
  port.postMessage({ port: (server.address() as AddressInfo).port } satisfies FromServer);
}

/** A running ingest server. */
export interface IngestServer {
  readonly url: string;
  /** Closes the server; resolves with the handler's stats and the count of its `error` events. */
  stop(): Promise<{ stats: IngestStats; errors: number }>;
}

/** Starts the ingest server in a worker thread. */
export function startIngestServer(): Promise<IngestServer> {
  return startWorkerServer<{ stats: IngestStats; errors: number }>(import.meta.url, ROLE);
}

if (!isMainThread && workerData === ROLE) await serve();
