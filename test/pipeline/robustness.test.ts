/**
 * The pipeline under awkward callers and awkward loads: listeners that abort
 * or stop, shared signals, bursts past the byte bound, stale queue entries,
 * uploaders that fail in unusual ways, and an outbox that is not there.
 */
import { randomBytes } from 'node:crypto';
import { getEventListeners } from 'node:events';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkManager } from '../../src/chunk/index.js';
import { IllegalStateError, InvalidArgumentError, InvalidOptionError, PipelineStoppedError, QueueFullError, UploadError } from '../../src/errors.js';
import { UploadPipeline } from '../../src/pipeline/index.js';
import { ScriptedUploader, unavailable } from '../helpers/chunk.js';
import { startIngest, tempDir, type IngestFixture } from '../helpers/ingest.js';
import { DeferredUploader, OK, Pipelines, smallReport, until } from './helpers.js';

const pipelines = new Pipelines();
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  await pipelines.closeAll();
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An uploader for the outbox that keeps everything pending (so stored reports stay visible). */
function holding(): ScriptedUploader {
  const up = new ScriptedUploader();
  up.fail = () => unavailable(3_600_000);
  return up;
}

async function outboxOn(uploader = holding(), start = true): Promise<ChunkManager> {
  const t = tempDir();
  const outbox = new ChunkManager({ uploader, databasePath: join(t.dir, 'chunks.db'), cleanupIntervalMinutes: 0 });
  cleanups.push(t.cleanup, () => outbox.close());
  if (start) await outbox.start();
  return outbox;
}

async function ingest(): Promise<IngestFixture> {
  const fixture = await startIngest();
  cleanups.push(() => fixture.close());
  return fixture;
}

/** A report whose body does not compress: `kib` KiB of random hex. */
function incompressible(kib: number, tag: string): { metadata: { tag: string }; findings: { id: string; blob: string }[] } {
  return { metadata: { tag }, findings: [{ id: tag, blob: randomBytes(kib * 512).toString('hex') }] };
}

describe('listeners that act inside submit()', () => {
  it('ends a report aborted by a `submitted` listener exactly once, also when the queue is full and it would spill', async () => {
    const outbox = await outboxOn();
    const uploader = new DeferredUploader();
    const { p, rec } = pipelines.open({ uploader, outbox, tenantId: 't', queueSize: 1 });
    p.submit(smallReport(1, 'first')); // fills the queue
    const controller = new AbortController();
    p.once('submitted', () => controller.abort(new Error('changed my mind')));
    const id = p.submit(smallReport(1, 'second'), { signal: controller.signal });
    await until(() => rec.outcome(id) !== undefined);
    await new Promise((r) => setTimeout(r, 50));
    expect(rec.terminals(id).map((e) => [e.event, e.args[1]])).toEqual([['failed', 'aborted']]);
    expect(outbox.getReport('t', id)).toBeUndefined();
  });

  it('ends a report exactly once when a `submitted` listener stops the pipeline', async () => {
    const outbox = await outboxOn();
    const { p, rec } = pipelines.open({ uploader: new DeferredUploader(), outbox, tenantId: 't', queueSize: 1 });
    p.submit(smallReport(1, 'first'));
    let stopping: Promise<void> | undefined;
    p.once('submitted', () => {
      stopping = p.stop({ timeoutMs: 0 });
    });
    const id = p.submit(smallReport(1, 'second'));
    await stopping;
    expect(rec.terminals(id).map((e) => [e.event, e.args[0]])).toEqual([['spilled', 'stopped']]);
    expect(p.stats().spilled).toBe(2);
  });
});

describe('caller signals', () => {
  it('adds one abort listener to a signal shared by many reports, and removes it when they settle', async () => {
    const uploader = new DeferredUploader();
    uploader.answer = () => OK;
    const { p } = pipelines.open({ uploader, tenantId: 't' });
    const scan = new AbortController();
    for (let i = 0; i < 50; i++) p.submit(smallReport(1, `s${i}`), { signal: scan.signal });
    expect(getEventListeners(scan.signal, 'abort')).toHaveLength(1);
    await p.flush();
    expect(getEventListeners(scan.signal, 'abort')).toHaveLength(0);
  });

  it('fails every live report of a shared signal with reason aborted when it aborts', async () => {
    const uploader = new DeferredUploader();
    const { p, rec } = pipelines.open({ uploader, tenantId: 't', workers: 2 });
    const scan = new AbortController();
    const ids = Array.from({ length: 10 }, (_, i) => p.submit(smallReport(1, `a${i}`), { signal: scan.signal }));
    await until(() => uploader.calls.length === 2);
    scan.abort(new Error('scan cancelled'));
    await p.flush();
    for (const id of ids) expect(rec.ended(id)).toEqual(['failed', 'aborted']);
    expect(uploader.calls.every((c) => c.signal.aborted)).toBe(true);
  });
});

describe('the byte bound', () => {
  it('holds against a burst of submissions without an outbox: the encoder waits for room', async () => {
    const uploader = new DeferredUploader();
    const maxQueueBytes = 256 * 1024;
    const { p, rec } = pipelines.open({ uploader, tenantId: 't', workers: 1, maxQueueBytes, queueSize: 100 });
    let peak = 0;
    const watch = (): void => {
      peak = Math.max(peak, p.stats().queuedBytes);
    };
    for (const event of ['started', 'completed', 'retry'] as const) p.on(event, watch);
    const ids = Array.from({ length: 40 }, (_, i) => p.submit(incompressible(32, `b${i}`)));
    // 40 × 32 KiB would be 1.25 MiB; the encoder stops once 256 KiB are held.
    await until(() => uploader.calls.length === 1 && p.stats().queuedBytes >= maxQueueBytes);
    await new Promise((r) => setTimeout(r, 50));
    watch();
    expect(p.stats().queued).toBeGreaterThan(20); // most still wait, unencoded
    expect(() => p.submit(smallReport(1, 'more'))).toThrow(QueueFullError);
    uploader.answer = () => OK;
    for (const call of uploader.pending()) call.resolve();
    await p.flush();
    // At most ENCODE_AHEAD (4) bodies past the bound: those in the encoder when it was reached.
    expect(peak).toBeLessThanOrEqual(maxQueueBytes + 4 * 33 * 1024);
    for (const id of ids) expect(rec.ended(id)).toEqual(['completed', undefined]);
  });

  it('spills what the encoder measures past the bound to the outbox', async () => {
    const outbox = await outboxOn();
    const uploader = new DeferredUploader();
    const { p, rec } = pipelines.open({ uploader, outbox, tenantId: 't', workers: 1, maxQueueBytes: 40 * 1024 });
    const ids = Array.from({ length: 10 }, (_, i) => p.submit(incompressible(32, `o${i}`)));
    await until(() => rec.of('spilled').length >= 6);
    expect(rec.of('spilled').every((e) => e.args[0] === 'queue-full')).toBe(true);
    expect(p.stats().queuedBytes).toBeLessThanOrEqual(40 * 1024);
    for (const e of rec.of('spilled')) expect(outbox.getReport('t', e.id)).toBeDefined();
    uploader.answer = () => OK;
    for (const call of uploader.pending()) call.resolve();
    await p.flush();
    expect(ids.every((id) => rec.outcome(id) !== undefined)).toBe(true);
  });

  it('throws QueueFullError when the queue is full and the outbox is not running yet', async () => {
    const outbox = await outboxOn(new ScriptedUploader(), false);
    const p = new UploadPipeline({ uploader: new DeferredUploader(), outbox, tenantId: 't', queueSize: 1 });
    p.submit(smallReport());
    expect(() => p.submit(smallReport())).toThrow(QueueFullError);
    await outbox.start();
    p.start();
    await p.stop({ timeoutMs: 0 });
    expect(p.stats()).toMatchObject({ submitted: 1, spilled: 1 });
  });
});

describe('the upload queue', () => {
  it('keeps priority and submission order after stale entries of aborted reports are compacted away', async () => {
    const uploader = new DeferredUploader();
    const { p } = pipelines.open({ uploader, tenantId: 't', workers: 1, queueSize: 5000 });
    p.submit(smallReport(1, 'blocker'), { reportId: 'blocker' });
    await until(() => uploader.calls.length === 1);
    const doomed = new AbortController();
    const kept: { id: string; priority: number }[] = [];
    for (let i = 0; i < 1500; i++) {
      const priority = i % 3;
      const mine = i % 5 === 0;
      const id = p.submit(smallReport(1, `q${i}`), { priority, reportId: `q${i}`, ...(mine ? {} : { signal: doomed.signal }) });
      if (mine) kept.push({ id, priority });
    }
    await until(() => p.stats().queued === 1500 && p.stats().encoding === 0, 'all encoded', 20_000);
    doomed.abort(new Error('drop them'));
    expect(p.stats().queued).toBe(kept.length);
    uploader.answer = () => OK;
    uploader.calls[0]?.resolve();
    await p.flush();
    const expected = [...kept].sort((a, b) => b.priority - a.priority || Number(a.id.slice(1)) - Number(b.id.slice(1))).map((k) => k.id);
    expect(uploader.order().slice(1)).toEqual(expected);
  });
});

describe('uploaders that fail in unusual ways', () => {
  class Broken extends DeferredUploader {
    override uploadReport(): Promise<never> {
      throw new TypeError('uploader bug');
    }
  }

  it('sends a report whose uploader throws a non-upload error to the outbox (uploader-error)', async () => {
    const outbox = await outboxOn();
    const { p, rec } = pipelines.open({ uploader: new Broken(), outbox, tenantId: 't' });
    const id = p.submit(smallReport());
    const end = await rec.settled(id);
    expect([end.event, end.args[0]]).toEqual(['spilled', 'uploader-error']);
    expect(outbox.getReport('t', id)).toBeDefined();
  });

  it('fails it with reason rejected when there is no outbox', async () => {
    const { p, rec } = pipelines.open({ uploader: new Broken(), tenantId: 't' });
    const id = p.submit(smallReport());
    const end = await rec.settled(id);
    expect([end.event, end.args[1]]).toEqual(['failed', 'rejected']);
    expect(end.args[0]).toBeInstanceOf(TypeError);
  });

  it('reports a spill the outbox refuses as spill-failed, and an unserialisable one as invalid', async () => {
    const outbox = await outboxOn();
    await outbox.submitReport(smallReport(2, 'stored'), { tenantId: 't', reportId: 'taken' });
    const { p, rec } = pipelines.open({ uploader: new DeferredUploader(), outbox, tenantId: 't', queueSize: 2 });
    p.submit(smallReport(1, 'holder-1'));
    p.submit(smallReport(1, 'holder-2'));
    // The queue is full, so both go straight to the outbox.
    const bad = p.submit({ findings: [{ id: 1n }] });
    const conflict = p.submit(smallReport(1, 'different'), { reportId: 'taken' });
    const [badEnd, conflictEnd] = [await rec.settled(bad), await rec.settled(conflict)];
    expect([badEnd.event, badEnd.args[1]]).toEqual(['failed', 'invalid']);
    expect([conflictEnd.event, conflictEnd.args[1]]).toEqual(['failed', 'spill-failed']);
    expect(conflictEnd.args[0]).toMatchObject({ code: 'OUTPOST_REPORT_CONFLICT' });
  });
});

describe('ids, views and arguments', () => {
  it('accepts the same report id for two tenants and refuses it twice for one', async () => {
    const p = new UploadPipeline({ uploader: new DeferredUploader() });
    p.submit(smallReport(), { tenantId: 'a', reportId: 'same' });
    p.submit(smallReport(), { tenantId: 'b', reportId: 'same' });
    expect(() => p.submit(smallReport(), { tenantId: 'a', reportId: 'same' })).toThrow(InvalidArgumentError);
    const ends: string[] = [];
    p.on('failed', (item, _error, reason) => ends.push(`${item.tenantId}/${item.id} ${reason}`));
    await p.close();
    expect(ends.sort()).toEqual(['a/same stopped', 'b/same stopped']);
  });

  it('gives listeners a read-only view that logs as a snapshot', async () => {
    const uploader = new DeferredUploader();
    uploader.answer = () => OK;
    const { p, rec } = pipelines.open({ uploader, tenantId: 't' });
    const id = p.submit(smallReport(), { jobId: 'job-1', priority: 4 });
    const end = await rec.settled(id);
    const view = end.item as unknown as Record<string, unknown>;
    expect(() => {
      view['attempts'] = 99;
    }).toThrow(TypeError);
    expect(JSON.parse(JSON.stringify(end.item))).toMatchObject({ id, tenantId: 't', jobId: 'job-1', priority: 4, attempts: 1 });
    expect(Object.keys(view)).not.toContain('report');
  });

  it('rejects findings or assets that are not arrays at submit()', () => {
    const { p } = pipelines.open({ uploader: new DeferredUploader(), tenantId: 't' }, false);
    expect(() => p.submit({ findings: 'x' as unknown as unknown[] })).toThrow(/`findings` must be an array/);
    expect(() => p.submit({ assets: {} as unknown as unknown[] })).toThrow(/`assets` must be an array/);
    expect(() => p.submit(smallReport(), { jobId: 'j'.repeat(300) })).toThrow(/got 300 characters/);
  });

  it('rejects a bad stop timeout as a rejected promise, and a compression level that differs from the outbox', async () => {
    const { p } = pipelines.open({ uploader: new DeferredUploader(), tenantId: 't' }, false);
    await expect(p.stop({ timeoutMs: -1 })).rejects.toBeInstanceOf(InvalidOptionError);
    const outbox = await outboxOn();
    expect(() => new UploadPipeline({ uploader: new DeferredUploader(), outbox, compressionLevel: 9 })).toThrow(/differs from the outbox/);
    expect(() => new UploadPipeline({ uploader: new DeferredUploader(), outbox, compressionLevel: 3 })).not.toThrow();
  });

  it('refuses to start before its outbox', async () => {
    const outbox = await outboxOn(new ScriptedUploader(), false);
    const p = new UploadPipeline({ uploader: new DeferredUploader(), outbox });
    expect(() => p.start()).toThrow(IllegalStateError);
    await p.close();
  });
});

describe('bodies on the wire', () => {
  it('delivers a report zstd would compress past 100:1 (sent as identity) and a large report without an outbox', async () => {
    const server = await ingest();
    const uploader = server.client();
    const { p, rec } = pipelines.open({ uploader, tenantId: 'tenant-a' });
    const compressible = p.submit({ metadata: { tool: 'x' }, findings: [{ id: 1, detail: 'a'.repeat(2_000_000) }] });
    const large = p.submit({ findings: Array.from({ length: 5000 }, (_, i) => ({ id: `F-${i}`, rule: 'r' })), assets: [] });
    await p.flush();
    expect(rec.ended(compressible)).toEqual(['completed', undefined]);
    expect(rec.ended(large)).toEqual(['completed', undefined]);
    expect(server.delivered.map((d) => d.info.reportId).sort()).toEqual([compressible, large].sort());
  });

  it('fails an upload rejected for good without retrying it, and names the error', async () => {
    const uploader = new DeferredUploader();
    uploader.answer = () => new UploadError('OUTPOST_UPLOAD_HTTP_STATUS', 'bad', { retryable: false, status: 400 });
    const { p, rec } = pipelines.open({ uploader, tenantId: 't' });
    const id = p.submit(smallReport());
    const end = await rec.settled(id);
    expect(end.args[1]).toBe('rejected');
    expect(uploader.of(id)).toHaveLength(1);
    expect(end.args[0]).not.toBeInstanceOf(PipelineStoppedError);
  });
});

describe('custom uploaders that break the contract', () => {
  for (const [what, answer] of [
    ['undefined', (): unknown => undefined],
    ['a plain object, not a promise', (): unknown => ({ status: 201 })],
    ['a bare thenable', (): unknown => ({ then: (ok: (v: unknown) => void) => ok('not a result') })],
  ] as const) {
    it(`settles a report whose uploader returns ${what} (never crashes, never hangs)`, async () => {
      const outbox = await outboxOn();
      const uploader = { uploadChunk: () => Promise.reject(new Error('unused')), uploadReport: answer } as unknown as DeferredUploader;
      const { p, rec } = pipelines.open({ uploader, outbox, tenantId: 't' });
      const id = p.submit(smallReport());
      const end = await rec.settled(id);
      if (what === 'a plain object, not a promise') expect(end.event).toBe('completed');
      else expect([end.event, end.args[0]]).toEqual(['spilled', 'uploader-error']);
      await p.stop({ timeoutMs: 0 });
      expect(p.state).toBe('closed');
    });
  }

  it('does not lose a caller abort that happens inside the uploader call itself', async () => {
    const controller = new AbortController();
    const uploader = {
      uploadChunk: () => Promise.reject(new Error('unused')),
      uploadReport: (_u: unknown, options: { signal: AbortSignal }) => {
        controller.abort(new Error('aborted while sending'));
        return new Promise((_ok, fail) => {
          if (options.signal.aborted) fail(options.signal.reason);
          options.signal.addEventListener('abort', () => fail(options.signal.reason), { once: true });
        });
      },
    } as unknown as DeferredUploader;
    const { p, rec } = pipelines.open({ uploader, tenantId: 't', uploadTimeoutMs: 60_000 });
    const id = p.submit(smallReport(), { signal: controller.signal });
    const end = await rec.settled(id);
    expect([end.event, end.args[1]]).toEqual(['failed', 'aborted']);
  });

  it('treats a null options argument to stop() and flush() as none', async () => {
    const { p } = pipelines.open({ uploader: new DeferredUploader(), tenantId: 't' });
    await p.flush(null as unknown as undefined);
    await p.stop(null as unknown as undefined);
    expect(p.state).toBe('closed');
  });
});

describe('spilling reports with no items', () => {
  it('stores a report of no findings and a head past the size limit whole, as the outbox itself would', async () => {
    const outbox = await outboxOn();
    const uploader = new DeferredUploader();
    uploader.answer = () => new UploadError('OUTPOST_UPLOAD_HTTP_STATUS', 'busy', { retryable: true, status: 503 });
    const { p, rec } = pipelines.open({ uploader, outbox, tenantId: 't', retryAttempts: 0 });
    const id = p.submit({ metadata: { blob: 'x'.repeat(3 * 1024 * 1024) } });
    const end = await rec.settled(id);
    expect([end.event, end.args[0]]).toEqual(['spilled', 'retries-exhausted']);
    expect(outbox.getReport('t', id)).toMatchObject({ chunked: false, totalChunks: 1 });
  });
});

describe('spilling a full queue at stop()', () => {
  it('spills 600 queued reports in batches, each once, and the outbox holds every one', async () => {
    const outbox = await outboxOn();
    const uploader = new DeferredUploader();
    const { p, rec } = pipelines.open({ uploader, outbox, tenantId: 't', workers: 1, queueSize: 1000 });
    const own = new AbortController();
    const ids = Array.from({ length: 600 }, (_, i) => p.submit(smallReport(2, `f${i}`), i === 300 ? { signal: own.signal } : {}));
    await until(() => p.stats().encoding === 0 && uploader.calls.length === 1, 'all encoded', 20_000);
    const stopping = p.stop({ timeoutMs: 0 });
    own.abort(new Error('not this one')); // while its batch waits for its turn
    await stopping;
    const aborted = ids[300] as string;
    expect(rec.ended(aborted)).toEqual(['failed', 'aborted']);
    for (const id of ids) {
      if (id === aborted) continue;
      expect(rec.terminals(id)).toHaveLength(1);
      expect(rec.ended(id)?.[0]).toBe('spilled');
      expect(outbox.getReport('t', id)).toBeDefined();
    }
    expect(outbox.getReport('t', aborted)).toBeUndefined();
    expect(p.stats()).toMatchObject({ submitted: 600, spilled: 599, failed: 1, queued: 0, inProgress: 0 });
  });

  it('keeps every report that fits when a batch is too big for a small outbox', async () => {
    const t = tempDir();
    const outbox = new ChunkManager({ uploader: holding(), databasePath: join(t.dir, 'small.db'), cleanupIntervalMinutes: 0, maxStorageMB: 1 });
    cleanups.push(t.cleanup, () => outbox.close());
    await outbox.start();
    const uploader = new DeferredUploader();
    const { p, rec } = pipelines.open({ uploader, outbox, tenantId: 't', workers: 1 });
    const ids = Array.from({ length: 30 }, (_, i) => p.submit(incompressible(80, `s${i}`))); // ~41 KB stored each: 30 do not fit in 1 MiB
    await until(() => p.stats().encoding === 0 && uploader.calls.length === 1, 'all encoded', 20_000);
    await p.stop({ timeoutMs: 0 });
    const spilled = ids.filter((id) => rec.ended(id)?.[0] === 'spilled');
    const failed = ids.filter((id) => rec.ended(id)?.[0] === 'failed');
    expect(spilled.length).toBeGreaterThanOrEqual(15); // all but the few that do not fit (a whole-batch refusal kept 2)
    expect(failed.length).toBeGreaterThan(0);
    expect(spilled.length + failed.length).toBe(30);
    for (const id of failed) expect(rec.outcome(id)?.args[0]).toMatchObject({ code: 'OUTPOST_STORAGE_FULL' });
    for (const id of spilled) expect(outbox.getReport('t', id)).toBeDefined();
  });
});
