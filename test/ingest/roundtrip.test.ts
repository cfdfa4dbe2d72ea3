import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteIngestStore, createIngestHandler, staticTokenAuthenticator } from '../../src/ingest/index.js';
import { HttpUploader, encodeBody, type ChunkUpload } from '../../src/transport/index.js';
import { startServer } from '../helpers/http.js';
import { TOKENS, startIngest, tempDir, type IngestFixture } from '../helpers/ingest.js';
import { until } from '../helpers/http.js';

let fx: IngestFixture | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

/** Splits a report into chunks the way the outbox does: metadata in chunk 0, each chunk with the assets its findings use. */
async function chunksOf(reportId: string, n: number): Promise<ChunkUpload[]> {
  const chunks: ChunkUpload[] = [];
  for (let i = 0; i < n; i++) {
    const findings = [{ id: `f${i}a`, asset: 'shared' }, { id: `f${i}b`, asset: `own-${i}` }];
    const assets = [{ id: 'shared', kind: 'host' }, { id: `own-${i}`, kind: 'file' }];
    const value = i === 0 ? { metadata: { tool: 'scanner', version: '1.2' }, findings, assets } : { findings, assets };
    chunks.push({ reportId, index: i, total: n, ...(await encodeBody(value)) });
  }
  return chunks;
}

describe('HttpUploader ↔ ingest handler', () => {
  it('stores a whole report and hands it to onReport', async () => {
    fx = await startIngest();
    const report = { metadata: { tool: 't' }, findings: [{ id: 1 }], assets: [] as unknown[] };
    const result = await fx.client().uploadReport({ reportId: 'whole-1', ...(await encodeBody(report)) });
    expect(result).toMatchObject({ status: 201, duplicate: false, complete: true, totalChunks: 1, receivedChunks: 1 });
    await until(() => fx?.delivered.length === 1);
    expect(fx.delivered[0]).toEqual({ report, info: { tenantId: 'tenant-a', reportId: 'whole-1', totalChunks: 1, rawBytes: JSON.stringify(report).length } });
  });

  it('reassembles a chunked report sent out of order, in index order, exactly once', async () => {
    fx = await startIngest();
    const client = fx.client();
    const chunks = await chunksOf('chunked-1', 4);
    for (const i of [2, 0, 3]) expect(await client.uploadChunk(chunks[i] as ChunkUpload)).toMatchObject({ status: 201, complete: false });
    expect(fx.delivered).toHaveLength(0);
    expect(await client.uploadChunk(chunks[1] as ChunkUpload)).toMatchObject({ status: 201, complete: true, receivedChunks: 4 });
    await until(() => fx?.delivered.length === 1);
    const { report } = fx.delivered[0] as (typeof fx.delivered)[0];
    expect(report['metadata']).toEqual({ tool: 'scanner', version: '1.2' });
    expect((report['findings'] as { id: string }[]).map((f) => f.id)).toEqual(['f0a', 'f0b', 'f1a', 'f1b', 'f2a', 'f2b', 'f3a', 'f3b']);
    expect((report['assets'] as { id: string }[]).map((a) => a.id)).toEqual(['shared', 'own-0', 'own-1', 'own-2', 'own-3']);
    // Repeats after completion are duplicates and do not deliver again.
    for (const c of chunks) expect(await client.uploadChunk(c)).toMatchObject({ status: 200, duplicate: true });
    expect(await fx.handler.redeliverPending()).toBe(0);
    expect(fx.delivered).toHaveLength(1);
  });

  it('answers a repeated chunk with 200 and the same chunk with other content with 422', async () => {
    fx = await startIngest();
    const client = fx.client();
    const [first] = await chunksOf('dup-1', 2);
    await client.uploadChunk(first as ChunkUpload);
    await expect(client.uploadChunk(first as ChunkUpload)).resolves.toMatchObject({ status: 200, duplicate: true, receivedChunks: 1 });
    const other = { reportId: 'dup-1', index: 0, total: 2, ...(await encodeBody({ findings: [{ id: 'changed' }] })) };
    await expect(client.uploadChunk(other)).rejects.toMatchObject({ status: 422, serverCode: 'OUTPOST_INGEST_KEY_CONFLICT', retryable: false });
    expect(fx.handler.stats()).toMatchObject({ stored: 1, duplicates: 1 });
  });

  it('reports progress with GET /v1/reports/<id> for the owning tenant only', async () => {
    fx = await startIngest();
    const chunks = await chunksOf('progress-1', 3);
    await fx.client().uploadChunk(chunks[1] as ChunkUpload);
    await expect(fx.client().getReportStatus('progress-1')).resolves.toEqual({ reportId: 'progress-1', totalChunks: 3, receivedChunks: 1, complete: false });
    await expect(fx.client('token-b').getReportStatus('progress-1')).resolves.toBeUndefined();
    await expect(fx.client().getReportStatus('never-sent')).resolves.toBeUndefined();
  });

  it("keeps tenants apart: another tenant can neither read, overwrite nor complete a report", async () => {
    fx = await startIngest();
    const a = fx.client('token-a');
    const b = fx.client('token-b');
    const chunks = await chunksOf('shared-id', 2);
    await a.uploadChunk(chunks[0] as ChunkUpload);
    // Tenant B sending the other chunk (and a conflicting chunk 0) writes into its own namespace only.
    const forged = { reportId: 'shared-id', index: 0, total: 2, ...(await encodeBody({ findings: [{ id: 'evil' }] })) };
    await expect(b.uploadChunk(forged)).resolves.toMatchObject({ status: 201, receivedChunks: 1 });
    await expect(b.uploadChunk(chunks[1] as ChunkUpload)).resolves.toMatchObject({ status: 201, complete: true });
    await until(() => fx?.delivered.length === 1);
    expect(fx.delivered[0]?.info.tenantId).toBe('tenant-b');
    expect(fx.delivered[0]?.report['findings']).toContainEqual({ id: 'evil' });
    // Tenant A's report is untouched and still incomplete.
    await expect(a.getReportStatus('shared-id')).resolves.toMatchObject({ receivedChunks: 1, complete: false });
    await a.uploadChunk(chunks[1] as ChunkUpload);
    await until(() => fx?.delivered.length === 2);
    expect(fx.delivered[1]?.info.tenantId).toBe('tenant-a');
    expect(fx.delivered[1]?.report['findings']).not.toContainEqual({ id: 'evil' });
  });

  it('keeps a report pending when onReport fails and delivers it on redeliverPending()', async () => {
    let fail = true;
    const got: string[] = [];
    const errors: unknown[] = [];
    fx = await startIngest({
      onReport: (_r, info) => {
        if (fail) throw new Error('database down');
        got.push(info.reportId);
      },
    });
    fx.handler.on('error', (e) => errors.push(e));
    await fx.client().uploadReport({ reportId: 'retry-me', ...(await encodeBody({ findings: [] })) });
    await until(() => errors.length === 1);
    expect(errors[0]).toMatchObject({ code: 'OUTPOST_INGEST_DELIVERY_FAILED', reportId: 'retry-me' });
    fail = false;
    expect(await fx.handler.redeliverPending()).toBe(1);
    expect(got).toEqual(['retry-me']);
    expect(await fx.handler.redeliverPending()).toBe(0);
  });

  it('survives a restart: chunks stored before it complete the report after it', async () => {
    const tmp = tempDir();
    try {
      const dbPath = join(tmp.dir, 'state', 'ingest.db');
      const chunks = await chunksOf('restart-1', 2);
      const first = createIngestHandler({ store: dbPath, authenticate: staticTokenAuthenticator(TOKENS), onReport: () => undefined });
      const s1 = await startServer(first);
      await new HttpUploader({ url: s1.url, token: 'token-a' }).uploadChunk(chunks[0] as ChunkUpload);
      await s1.close();
      await first.close();

      const delivered: string[] = [];
      const second = createIngestHandler({ store: dbPath, authenticate: staticTokenAuthenticator(TOKENS), onReport: (_r, i) => void delivered.push(i.reportId) });
      const s2 = await startServer(second);
      const client = new HttpUploader({ url: s2.url, token: 'token-a' });
      await expect(client.uploadChunk(chunks[0] as ChunkUpload)).resolves.toMatchObject({ status: 200 });
      await expect(client.uploadChunk(chunks[1] as ChunkUpload)).resolves.toMatchObject({ status: 201, complete: true });
      await until(() => delivered.length === 1);
      // The write-ahead log holds chunk data too: it inherits the database's 0600.
      expect(statSync(`${dbPath}-wal`).mode & 0o777).toBe(0o600);
      await client.close();
      await s2.close();
      await second.close();
      expect(statSync(dbPath).mode & 0o777).toBe(0o600);
      expect(statSync(join(tmp.dir, 'state')).mode & 0o777).toBe(0o700);
    } finally {
      tmp.cleanup();
    }
  });

  it('offers reports completed before a crash but never delivered again at creation', async () => {
    const tmp = tempDir();
    try {
      const dbPath = join(tmp.dir, 'ingest.db');
      const store = new SqliteIngestStore(dbPath);
      const body = await encodeBody({ findings: [{ id: 1 }] });
      await store.putChunk({ tenantId: 'tenant-a', reportId: 'orphan', kind: 'whole', index: 0, total: 1, sha256: body.sha256, rawBytes: body.rawBytes, body: body.body, encoding: 'zstd', maxReportBytes: 1e9, values: 3, maxReportValues: 1e9 });
      await store.close(); // "crash" before onReport ran
      const delivered: unknown[] = [];
      const handler = createIngestHandler({ store: dbPath, authenticate: () => undefined, onReport: (r) => void delivered.push(r) });
      await until(() => delivered.length === 1);
      expect(delivered[0]).toEqual({ findings: [{ id: 1 }], assets: [] });
      await handler.close();
    } finally {
      tmp.cleanup();
    }
  });

  it('closes idempotently and refuses requests while closing', async () => {
    fx = await startIngest();
    await Promise.all([fx.handler.close(), fx.handler.close()]);
    await expect(fx.client().uploadReport({ reportId: 'late', ...(await encodeBody({})) })).rejects.toMatchObject({ status: 503, retryable: true });
  });
});
