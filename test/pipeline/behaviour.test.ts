import { getEventListeners } from 'node:events';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChunkManager } from '../../src/chunk/index.js';
import { IllegalStateError, PipelineStoppedError, UploadHttpError, UploadTimeoutError } from '../../src/errors.js';
import { UploadPipeline, type PipelineOptions } from '../../src/pipeline/index.js';
import { makeReport, ScriptedUploader, startManager, unavailable as unavailableFor } from '../helpers/chunk.js';
import { tempDir } from '../helpers/ingest.js';
import { DeferredUploader, OK, Pipelines, Recorder, settle, smallReport, until } from './helpers.js';

const pipelines = new Pipelines();

afterEach(async () => {
  await pipelines.closeAll();
  vi.useRealTimers();
});

const unavailable = (retryAfterMs?: number): UploadHttpError => new UploadHttpError(503, { retryable: true, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
const noJitter = { retryDelayMs: 5000, maxRetryDelayMs: 60_000, jitter: 'none' } as const;
/** When each call came, in ms after the first. */
const offsets = (u: DeferredUploader): number[] => u.calls.map((c) => c.at - (u.calls[0]?.at ?? 0));
/** A pipeline for tenant 't' over a {@link DeferredUploader} answering with `answer` (a call stays pending when it gives undefined). */
function open(options: Omit<PipelineOptions, 'uploader'> = {}, answer?: DeferredUploader['answer'], start = true) {
  const uploader = new DeferredUploader();
  if (answer !== undefined) uploader.answer = answer;
  return { uploader, ...pipelines.open({ uploader, tenantId: 't', ...options }, start) };
}
/** Whether every live report has been encoded (and so queued). */
const encoded = (rec: Recorder): boolean => rec.of('submitted').every((e) => e.item.bodyBytes !== undefined || rec.outcome(e.id) !== undefined);

describe('UploadPipeline with fake timers', () => {
  beforeEach(() => vi.useFakeTimers());

  it('returns an id from submit() at once, emits submitted inside it, and uploads nothing before it returns', async () => {
    const { p, rec, uploader } = open({}, () => OK);
    let insideSubmit = false;
    const seenInside: boolean[] = [];
    p.on('submitted', () => seenInside.push(insideSubmit));
    insideSubmit = true;
    const id = p.submit(smallReport());
    insideSubmit = false;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(seenInside).toEqual([true]);
    expect(uploader.calls).toHaveLength(0);
    expect(rec.of('submitted')[0]?.item.bodyBytes).toBeUndefined(); // not even serialised yet
    expect(p.stats()).toMatchObject({ submitted: 1, queued: 1, uploading: 0 });
    const ac = new AbortController();
    expect(p.submit(smallReport(), { reportId: 'mine', signal: ac.signal })).toBe('mine');
    await Promise.all([rec.settled(id), rec.settled('mine')]);
    expect(uploader.order()).toEqual([id, 'mine']);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0); // the settled report lets go of the caller's signal
  });

  it('uploads higher priorities first and equal priorities in submission order', async () => {
    const { p, rec, uploader } = open({ workers: 1 });
    p.submit(smallReport(), { reportId: 'blocker' });
    await until(() => uploader.calls.length === 1, 'the blocker to hold the only worker');
    for (const [reportId, priority] of [['low-1', 0], ['high-1', 5], ['mid', 2], ['low-2', 0], ['high-2', 5], ['neg', -1]] as const) p.submit(smallReport(), { reportId, priority });
    await until(() => encoded(rec), 'every report to be queued');
    uploader.answer = () => OK;
    uploader.calls[0]?.resolve();
    await until(() => rec.of('completed').length === 7, 'seven completions');
    expect(uploader.order()).toEqual(['blocker', 'high-1', 'high-2', 'mid', 'low-1', 'low-2', 'neg']);
  });

  it('keeps the priority order when most queued reports are aborted and the queue is rebuilt without them', async () => {
    const { p, rec, uploader } = open({ workers: 1, queueSize: 2000 });
    p.submit(smallReport(), { reportId: 'blocker' });
    await until(() => uploader.calls.length === 1, 'the blocker to hold the only worker');
    const scan = new AbortController();
    p.submit(smallReport(), { reportId: 'low-1' });
    p.submit(smallReport(), { reportId: 'high-1', priority: 5 });
    for (let i = 0; i < 1100; i++) p.submit(smallReport(), { reportId: `gone-${i}`, priority: i % 3, signal: scan.signal });
    for (const [reportId, priority] of [['high-2', 5], ['mid', 1], ['low-2', 0]] as const) p.submit(smallReport(), { reportId, priority });
    await until(() => encoded(rec), 'every report to be queued', 15_000);
    scan.abort(new Error('scan cancelled'));
    expect(rec.of('failed').map((e) => e.args[1])).toEqual(Array(1100).fill('aborted'));
    uploader.answer = () => OK;
    uploader.calls[0]?.resolve();
    await until(() => rec.of('completed').length === 6, 'six completions');
    expect(uploader.order()).toEqual(['blocker', 'high-1', 'high-2', 'mid', 'low-1', 'low-2']);
  });

  it('retries on the backoff schedule: 5 s, 10 s, 20 s, then capped by maxRetryDelayMs, then retries-exhausted', async () => {
    const { p, rec, uploader } = open({ retryAttempts: 4, retryPolicy: { ...noJitter, maxRetryDelayMs: 25_000 } }, () => unavailable());
    const id = p.submit(smallReport());
    await until(() => uploader.calls.length === 1, 'the first attempt');
    await vi.advanceTimersByTimeAsync(4_999);
    expect(uploader.calls).toHaveLength(1);
    expect(p.stats()).toMatchObject({ retrying: 1, uploading: 0 });
    await vi.advanceTimersByTimeAsync(1);
    expect(uploader.calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(100_000);
    expect(rec.of('retry').map((e) => e.args.slice(1))).toEqual([[1, 5000], [2, 10_000], [3, 20_000], [4, 25_000]]);
    expect(offsets(uploader)).toEqual([0, 5000, 15_000, 35_000, 60_000]);
    expect(rec.ended(id)).toEqual(['failed', 'retries-exhausted']);
  });

  it('draws full-jitter delays as random × ceiling', async () => {
    const draws = [0.5, 0.25, 0.999];
    const { p, rec, uploader } = open({ retryPolicy: { retryDelayMs: 5000, maxRetryDelayMs: 60_000, random: () => draws.shift() ?? 0 } }, () => unavailable());
    const id = p.submit(smallReport());
    await until(() => uploader.calls.length === 1, 'the first attempt');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(rec.of('retry').map((e) => e.args[2])).toEqual([2500, 2500, 19_980]);
    expect(offsets(uploader)).toEqual([0, 2500, 5000, 24_980]);
    expect(rec.ended(id)).toEqual(['failed', 'retries-exhausted']);
  });

  it('holds no worker during the backoff: another report uploads while one waits for its retry', async () => {
    const { p, rec, uploader } = open({ workers: 1, retryPolicy: noJitter }, (c) => (c.reportId === 'flaky' && c.attempt === 1 ? unavailable() : undefined));
    p.submit(smallReport(), { reportId: 'flaky' });
    await until(() => rec.of('retry').length === 1, 'the retry');
    p.submit(smallReport(), { reportId: 'other' });
    await until(() => uploader.of('other').length === 1, 'the other report to upload');
    expect(uploader.of('other')[0]!.at - uploader.of('flaky')[0]!.at).toBeLessThan(5000);
    expect(p.stats()).toMatchObject({ retrying: 1, uploading: 1 });
    uploader.answer = () => OK;
    uploader.of('other')[0]!.resolve();
    await vi.advanceTimersByTimeAsync(5000);
    await Promise.all([rec.settled('flaky'), rec.settled('other')]);
    expect(uploader.order()).toEqual(['flaky', 'other', 'flaky']);
  });

  it('waits the Retry-After of a 503 or 429 instead of the backoff', async () => {
    const answers = [unavailable(12_345), new UploadHttpError(429, { retryable: true, retryAfterMs: 700 }), OK];
    const { p, rec, uploader } = open({ retryPolicy: noJitter }, () => answers.shift());
    const id = p.submit(smallReport());
    await until(() => uploader.calls.length === 1, 'the first attempt');
    await vi.advanceTimersByTimeAsync(20_000);
    expect(rec.of('retry').map((e) => e.args[2])).toEqual([12_345, 700]);
    expect(offsets(uploader)).toEqual([0, 12_345, 13_045]);
    expect(rec.ended(id)?.[0]).toBe('completed');
  });

  it.each([
    ['a 400', new UploadHttpError(400, { retryable: false }), 'rejected'],
    ['a 404', new UploadHttpError(404, { retryable: false }), 'rejected'],
    ['a 401', new UploadHttpError(401, { retryable: false }), 'unauthorized'],
    ['a 403', new UploadHttpError(403, { retryable: false }), 'unauthorized'],
    ['an error that is not an upload failure', new TypeError('bug in the uploader'), 'rejected'],
  ] as const)('fails %s at once with reason %s, without a retry', async (_, error, reason) => {
    const { p, rec, uploader } = open({}, () => error);
    expect((await rec.settled(p.submit(smallReport()))).args).toEqual([error, reason]);
    expect(uploader.calls).toHaveLength(1);
    expect(rec.of('retry')).toHaveLength(0);
  });

  it('fails with retries-exhausted and the last error once the retries are used', async () => {
    const errors = [unavailable(), new UploadHttpError(502, { retryable: true }), unavailable()];
    const { p, rec, uploader } = open({ retryAttempts: 2, retryPolicy: noJitter }, (c) => errors[c.attempt - 1]);
    const id = p.submit(smallReport());
    await until(() => uploader.calls.length === 1, 'the first attempt');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(rec.of('retry').map((e) => e.args[0])).toEqual([errors[0], errors[1]]);
    expect(rec.outcome(id)?.args).toEqual([errors[2], 'retries-exhausted']);
  });

  it('aborts the uploader’s signal at the attempt timeout; an uploader ignoring it keeps its worker while the report retries', async () => {
    const { p, rec, uploader } = open({ workers: 1, uploadTimeoutMs: 1000, retryPolicy: { ...noJitter, retryDelayMs: 100 } });
    uploader.honourSignal = false;
    p.submit(smallReport(), { reportId: 'stuck' });
    p.submit(smallReport(), { reportId: 'other' });
    await until(() => uploader.calls.length === 1 && encoded(rec), 'the first upload');
    const stuck = uploader.calls[0]!;
    await vi.advanceTimersByTimeAsync(1000);
    expect(stuck.signal.reason).toBeInstanceOf(UploadTimeoutError);
    expect(rec.of('retry', 'stuck')[0]?.args.slice(0, 3)).toEqual([stuck.signal.reason, 1, 100]);
    await vi.advanceTimersByTimeAsync(500); // the retry is due, but the ignored call still holds the worker
    await settle();
    expect(uploader.calls).toHaveLength(1);
    expect(uploader.inFlight).toBe(1);
    expect(p.stats()).toMatchObject({ queued: 2, uploading: 0, retrying: 0 });
    uploader.answer = () => OK;
    stuck.resolve(); // its late answer frees the worker and settles nothing
    await Promise.all([rec.settled('stuck'), rec.settled('other')]);
    expect(uploader.order()).toEqual(['stuck', 'other', 'stuck']);
    expect(rec.outcome('stuck')?.item.attempts).toBe(2);
    expect(uploader.maxInFlight).toBe(1);
    expect(rec.violations).toEqual([]);
  });

  describe('the caller’s signal', () => {
    it('fails a report aborted while it waits for encoding or a worker, and never uploads it', async () => {
      const { p, rec, uploader } = open({ workers: 1 }, undefined, false);
      const early = new AbortController();
      p.submit(smallReport(), { reportId: 'early', signal: early.signal });
      early.abort(new Error('not needed'));
      expect(rec.outcome('early')?.args).toEqual([early.signal.reason, 'aborted']);
      p.start();
      p.submit(smallReport(), { reportId: 'blocker' });
      const queued = new AbortController();
      p.submit(smallReport(), { reportId: 'queued', signal: queued.signal });
      await until(() => uploader.calls.length === 1 && encoded(rec), 'the blocker to upload and the other to queue');
      queued.abort(new Error('changed my mind'));
      expect(rec.outcome('queued')?.args).toEqual([queued.signal.reason, 'aborted']);
      expect(p.stats()).toMatchObject({ queued: 0, failed: 2, queuedBytes: uploader.calls[0]!.upload.body.byteLength });
      uploader.calls[0]!.resolve();
      await rec.settled('blocker');
      await settle();
      expect(uploader.order()).toEqual(['blocker']);
    });

    it('aborts the uploader’s signal when aborted during the upload, and fails the report aborted', async () => {
      const { p, rec, uploader } = open();
      const ac = new AbortController();
      const id = p.submit(smallReport(), { signal: ac.signal });
      await until(() => uploader.calls.length === 1, 'the upload');
      const reason = new Error('cancelled');
      ac.abort(reason);
      expect(uploader.calls[0]!.signal.reason).toBe(reason);
      expect((await rec.settled(id)).args).toEqual([reason, 'aborted']);
      expect(rec.of('retry')).toHaveLength(0);
    });

    it('clears the retry timer when aborted during the backoff, and fails the report aborted', async () => {
      const { p, rec, uploader } = open({ retryPolicy: noJitter }, () => unavailable());
      const ac = new AbortController();
      const id = p.submit(smallReport(), { signal: ac.signal });
      await until(() => rec.of('retry').length === 1, 'the retry');
      const timers = vi.getTimerCount();
      ac.abort(new Error('cancelled'));
      expect(vi.getTimerCount()).toBe(timers - 1);
      expect(rec.outcome(id)?.args).toEqual([ac.signal.reason, 'aborted']);
      await vi.advanceTimersByTimeAsync(60_000);
      expect(uploader.calls).toHaveLength(1);
      expect(p.stats()).toMatchObject({ retrying: 0, failed: 1 });
    });

    it('makes submit() throw the reason of a signal already aborted, accepting nothing', () => {
      const { p, rec } = open();
      const reason = new Error('too late');
      expect(() => p.submit(smallReport(), { signal: AbortSignal.abort(reason) })).toThrow(reason);
      expect(rec.log).toHaveLength(0);
      expect(p.stats().submitted).toBe(0);
    });
  });

  describe('stop() without an outbox', () => {
    async function busy(stopTimeoutMs: number) {
      const { p, rec, uploader } = open({ workers: 1, stopTimeoutMs, retryPolicy: noJitter }, (c) => (c.reportId === 'retrying' ? unavailable() : undefined));
      p.submit(smallReport(), { reportId: 'retrying' });
      await until(() => rec.of('retry').length === 1, 'the retry');
      p.submit(smallReport(), { reportId: 'uploading' });
      p.submit(smallReport(), { reportId: 'queued' });
      await until(() => uploader.calls.length === 2 && encoded(rec), 'an upload in flight and one queued');
      let stopped = false;
      const stopping = p.stop().then(() => (stopped = true));
      expect(p.state).toBe('closing');
      for (const id of ['retrying', 'queued']) {
        expect(rec.ended(id)).toEqual(['failed', 'stopped']);
        expect(rec.outcome(id)?.args[0]).toBeInstanceOf(PipelineStoppedError);
      }
      expect(rec.outcome('uploading')).toBeUndefined();
      expect(() => p.submit(smallReport())).toThrow(IllegalStateError);
      return { p, rec, uploader, stopping, isStopped: () => stopped };
    }

    it('fails queued and retrying reports stopped at once, and lets the upload in flight finish', async () => {
      const { p, rec, uploader, stopping, isStopped } = await busy(10_000);
      await vi.advanceTimersByTimeAsync(9_000);
      expect(isStopped()).toBe(false);
      uploader.of('uploading')[0]!.resolve();
      await stopping;
      expect(vi.getTimerCount()).toBe(0); // the stop timeout is cleared once the upload settled
      expect(rec.ended('uploading')?.[0]).toBe('completed');
      expect(p.state).toBe('closed');
      expect(() => p.submit(smallReport())).toThrow(expect.objectContaining({ code: 'OUTPOST_ILLEGAL_STATE', state: 'closed' }));
      expect(uploader.calls).toHaveLength(2); // the retry never ran
    });

    it('aborts the upload in flight at the timeout and resolves only once it is settled', async () => {
      const { p, rec, uploader, stopping, isStopped } = await busy(2_000);
      await vi.advanceTimersByTimeAsync(1_999);
      expect(isStopped()).toBe(false);
      expect(p.stats()).toMatchObject({ uploading: 1 });
      await vi.advanceTimersByTimeAsync(1);
      expect(uploader.of('uploading')[0]!.signal.reason).toBeInstanceOf(PipelineStoppedError);
      await stopping;
      expect(rec.ended('uploading')).toEqual(['failed', 'stopped']);
      expect(p.stats()).toMatchObject({ submitted: 3, failed: 3, queued: 0, inProgress: 0, retrying: 0 });
      expect(rec.violations).toEqual([]);
    });
  });

  describe('flush() and onIdle()', () => {
    it('flush() resolves once the reports submitted before it are settled, whatever came later', async () => {
      const { p, uploader } = open();
      p.submit(smallReport(), { reportId: 'a' });
      p.submit(smallReport(), { reportId: 'b' });
      let flushed = false;
      const flushing = p.flush().then(() => (flushed = true));
      p.submit(smallReport(), { reportId: 'late' });
      await until(() => uploader.calls.length === 3, 'three uploads');
      uploader.of('a')[0]!.resolve();
      await settle();
      expect(flushed).toBe(false);
      uploader.of('b')[0]!.reject(new UploadHttpError(400, { retryable: false }));
      await flushing;
      expect(uploader.of('late')[0]!.settled).toBe(false);
    });

    it('flush() rejects with the signal’s reason; onIdle() resolves at once when idle and later once idle', async () => {
      const { p, uploader } = open();
      expect(await Promise.race([p.onIdle().then(() => 'idle'), Promise.resolve().then(() => 'later')])).toBe('idle');
      const reason = new Error('enough');
      p.submit(smallReport());
      await expect(p.flush({ signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
      const ac = new AbortController();
      const flushing = p.flush({ signal: ac.signal });
      ac.abort(reason);
      await expect(flushing).rejects.toBe(reason);
      let idle = false;
      const idling = p.onIdle().then(() => (idle = true));
      await until(() => uploader.calls.length === 1, 'the upload');
      expect(idle).toBe(false);
      uploader.calls[0]!.resolve();
      await idling;
    });
  });

  it('keeps submitted = queued + inProgress + retrying + completed + failed + spilled in every event', async () => {
    const { p, rec } = open({ workers: 2, uploadTimeoutMs: 3000, retryAttempts: 1, retryPolicy: noJitter }, (c) => {
      if (c.reportId.startsWith('flaky') && c.attempt === 1) return unavailable();
      if (c.reportId.startsWith('bad')) return new UploadHttpError(400, { retryable: false });
      return c.reportId.startsWith('slow') ? undefined : OK;
    });
    const ac = new AbortController();
    for (let i = 0; i < 4; i++) for (const kind of ['ok', 'flaky', 'bad', 'slow']) p.submit(smallReport(), { reportId: `${kind}-${i}`, ...(i === 3 ? { signal: ac.signal } : {}) });
    await until(() => rec.of('submitted').length === 16 && encoded(rec), 'every report to be encoded');
    for (let t = 0; t < 10; t++) await vi.advanceTimersByTimeAsync(2000);
    ac.abort(new Error('cancel the last round'));
    const stopping = p.stop({ timeoutMs: 1000 });
    await vi.advanceTimersByTimeAsync(1000);
    await stopping;
    expect(rec.violations).toEqual([]);
    for (const e of rec.of('submitted')) expect(rec.terminals(e.id)).toHaveLength(1);
    const s = p.stats();
    expect(s.completed + s.failed).toBe(16);
    expect(rec.of('retry').length).toBeGreaterThan(0);
  });

  describe('lifecycle', () => {
    it('start() is idempotent and sends what was submitted before it', async () => {
      const { p, rec, uploader } = open({}, () => OK, false);
      expect(p.state).toBe('idle');
      const id = p.submit(smallReport());
      await settle();
      expect(uploader.calls).toHaveLength(0);
      expect(p.start()).toBe(p);
      expect(p.start()).toBe(p);
      expect(p.state).toBe('running');
      await rec.settled(id);
      expect(uploader.calls).toHaveLength(1);
    });

    it('stop(), close() and asyncDispose return the same promise; start() after them throws', async () => {
      const { p } = open();
      const stopping = p.stop();
      expect(p.close()).toBe(stopping);
      expect(p[Symbol.asyncDispose]()).toBe(stopping);
      expect(() => p.start()).toThrow(expect.objectContaining({ code: 'OUTPOST_ILLEGAL_STATE', state: 'closing' }));
      await stopping;
      expect(p.state).toBe('closed');
      expect(p.stop()).toBe(stopping);
      expect(() => p.start()).toThrow(IllegalStateError);
    });

    it('closes on `await using`', async () => {
      const uploader = new DeferredUploader();
      uploader.answer = () => OK;
      let outside: UploadPipeline;
      {
        await using p = new UploadPipeline({ uploader, tenantId: 't' });
        outside = p.start();
        p.submit(smallReport());
        expect(p.state).toBe('running');
      }
      expect(outside.state).toBe('closed');
      expect(outside.stats()).toMatchObject({ submitted: 1, failed: 1 }); // stopped before it was encoded
    });

    it('leaves no timer behind after close, with a retry, an attempt timeout and the stop timeout armed', async () => {
      const { p, rec, uploader } = open({ retryPolicy: noJitter }, (c) => (c.reportId === 'retry' ? unavailable() : undefined));
      p.submit(smallReport(), { reportId: 'retry' });
      p.submit(smallReport(), { reportId: 'hang' });
      await until(() => rec.of('retry').length === 1 && uploader.of('hang').length === 1, 'a retry and an upload in flight');
      expect(vi.getTimerCount()).toBe(2);
      const closing = p.close();
      expect(vi.getTimerCount()).toBe(2); // the retry's timer is gone, the stop timeout came
      await vi.advanceTimersByTimeAsync(p.options.stopTimeoutMs);
      await closing;
      expect(vi.getTimerCount()).toBe(0);
    });
  });
});

describe('UploadPipeline with a real outbox', () => {
  let tmp: ReturnType<typeof tempDir>;
  let outbox: ChunkManager;
  beforeEach(async () => {
    tmp = tempDir();
    const stuck = new ScriptedUploader();
    stuck.fail = () => unavailableFor(3_600_000); // what the outbox holds stays there
    outbox = await startManager(tmp.dir, stuck);
  });
  afterEach(async () => {
    await pipelines.closeAll();
    await outbox.close();
    tmp.cleanup();
  });

  it('refuses to start while its outbox is not running', () => {
    const idle = new ChunkManager({ uploader: new ScriptedUploader(), databasePath: join(tmp.dir, 'idle.db') });
    const { p } = open({ outbox: idle }, undefined, false);
    expect(() => p.start()).toThrow(expect.objectContaining({ code: 'OUTPOST_ILLEGAL_STATE', message: expect.stringMatching(/outbox is idle/) }));
    expect(p.state).toBe('idle');
  });

  it('spills a report the full queue cannot take to the outbox, with reason queue-full', async () => {
    const onSpilled = vi.fn();
    const { p, rec } = open({ outbox, queueSize: 1, onSpilled }, undefined, false);
    p.submit(smallReport(), { reportId: 'held' });
    const id = p.submit(smallReport(), { reportId: 'spilled' });
    const end = await rec.settled(id);
    expect(onSpilled).toHaveBeenCalledExactlyOnceWith(end.item, 'queue-full', end.args[1]);
    expect(end).toMatchObject({ event: 'spilled', args: ['queue-full', { reportId: 'spilled', duplicate: false }] });
    expect(outbox.getReport('t', 'spilled')).toMatchObject({ state: 'pending', chunked: false });
    expect(outbox.getReport('t', 'held')).toBeUndefined();
    expect(p.stats()).toMatchObject({ submitted: 2, queued: 1, spilled: 1 });
    expect(rec.violations).toEqual([]);
  });

  it('spills reports the encoder measures past maxQueueBytes, with reason queue-full', async () => {
    const bytes = (await outbox.encodeWholeReport(smallReport()))!.body.byteLength;
    const { p, rec, uploader } = open({ outbox, maxQueueBytes: bytes + 1 });
    const ids = [0, 1, 2].map((i) => p.submit(smallReport(), { reportId: `r${i}` })); // all accepted: nothing measured yet
    await Promise.all([rec.settled('r1'), rec.settled('r2'), until(() => uploader.calls.length === 1, 'the first upload')]);
    expect(ids.slice(1).map((id) => rec.ended(id))).toEqual([['spilled', 'queue-full'], ['spilled', 'queue-full']]);
    expect(outbox.getReport('t', 'r2')).toMatchObject({ state: 'pending' });
    expect(uploader.order()).toEqual(['r0']);
    expect(p.stats()).toMatchObject({ queuedBytes: bytes, uploading: 1, spilled: 2 });
  });

  it('spills a report whose uploader fails with an error that is not an upload failure (uploader-error)', async () => {
    const { p, rec, uploader } = open({ outbox }, () => new TypeError('token source threw'));
    const id = p.submit(smallReport());
    expect(rec.ended(id)).toBeUndefined();
    expect((await rec.settled(id)).args[0]).toBe('uploader-error');
    expect(outbox.getReport('t', id)).toMatchObject({ state: 'pending' });
    expect(uploader.calls).toHaveLength(1);
  });

  it('hands a report the outbox would chunk to the outbox (large), never to the uploader', async () => {
    const { p, rec, uploader } = open({ outbox }, () => OK);
    const big = p.submit(makeReport(2000, 10));
    const small = p.submit(smallReport());
    const [bigEnd, smallEnd] = await Promise.all([rec.settled(big), rec.settled(small)]);
    expect(bigEnd).toMatchObject({ event: 'spilled', args: ['large', { reportId: big, totalChunks: 4 }] });
    expect(outbox.getReport('t', big)).toMatchObject({ chunked: true, state: 'pending' });
    expect(smallEnd.event).toBe('completed');
    expect(uploader.order()).toEqual([small]);
    expect(rec.of('started', big)).toHaveLength(0);
    expect(rec.violations).toEqual([]);
  });
});
