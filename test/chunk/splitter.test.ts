import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeReport, type SplitSettings } from '../../src/chunk/encode.js';
import { defaultFindingAssetIds } from '../../src/chunk/options.js';
import { zstdDecompress } from '../../src/internal/zstd.js';
import { sha256 } from '../../src/internal/repr-digest.js';

interface Body {
  metadata?: unknown;
  findings: { id: number; assetIds: (string | number)[]; text: string }[];
  assets: { id: string | number; text: string }[];
}

function settings(over: Partial<SplitSettings>): SplitSettings {
  return {
    minFindingsForChunking: 1,
    minAssetsForChunking: 1,
    minSizeForChunkingBytes: 1,
    maxFindingsPerChunk: 500,
    maxAssetsPerChunk: 100,
    maxChunkSizeBytes: 2 * 1024 * 1024,
    compressionLevel: 1,
    findingAssetIds: defaultFindingAssetIds,
    ...over,
  };
}

const text = fc.string({ unit: 'grapheme', maxLength: 40 }); // multi-byte UTF-8 included

describe('splitting', () => {
  it('keeps every chunk within its limits, findings in order, and each finding with the assets it refers to', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 12 }),
        fc.array(fc.record({ assets: fc.array(fc.integer({ min: 0, max: 14 }), { maxLength: 3 }), text }), { maxLength: 60 }),
        fc.array(text, { maxLength: 15 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 3, max: 6 }),
        fc.integer({ min: 600, max: 3000 }),
        async (numericFrom, findingSpecs, assetTexts, maxF, maxA, maxBytes) => {
          // Asset ids: strings, and numbers from `numericFrom` on ("1" and 1 differ).
          const assets = assetTexts.map((t, i) => ({ id: i >= numericFrom ? i : `a${i}`, text: t }));
          const idOf = (i: number): string | number => (i >= numericFrom ? i : `a${i}`);
          const findings = findingSpecs.map((f, i) => ({ id: i, assetIds: f.assets.map(idOf), text: f.text }));
          const report = { metadata: { tool: 'ŧøøł', n: 1 }, findings, assets };
          let encoded;
          try {
            encoded = await encodeReport(report, settings({ maxFindingsPerChunk: maxF, maxAssetsPerChunk: maxA, maxChunkSizeBytes: maxBytes }), undefined);
          } catch (err) {
            // Only a finding whose assets cannot fit may be refused.
            expect((err as { code?: string }).code).toBe('OUTPOST_CHUNK_ITEM_TOO_LARGE');
            return;
          }
          const bodies: Body[] = [];
          for (const c of encoded.chunks) {
            const raw = await zstdDecompress(Buffer.from(c.body));
            expect(raw.length).toBe(c.rawBytes);
            expect(raw.length).toBeLessThanOrEqual(maxBytes);
            expect(sha256(raw).toString('hex')).toBe(c.sha256);
            bodies.push(JSON.parse(raw.toString('utf8')) as Body);
          }
          expect(bodies.map((b) => b.findings.length).every((n) => n <= maxF)).toBe(true);
          expect(bodies.map((b) => b.assets.length).every((n) => n <= maxA)).toBe(true);
          expect(bodies[0]!.metadata).toEqual(report.metadata);
          expect(bodies.slice(1).every((b) => !('metadata' in b))).toBe(true);
          expect(bodies.flatMap((b) => b.findings)).toEqual(findings);
          const known = new Set(assets.map((a) => JSON.stringify(a.id)));
          for (const b of bodies) {
            const here = new Set(b.assets.map((a) => JSON.stringify(a.id)));
            for (const f of b.findings) for (const id of f.assetIds) if (known.has(JSON.stringify(id))) expect(here.has(JSON.stringify(id))).toBe(true);
          }
          // Every asset reaches the server at least once.
          const sent = new Set(bodies.flatMap((b) => b.assets.map((a) => JSON.stringify(a.id))));
          expect([...known].every((id) => sent.has(id))).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('gives the same content digest under any limits, and a different one for different content', async () => {
    const report = { metadata: { m: 1 }, findings: Array.from({ length: 40 }, (_, i) => ({ id: i, assetId: `a${i % 4}` })), assets: [0, 1, 2, 3].map((i) => ({ id: `a${i}` })) };
    const a = await encodeReport(report, settings({ maxFindingsPerChunk: 3 }), undefined);
    const b = await encodeReport(report, settings({ maxFindingsPerChunk: 17 }), undefined);
    expect(a.chunks.length).not.toBe(b.chunks.length);
    expect(a.digest).toBe(b.digest);
    const changed = structuredClone(report);
    changed.findings[39]!.id = 99;
    expect((await encodeReport(changed, settings({ maxFindingsPerChunk: 3 }), undefined)).digest).not.toBe(a.digest);
  });

  it('refuses metadata that cannot fit in chunk 0, and more than 10 000 chunks', async () => {
    await expect(encodeReport({ metadata: 'x'.repeat(5000), findings: [{}] }, settings({ maxChunkSizeBytes: 4096 }), undefined)).rejects.toMatchObject({ code: 'OUTPOST_CHUNK_ITEM_TOO_LARGE', message: expect.stringMatching(/metadata/) });
    const many = { findings: Array.from({ length: 10_001 }, (_, i) => i) };
    await expect(encodeReport(many, settings({ maxFindingsPerChunk: 1 }), undefined)).rejects.toMatchObject({ code: 'OUTPOST_CHUNK_TOO_MANY' });
  });

  it('sends the first asset of a repeated id only, as the server would keep', async () => {
    const report = { findings: [], assets: [{ id: 'x', v: 1 }, { id: 'x', v: 2 }, { v: 3 }, { v: 4 }] };
    const e = await encodeReport(report, settings({}), undefined);
    const body = JSON.parse((await zstdDecompress(Buffer.from(e.chunks[0]!.body))).toString()) as Body;
    expect(body.assets).toEqual([{ id: 'x', v: 1 }, { v: 3 }, { v: 4 }]);
  });
});

describe('splitting around large metadata', () => {
  it('closes chunk 0 with only the metadata when the first item does not fit beside it', async () => {
    const report = { metadata: { note: 'm'.repeat(600) }, findings: [{ t: 'f'.repeat(480) }, { t: 'g'.repeat(480) }] };
    const e = await encodeReport(report, settings({ maxChunkSizeBytes: 1000 }), undefined);
    const bodies = await Promise.all(e.chunks.map(async (c) => JSON.parse((await zstdDecompress(Buffer.from(c.body))).toString()) as Body));
    expect(bodies[0]!.metadata).toEqual(report.metadata);
    expect(bodies[0]!.findings).toEqual([]);
    expect(bodies.flatMap((b) => b.findings)).toEqual(report.findings);
  });
});
