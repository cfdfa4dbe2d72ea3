import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { IllegalStateError, InvalidOptionError } from '../../src/errors.js';
import { SqliteIngestStore, createIngestHandler } from '../../src/ingest/index.js';
import { encodeBody } from '../../src/transport/index.js';
import { until } from '../helpers/http.js';
import { startIngest, tempDir, type IngestFixture } from '../helpers/ingest.js';

let fx: IngestFixture | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await fx?.close();
  fx = undefined;
});

async function putWhole(store: SqliteIngestStore, tenantId: string, reportId: string): Promise<void> {
  const body = await encodeBody({ findings: [reportId] });
  await store.putChunk({ tenantId, reportId, kind: 'whole', index: 0, total: 1, sha256: body.sha256, rawBytes: body.rawBytes, body: body.body, encoding: 'zstd', maxReportBytes: 1e9, values: 3, maxReportValues: 1e9 });
}

describe('ingest handler lifecycle', () => {
  it('requires authenticate, onReport and store, and rejects unknown options', () => {
    const base = { store: ':memory:', authenticate: () => 't', onReport: () => undefined };
    expect(() => createIngestHandler({ ...base, onReport: undefined as never })).toThrow('Expected `onReport` to be a function');
    expect(() => createIngestHandler({ ...base, authenticate: 'x' as never })).toThrow(InvalidOptionError);
    expect(() => createIngestHandler({ ...base, store: 42 as never })).toThrow(/store/);
    expect(() => createIngestHandler({ ...base, store: { putChunk() {} } as never })).toThrow(/Missing: getReport, readChunks/);
    expect(() => createIngestHandler({ ...base, maxCompressionRatio: Number.POSITIVE_INFINITY })).toThrow(/maxCompressionRatio/);
    expect(() => createIngestHandler({ ...base, maxCompressionRatio: 0 })).toThrow(/maxCompressionRatio/);
    expect(() => createIngestHandler({ ...base, maxChunksPerReport: 20_000 })).toThrow(/maxChunksPerReport/);
    expect(() => createIngestHandler({ ...base, maxReportSizeBytes: 10 })).toThrow(/maxReportSizeBytes.*maxDecompressedSizeBytes/);
    expect(() => createIngestHandler({ ...base, maxBodyBytes: 1 } as never)).toThrow('Unknown option `maxBodyBytes`');
  });

  it('redelivers every pending report across pages, passing over ones that fail again', async () => {
    const tmp = tempDir();
    try {
      const dbPath = join(tmp.dir, 'ingest.db');
      const store = new SqliteIngestStore(dbPath);
      for (let i = 0; i < 1_200; i++) await putWhole(store, 'tenant-a', `r${i}`);
      await store.close();
      const delivered = new Set<string>();
      let failEveryThird = true;
      const handler = createIngestHandler({
        store: dbPath,
        authenticate: () => undefined,
        onReport: (_r, { reportId }) => {
          if (failEveryThird && Number(reportId.slice(1)) % 3 === 0) throw new Error('not now');
          delivered.add(reportId);
        },
      });
      handler.on('error', () => undefined);
      await until(() => delivered.size === 800, 10_000); // the automatic pass at creation
      failEveryThird = false;
      expect(await handler.redeliverPending()).toBe(400);
      expect(delivered.size).toBe(1_200);
      expect(await handler.redeliverPending()).toBe(0);
      await handler.close();
    } finally {
      tmp.cleanup();
    }
  });

  it('prunes abandoned incomplete reports and long-delivered ones, never pending deliveries', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
    const stuck = new Error('consumer down');
    fx = await startIngest({ incompleteReportTtlMs: 60_000, deliveredReportTtlMs: 120_000, onReport: (_r, { reportId }) => { if (reportId === 'undelivered') throw stuck; } });
    const client = fx.client();
    await client.uploadChunk({ reportId: 'abandoned', index: 0, total: 2, ...(await encodeBody({ findings: [] })) });
    await client.uploadReport({ reportId: 'delivered', ...(await encodeBody({ findings: [] })) });
    await client.uploadReport({ reportId: 'undelivered', ...(await encodeBody({ findings: [] })) });
    await until(() => fx?.handler.stats().delivered === 1 && fx.handler.stats().deliveryFailures === 1);
    expect(await fx.handler.prune()).toEqual({ incompleteReports: 0, deliveredReports: 0 });
    vi.setSystemTime(new Date('2026-01-01T00:01:01Z'));
    expect(await fx.handler.prune()).toEqual({ incompleteReports: 1, deliveredReports: 0 });
    await expect(client.getReportStatus('abandoned')).resolves.toBeUndefined();
    vi.setSystemTime(new Date('2026-01-01T00:02:01Z'));
    expect(await fx.handler.prune()).toEqual({ incompleteReports: 0, deliveredReports: 1 });
    await expect(client.getReportStatus('delivered')).resolves.toBeUndefined();
    vi.setSystemTime(new Date('2027-01-01T00:00:00Z'));
    expect(await fx.handler.prune()).toEqual({ incompleteReports: 0, deliveredReports: 0 });
    await expect(client.getReportStatus('undelivered')).resolves.toMatchObject({ complete: true });
  });

  it('answers normally when an event listener throws, and reports the throw as a warning', async () => {
    fx = await startIngest();
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      fx.handler.on('stored', () => {
        throw new Error('listener bug');
      });
      const result = await fx.client().uploadReport({ reportId: 'ok', ...(await encodeBody({})) });
      expect(result.status).toBe(201);
      await until(() => warnings.some((w) => (w as { code?: string }).code === 'OUTPOST_LISTENER_FAILED'));
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('leaves no timers behind after close', async () => {
    vi.useFakeTimers();
    const handler = createIngestHandler({ store: ':memory:', authenticate: () => 't', onReport: () => undefined });
    expect(vi.getTimerCount()).toBe(2); // the redelivery pass at creation and the hourly prune
    await vi.advanceTimersToNextTimerAsync(); // let the redelivery pass run
    expect(vi.getTimerCount()).toBe(1);
    await handler.close();
    await handler.close();
    expect(vi.getTimerCount()).toBe(0);
    // The SQLite database the handler opened is closed too.
    await expect(handler.store.getReport('t', 'r')).rejects.toBeInstanceOf(IllegalStateError);
  });
});
