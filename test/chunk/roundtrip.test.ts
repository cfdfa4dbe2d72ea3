import { afterEach, describe, expect, it } from 'vitest';
import type { ChunkManager } from '../../src/chunk/index.js';
import { makeReport, startManager } from '../helpers/chunk.js';
import { startIngest, tempDir, type IngestFixture } from '../helpers/ingest.js';

let ingest: IngestFixture;
let manager: ChunkManager | undefined;
let tmp: ReturnType<typeof tempDir>;

afterEach(async () => {
  await manager?.close();
  manager = undefined;
  await ingest?.close();
  tmp?.cleanup();
});

async function setup(options: Parameters<typeof startManager>[2] = {}) {
  ingest = await startIngest();
  tmp = tempDir();
  manager = await startManager(tmp.dir, ingest.client(), options);
  return manager;
}

describe('ChunkManager round trip to a real ingest server', () => {
  it('delivers a small report whole, as one stored chunk', async () => {
    const m = await setup();
    const report = makeReport(10, 3);
    const receipt = await m.submitReport(report, { tenantId: 'tenant-a', reportId: 'small-1' });
    expect(receipt).toMatchObject({ reportId: 'small-1', chunked: false, totalChunks: 1, duplicate: false });
    await m.flush();
    await expect.poll(() => ingest.delivered.length).toBe(1);
    const got = ingest.delivered[0]!.report;
    expect(got.findings).toEqual(report.findings);
    expect(got.assets).toEqual(report.assets);
    expect(got.metadata).toEqual(report.metadata);
    expect(ingest.delivered[0]!.info.totalChunks).toBe(1);
  });

  it('delivers a chunked report with every finding in order and every asset once', async () => {
    const m = await setup();
    const report = makeReport(2500, 300);
    const receipt = await m.submitReport(report, { tenantId: 'tenant-a', reportId: 'big-1' });
    expect(receipt.chunked).toBe(true);
    expect(receipt.totalChunks).toBeGreaterThanOrEqual(5);
    await m.flush();
    await expect.poll(() => ingest.delivered.length).toBe(1);
    const got = ingest.delivered[0]!.report;
    expect(got.findings).toEqual(report.findings);
    expect(got.metadata).toEqual(report.metadata);
    const ids = (got.assets as { id: string }[]).map((a) => a.id).sort();
    expect(ids).toEqual((report.assets as { id: string }[]).map((a) => a.id).sort());
    expect(ingest.delivered[0]!.info.totalChunks).toBe(receipt.totalChunks);
    expect(m.getReport('tenant-a', 'big-1')).toBeUndefined(); // cleanupOnReportComplete
  });

  it('delivers a streamed report', async () => {
    const m = await setup();
    async function* items() {
      for (let i = 0; i < 50; i++) yield { asset: { id: `A-${i}`, kind: 'host' } };
      for (let i = 0; i < 3000; i++) yield { finding: { id: `F-${i}`, assetId: `A-${i % 50}` } };
    }
    const receipt = await m.submitReportStream({ tenantId: 'tenant-a', reportId: 'stream-1', metadata: { tool: 't' } }, items());
    expect(receipt.chunked).toBe(true);
    await m.flush();
    await expect.poll(() => ingest.delivered.length).toBe(1);
    const got = ingest.delivered[0]!.report;
    expect((got.findings as unknown[]).length).toBe(3000);
    expect((got.assets as unknown[]).length).toBe(50);
    expect(got.metadata).toEqual({ tool: 't' });
  });
});
