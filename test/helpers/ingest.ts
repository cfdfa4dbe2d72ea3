import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIngestHandler, staticTokenAuthenticator, type IngestHandler, type IngestHandlerOptions, type IngestedReport, type ReportInfo } from '../../src/ingest/index.js';
import { HttpUploader } from '../../src/transport/index.js';
import { startServer, type TestServer } from './http.js';

export const TOKENS = { 'token-a': 'tenant-a', 'token-b': 'tenant-b' } as const;

export interface IngestFixture {
  readonly handler: IngestHandler;
  readonly server: TestServer;
  readonly delivered: { report: IngestedReport; info: ReportInfo }[];
  /** An uploader authenticated as tenant-a (or tenant-b). */
  client(token?: keyof typeof TOKENS): HttpUploader;
  close(): Promise<void>;
}

/** A real ingest handler on a loopback server, with uploaders for two tenants. */
export async function startIngest(options: Partial<IngestHandlerOptions> = {}): Promise<IngestFixture> {
  const delivered: { report: IngestedReport; info: ReportInfo }[] = [];
  const handler = createIngestHandler({
    store: ':memory:',
    authenticate: staticTokenAuthenticator(TOKENS),
    onReport: (report, info) => {
      delivered.push({ report, info });
    },
    ...options,
  });
  handler.on('error', () => undefined);
  const server = await startServer(handler);
  const clients: HttpUploader[] = [];
  return {
    handler,
    server,
    delivered,
    client(token = 'token-a') {
      const c = new HttpUploader({ url: server.url, token, uploadTimeoutMs: 10_000 });
      clients.push(c);
      return c;
    },
    async close() {
      await Promise.all(clients.map((c) => c.close()));
      await server.close();
      await handler.close();
    },
  };
}

/** A fresh temp directory, removed by the returned cleanup. */
export function tempDir(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
