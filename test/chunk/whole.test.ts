/**
 * `encodeWholeReport()`, `ChunkManager.encodeWholeReport()` and
 * `ChunkManager.submitEncodedReport()`: a report encoded whole outside the
 * outbox is the same bytes the outbox sends for it, and the outbox stores
 * such a body as it is.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { decompress } from '@mongodb-js/zstd';
import { afterEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { ChunkManager, chunkManagerDefaults, defaultFindingAssetIds, encodeWholeReport, type ChunkManagerOptions, type Report, type WholeReportBody } from '../../src/chunk/index.js';
import { encodeReport } from '../../src/chunk/encode.js';
import { ChunkError, IllegalStateError, InvalidArgumentError, InvalidOptionError } from '../../src/errors.js';
import { makeReport, ScriptedUploader, startManager, unavailable } from '../helpers/chunk.js';
import { tempDir } from '../helpers/ingest.js';

let dirs: ReturnType<typeof tempDir>[] = [];
let managers: ChunkManager[] = [];

afterEach(async () => {
  await Promise.all(managers.map((m) => m.close()));
  managers = [];
  for (const d of dirs) d.cleanup();
  dirs = [];
});

function dir(): string {
  const d = tempDir();
  dirs.push(d);
  return d.dir;
}

/** A started outbox on a fresh database; `hold` keeps every upload failing (503, retry in an hour) so reports stay stored. */
async function open(options: Partial<ChunkManagerOptions> = {}, hold = false): Promise<{ m: ChunkManager; up: ScriptedUploader }> {
  const up = new ScriptedUploader();
  if (hold) up.fail = () => unavailable(3_600_000);
  const m = await startManager(dir(), up, options);
  managers.push(m);
  return { m, up };
}

/** An outbox that is never started (no database is opened). */
function idle(options: Partial<ChunkManagerOptions> = {}): ChunkManager {
  return new ChunkManager({ uploader: new ScriptedUploader(), databasePath: join(dir(), 'chunks.db'), ...options });
}

const text = async (body: Uint8Array): Promise<string> => (await decompress(Buffer.from(body))).toString('utf8');
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');
/** A report whose canonical JSON is exactly `bytes` long (its metadata padded). */
async function reportOfSize(bytes: number): Promise<Report> {
  const base = await encodeWholeReport({ metadata: { pad: '' }, findings: [{ id: 'F-1' }], assets: [] });
  return { metadata: { pad: 'x'.repeat(bytes - base.rawBytes) }, findings: [{ id: 'F-1' }], assets: [] };
}

describe('encodeWholeReport', () => {
  it('gives the very body the outbox uploads for the same report sent whole', async () => {
    const report = { scanId: 'scan-1', ...makeReport(20, 5) };
    const body = await encodeWholeReport(report);
    const { m, up } = await open({ cleanupOnReportComplete: false });
    const receipt = await m.submitReport(report, { tenantId: 't', reportId: 'r' });
    await m.flush();
    expect(receipt).toMatchObject({ chunked: false, totalChunks: 1, rawBytes: body.rawBytes });
    expect(up.seen).toHaveLength(1);
    const sent = up.seen[0];
    expect(sent).toMatchObject({ kind: 'report', reportId: 'r', sha256: body.sha256 });
    expect(await text(sent?.body as Uint8Array)).toBe(await text(body.body));
    expect(Buffer.from(sent?.body as Uint8Array).equals(Buffer.from(body.body))).toBe(true);
    expect(m.getReport('t', 'r')?.contentSha256).toBe(body.contentDigest);
  });

  it('uses the outbox’s compression level in ChunkManager.encodeWholeReport', async () => {
    const report = makeReport(50, 5);
    const fromOutbox = await idle({ compressionLevel: 9 }).encodeWholeReport(report);
    const direct = await encodeWholeReport(report, { compressionLevel: 9 });
    expect(fromOutbox).toBeDefined();
    expect(Buffer.from(fromOutbox?.body as Uint8Array).equals(Buffer.from(direct.body))).toBe(true);
    expect(fromOutbox).toMatchObject({ sha256: direct.sha256, contentDigest: direct.contentDigest, rawBytes: direct.rawBytes, encoding: 'zstd' });
    await expect(encodeWholeReport(report, { compressionLevel: 23 })).rejects.toBeInstanceOf(InvalidOptionError);
  });

  it('writes the canonical form: other fields first in their order, then findings, then assets', async () => {
    const report = { assets: [{ id: 'A-1' }], scanId: 's-1', findings: [{ id: 'F-1', assetId: 'A-1' }], metadata: { tool: 'x' }, skipped: undefined };
    const canonical = '{"scanId":"s-1","metadata":{"tool":"x"},"findings":[{"id":"F-1","assetId":"A-1"}],"assets":[{"id":"A-1"}]}';
    const body = await encodeWholeReport(report);
    expect(await text(body.body)).toBe(canonical);
    expect(body).toMatchObject({ encoding: 'zstd', sha256: sha256(canonical), rawBytes: Buffer.byteLength(canonical) });
    // The same content in another key order is the same body.
    const reordered = await encodeWholeReport({ metadata: { tool: 'x' }, findings: report.findings, scanId: 's-1', assets: report.assets });
    expect(reordered.sha256).not.toBe(body.sha256); // other fields keep their own order: scanId now comes after metadata
    const same = await encodeWholeReport({ scanId: 's-1', findings: report.findings, metadata: { tool: 'x' }, assets: report.assets });
    expect(same).toMatchObject({ sha256: body.sha256, contentDigest: body.contentDigest });
  });

  it('writes missing findings and assets as empty arrays', async () => {
    expect(await text((await encodeWholeReport({ metadata: { a: 1 } })).body)).toBe('{"metadata":{"a":1},"findings":[],"assets":[]}');
    expect(await text((await encodeWholeReport({})).body)).toBe('{"findings":[],"assets":[]}');
    expect(await text((await encodeWholeReport({ assets: [1] })).body)).toBe('{"findings":[],"assets":[1]}');
  });

  it('rejects a report it cannot serialise with InvalidArgumentError', async () => {
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    for (const bad of [{ findings: [{ n: 1n }] }, { findings: [undefined] }, { assets: [circular] }, { metadata: 1n }, { findings: 'x' }, null, []] as unknown[]) {
      await expect(encodeWholeReport(bad as Report), String(bad)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
  });
});

describe('ChunkManager.encodeWholeReport', () => {
  it('resolves undefined when the outbox would chunk the report by its counts', async () => {
    const m = idle();
    expect(await m.encodeWholeReport(makeReport(2000, 1))).toBeUndefined();
    expect(await m.encodeWholeReport(makeReport(1, 200))).toBeUndefined();
    const under = await m.encodeWholeReport(makeReport(1999, 199));
    expect(under).toMatchObject((await encodeWholeReport(makeReport(1999, 199))) as unknown as Record<string, unknown>);
    expect(m.needsChunking(makeReport(2000, 1))).toBe(true);
    expect(m.needsChunking(makeReport(1999, 199))).toBe(false);
    expect(existsSync(m.options.databasePath)).toBe(false); // no running outbox needed
  });

  it('resolves undefined from minSizeForChunkingBytes of JSON on, and past maxChunkSizeBytes', async () => {
    const bySize = idle({ minSizeForChunkingBytes: 4096 });
    const under = await reportOfSize(4095);
    expect((await bySize.encodeWholeReport(under))?.rawBytes).toBe(4095);
    expect(await bySize.encodeWholeReport(await reportOfSize(4096))).toBeUndefined();
    expect(bySize.needsChunking(await reportOfSize(4096))).toBe(true);
    const byChunk = idle({ maxChunkSizeBytes: 1024 });
    expect((await byChunk.encodeWholeReport(await reportOfSize(1024)))?.rawBytes).toBe(1024);
    expect(await byChunk.encodeWholeReport(await reportOfSize(1025))).toBeUndefined();
  });

  it('rejects a report it cannot serialise with InvalidArgumentError', async () => {
    await expect(idle().encodeWholeReport({ findings: [{ n: 1n }] })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('ChunkManager.submitEncodedReport', () => {
  it('stores the body as a whole report and uploads those bytes', async () => {
    const { m, up } = await open();
    const report = makeReport(10, 3);
    const body = (await m.encodeWholeReport(report)) as WholeReportBody;
    const receipt = await m.submitEncodedReport(body, { tenantId: 't', reportId: 'enc', priority: 5 });
    expect(receipt).toEqual({ reportId: 'enc', chunked: false, totalChunks: 1, rawBytes: body.rawBytes, storedBytes: body.body.byteLength, duplicate: false });
    await m.flush();
    expect(up.seen.map((s) => ({ kind: s.kind, reportId: s.reportId, sha256: s.sha256 }))).toEqual([{ kind: 'report', reportId: 'enc', sha256: body.sha256 }]);
    expect(Buffer.from(up.seen[0]?.body as Uint8Array).equals(Buffer.from(body.body))).toBe(true);
    expect(JSON.parse(await text(up.seen[0]?.body as Uint8Array))).toEqual(report);
  });

  it('answers the same content under the same id as a duplicate, however it was submitted, and other content as a conflict', async () => {
    const { m } = await open({}, true);
    const report = makeReport(10, 3);
    const body = (await m.encodeWholeReport(report)) as WholeReportBody;
    const first = await m.submitEncodedReport(body, { tenantId: 't', reportId: 'same' });
    expect(await m.submitEncodedReport(body, { tenantId: 't', reportId: 'same' })).toEqual({ ...first, duplicate: true });
    expect(await m.submitReport(structuredClone(report), { tenantId: 't', reportId: 'same' })).toEqual({ ...first, duplicate: true });
    // And the other way round: stored by submitReport, then the encoded body.
    await m.submitReport(report, { tenantId: 't', reportId: 'plain' });
    expect((await m.submitEncodedReport(body, { tenantId: 't', reportId: 'plain' })).duplicate).toBe(true);
    const other = (await m.encodeWholeReport(makeReport(11, 3))) as WholeReportBody;
    await expect(m.submitEncodedReport(other, { tenantId: 't', reportId: 'same' })).rejects.toMatchObject({ code: 'OUTPOST_REPORT_CONFLICT' });
    await expect(m.submitEncodedReport(other, { tenantId: 't', reportId: 'same' })).rejects.toBeInstanceOf(ChunkError);
    expect(m.stats().reports.pending).toBe(2);
  });

  it('rejects a body that is not an encoded whole report with InvalidArgumentError, and stores nothing', async () => {
    const { m, up } = await open({ maxChunkSizeBytes: 1024 });
    const good = await encodeWholeReport(makeReport(3, 1));
    const over = await encodeWholeReport(await reportOfSize(1025));
    const bad: [string, unknown][] = [
      ['null', null],
      ['a string', 'body'],
      ['no body', { ...good, body: undefined }],
      ['an empty body', { ...good, body: new Uint8Array(0) }],
      ['a string body', { ...good, body: 'abc' }],
      ['another encoding', { ...good, encoding: 'gzip' }],
      ['no sha256', { ...good, sha256: undefined }],
      ['an upper-case sha256', { ...good, sha256: good.sha256.toUpperCase() }],
      ['a short sha256', { ...good, sha256: good.sha256.slice(1) }],
      ['a non-hex sha256', { ...good, sha256: `${good.sha256.slice(1)}g` }],
      ['no contentDigest', { ...good, contentDigest: undefined }],
      ['a bad contentDigest', { ...good, contentDigest: 'z'.repeat(64) }],
      ['no rawBytes', { ...good, rawBytes: undefined }],
      ['rawBytes of 1', { ...good, rawBytes: 1 }],
      ['fractional rawBytes', { ...good, rawBytes: 10.5 }],
      ['rawBytes as a string', { ...good, rawBytes: '100' }],
      ['rawBytes over maxChunkSizeBytes', over],
      ['an unchanged copy (not the body encodeWholeReport made)', { ...good }],
    ];
    for (const [what, body] of bad) {
      await expect(m.submitEncodedReport(body as WholeReportBody, { tenantId: 't', reportId: 'bad' }), what).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    await expect(m.submitEncodedReport(over, { tenantId: 't', reportId: 'bad' })).rejects.toThrow(/splits a report of 1 findings, 0 assets and 1025 bytes/);
    // The split rule by counts holds too: a body of 3 000 findings encoded elsewhere is refused whole.
    const many = await encodeWholeReport(makeReport(3000, 0));
    const { m: roomy } = await open({ maxChunkSizeBytes: 64 * 1024 * 1024, minSizeForChunkingBytes: 64 * 1024 * 1024 });
    await expect(roomy.submitEncodedReport(many, { tenantId: 't', reportId: 'many' })).rejects.toThrow(/splits a report of 3000 findings/);
    await expect(m.submitEncodedReport(good, { tenantId: 'bad tenant', reportId: 'bad' })).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(m.getReport('t', 'bad')).toBeUndefined();
    expect(m.stats().reports.pending).toBe(0);
    await m.flush();
    expect(up.seen).toEqual([]);
    // The same valid body is accepted.
    expect((await m.submitEncodedReport(good, { tenantId: 't', reportId: 'bad' })).duplicate).toBe(false);
  });

  it('works only while the outbox is running', async () => {
    const body = await encodeWholeReport(makeReport(3, 1));
    const before = idle();
    await expect(before.submitEncodedReport(body, { tenantId: 't', reportId: 'r' })).rejects.toBeInstanceOf(IllegalStateError);
    const { m } = await open();
    expect((await m.submitEncodedReport(body, { tenantId: 't', reportId: 'r' })).duplicate).toBe(false);
    await m.close();
    await expect(m.submitEncodedReport(body, { tenantId: 't', reportId: 'r2' })).rejects.toBeInstanceOf(IllegalStateError);
    // Encoding needs no running outbox, closed or not.
    expect(await m.encodeWholeReport(makeReport(3, 1))).toMatchObject({ sha256: body.sha256 });
  });
});

describe('encodeWholeReport() against the outbox, on random reports', () => {
  const settings = { ...chunkManagerDefaults, minFindingsForChunking: 1e9, minAssetsForChunking: 1e9, minSizeForChunkingBytes: 1e12, maxChunkSizeBytes: 256 * 1024 * 1024, findingAssetIds: defaultFindingAssetIds };
  const value = fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 30 }),
    fc.integer(),
    fc.double({ noNaN: false }),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.date({ noInvalidDate: true }),
    fc.dictionary(fc.string({ maxLength: 5 }), fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.constant(undefined))),
  );
  const item = fc.oneof(
    { weight: 16, arbitrary: fc.record({ id: fc.string({ maxLength: 8 }), rule: fc.string({ unit: 'grapheme', maxLength: 20 }), v: value }) },
    { weight: 2, arbitrary: value },
    // Serialises to nothing alone (refused) but to `null` inside an array.
    { weight: 1, arbitrary: fc.constant({ toJSON: () => undefined }) },
  );

  it('gives the bytes, digests and errors the outbox gives for the same report sent whole', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(item, { maxLength: 120 }), fc.array(item, { maxLength: 30 }), fc.option(fc.dictionary(fc.string({ maxLength: 6 }), value), { nil: undefined }), async (findings, assets, metadata) => {
        const report: Report = { ...(metadata === undefined ? {} : { metadata }), findings, assets };
        let ours: WholeReportBody | Error;
        let theirs: Awaited<ReturnType<typeof encodeReport>> | Error;
        try {
          ours = await encodeWholeReport(report);
        } catch (err) {
          ours = err as Error;
        }
        try {
          theirs = await encodeReport(report, settings, undefined);
        } catch (err) {
          theirs = err as Error;
        }
        if (ours instanceof Error || theirs instanceof Error) {
          expect(ours).toBeInstanceOf(InvalidArgumentError);
          expect(theirs).toBeInstanceOf(InvalidArgumentError);
          expect((ours as Error).message).toBe((theirs as Error).message);
          return;
        }
        const chunk = theirs.chunks[0];
        expect(theirs.kind).toBe('whole');
        expect(ours.sha256).toBe(chunk?.sha256);
        expect(ours.rawBytes).toBe(chunk?.rawBytes);
        expect(ours.contentDigest).toBe(theirs.digest);
        expect(Buffer.from(ours.body).equals(Buffer.from(chunk?.body ?? []))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('serialises in slices and gives the same body for a report of many large findings', async () => {
    const big: Report = { metadata: { tool: 't' }, findings: Array.from({ length: 3000 }, (_, i) => ({ id: `F-${i}`, detail: 'é'.repeat(i % 700), when: new Date(i * 1000) })), assets: [] };
    const ours = await encodeWholeReport(big);
    const theirs = await encodeReport(big, settings, undefined);
    expect(ours.sha256).toBe(theirs.chunks[0]?.sha256);
    expect(ours.contentDigest).toBe(theirs.digest);
  });
});

describe('encodeWholeReport() slices', () => {
  it('never serialises much more than a slice in one JSON.stringify, even when items grow after small ones', async () => {
    const findings = [...Array.from({ length: 16 }, (_, i) => ({ id: i })), ...Array.from({ length: 1900 }, (_, i) => ({ id: `big-${i}`, blob: 'x'.repeat(20_000) }))];
    const real = JSON.stringify;
    let longest = 0;
    const spy = vi.spyOn(JSON, 'stringify').mockImplementation((...args: Parameters<typeof JSON.stringify>) => {
      const out = real(...args);
      longest = Math.max(longest, out?.length ?? 0);
      return out;
    });
    try {
      const outbox = idle();
      expect(await outbox.encodeWholeReport({ findings })).toBeUndefined(); // the outbox would split it (over 2 MiB)
      expect(longest).toBeLessThan(256 * 1024);
      longest = 0;
      await encodeWholeReport({ findings }); // no limit: the whole 38 MB, still a slice at a time
      expect(longest).toBeLessThan(256 * 1024);
    } finally {
      spy.mockRestore();
    }
  });

  it('ignores a toJSON of the findings array itself, as the outbox does', async () => {
    const findings = Object.assign([{ a: 1 }, { b: 2 }], { toJSON: () => 'oops' });
    const ours = await encodeWholeReport({ findings });
    const settings = { ...chunkManagerDefaults, findingAssetIds: defaultFindingAssetIds };
    const theirs = await encodeReport({ findings }, settings, undefined);
    expect(ours.sha256).toBe(theirs.chunks[0]?.sha256);
    expect((await decompress(Buffer.from(ours.body))).toString()).toBe('{"findings":[{"a":1},{"b":2}],"assets":[]}');
  });
});

describe('ChunkManager.submitEncodedReports', () => {
  it('stores a batch in one go and settles each entry on its own', async () => {
    const { m } = await open({}, true);
    const body = async (n: number, tag: string): Promise<WholeReportBody> => (await m.encodeWholeReport(makeReport(n, 1, tag.length))) as WholeReportBody;
    await m.submitReport(makeReport(7, 1), { tenantId: 't', reportId: 'taken' });
    const aborted = new AbortController();
    aborted.abort(new Error('never mind'));
    const good = [await body(2, 'a'), await body(3, 'bb'), await body(4, 'ccc')];
    const results = await m.submitEncodedReports([
      { body: good[0] as WholeReportBody, options: { tenantId: 't', reportId: 'one' } },
      { body: { ...(good[1] as WholeReportBody) }, options: { tenantId: 't', reportId: 'copy' } },
      { body: good[1] as WholeReportBody, options: { tenantId: 't', reportId: 'taken' } },
      { body: good[2] as WholeReportBody, options: { tenantId: 't', reportId: 'two', priority: 5 } },
      { body: good[2] as WholeReportBody, options: { tenantId: 'bad tenant' } },
      { body: good[0] as WholeReportBody, options: { tenantId: 't', reportId: 'one' } },
    ]);
    expect(results[0]).toMatchObject({ reportId: 'one', chunked: false, totalChunks: 1, duplicate: false });
    expect(results[1]).toBeInstanceOf(InvalidArgumentError);
    expect(results[2]).toMatchObject({ code: 'OUTPOST_REPORT_CONFLICT' });
    expect(results[3]).toMatchObject({ reportId: 'two', duplicate: false });
    expect(results[4]).toBeInstanceOf(InvalidArgumentError);
    expect(results[5]).toMatchObject({ reportId: 'one', duplicate: true });
    expect(m.getReport('t', 'one')).toMatchObject({ chunked: false });
    expect(m.getReport('t', 'two')).toMatchObject({ priority: 5 });
    expect(m.getReport('t', 'copy')).toBeUndefined();
    const late = await m.submitEncodedReports([{ body: good[0] as WholeReportBody, options: { tenantId: 't', reportId: 'late', signal: aborted.signal } }]);
    expect(late[0]).toMatchObject({ message: 'never mind' });
    expect(m.getReport('t', 'late')).toBeUndefined();
  });

  it('stores what fits when the batch does not fit under maxStorageMB, and refuses only the rest', async () => {
    const { m } = await open({ maxStorageMB: 1 }, true);
    const big = async (i: number): Promise<WholeReportBody> => (await encodeWholeReport({ findings: [{ id: i, blob: randomHex(100_000) }] })) as WholeReportBody;
    const first = await big(0);
    await m.submitEncodedReport(first, { tenantId: 't', reportId: 'big-0' });
    const entries = [{ body: first, options: { tenantId: 't', reportId: 'big-0' } }];
    for (let i = 1; i < 12; i++) entries.push({ body: await big(i), options: { tenantId: 't', reportId: `big-${i}` } });
    const results = await m.submitEncodedReports(entries);
    expect(results[0]).toMatchObject({ reportId: 'big-0', duplicate: true }); // already stored: needs no room
    const stored = results.filter((r) => !(r instanceof Error));
    const refused = results.filter((r) => r instanceof Error);
    expect(stored.length).toBeGreaterThan(3);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r).toMatchObject({ code: 'OUTPOST_STORAGE_FULL' });
    expect(m.stats().reports.pending).toBe(stored.length);
  });

  it('works only while the outbox is running', async () => {
    const m = idle();
    await expect(m.submitEncodedReports([])).rejects.toBeInstanceOf(IllegalStateError);
  });
});

/** `bytes` bytes of random data as hex (does not compress). */
function randomHex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}
