import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ChunkManager, encodeWholeReport } from '../../src/chunk/index.js';
import { InvalidArgumentError, InvalidOptionError, PipelineStoppedError, QueueFullError, UploadHttpError, UploadTimeoutError } from '../../src/errors.js';
import { zstdDecompress } from '../../src/internal/zstd.js';
import { pipelineDefaults, resolvePipelineOptions, UploadPipeline, type PipelineOptions } from '../../src/pipeline/index.js';
import { RetryPolicy } from '../../src/transport/index.js';
import { tempDir } from '../helpers/ingest.js';
import { DeferredUploader, OK, Pipelines, settle, smallReport, until } from './helpers.js';

const pipelines = new Pipelines();

afterEach(async () => {
  await pipelines.closeAll();
  vi.useRealTimers();
});

const unavailable = (): UploadHttpError => new UploadHttpError(503, { retryable: true });

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw');
}

describe('UploadPipeline options: validation', () => {
  const uploader = new DeferredUploader();
  const bad: [keyof PipelineOptions, unknown, RegExp][] = [
    ['uploader', {}, /`uploader`.*Uploader.*got an object/],
    ['uploader', 'https://ingest', /`uploader`.*"https:\/\/ingest" \(string\)/],
    ['outbox', {}, /`outbox`.*ChunkManager/],
    ['tenantId', '../etc', /`tenantId`.*\[A-Za-z0-9_-\].*"..\/etc"/],
    ['tenantId', '', /`tenantId`/],
    ['queueSize', 0, /`queueSize`.*from 1 to 10000000.*got 0 \(number\)/],
    ['queueSize', 1.5, /`queueSize`.*got 1.5/],
    ['queueSize', '10', /`queueSize`.*"10" \(string\)/],
    ['maxQueueBytes', 0, /`maxQueueBytes`.*positive integer/],
    ['maxQueueBytes', Number.NaN, /`maxQueueBytes`.*NaN/],
    ['workers', 0, /`workers`.*from 1 to 256/],
    ['workers', 257, /`workers`.*got 257/],
    ['retryAttempts', -1, /`retryAttempts`.*from 0 to 1000/],
    ['retryAttempts', 2.5, /`retryAttempts`/],
    ['retryDelayMs', -1, /`retryDelayMs`.*got -1/],
    ['retryDelayMs', 2 ** 31, /`retryDelayMs`.*2147483647/],
    ['maxRetryDelayMs', -5, /`maxRetryDelayMs`.*got -5/],
    ['retryPolicy', 5, /`retryPolicy`.*RetryPolicy.*got 5 \(number\)/],
    ['retryPolicy', { retryDelayMs: -1 }, /`retryDelayMs`/],
    ['retryPolicy', { jitter: 'half' }, /`jitter`/],
    ['uploadTimeoutMs', 0, /`uploadTimeoutMs`.*from 1 to/],
    ['uploadTimeoutMs', 2 ** 31, /`uploadTimeoutMs`/],
    ['stopTimeoutMs', -1, /`stopTimeoutMs`.*from 0 to/],
    ['compressionLevel', 0, /`compressionLevel`.*from 1 to 22/],
    ['compressionLevel', 23, /`compressionLevel`.*got 23/],
    ['onSubmitted', 'log', /`onSubmitted`.*function/],
    ['onCompleted', {}, /`onCompleted`.*function/],
    ['onFailed', 1, /`onFailed`.*function/],
    ['onSpilled', [], /`onSpilled`.*function/],
  ];
  it.each(bad)('rejects %s = %j with an InvalidOptionError naming it', (key, value, message) => {
    const err = thrown(() => new UploadPipeline({ uploader, [key]: value } as PipelineOptions));
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err).toMatchObject({ code: 'OUTPOST_INVALID_OPTION' });
    expect(err.message).toMatch(message);
  });

  it('rejects missing options, a missing uploader and unknown keys, nested ones included', () => {
    expect(thrown(() => new UploadPipeline(null as never))).toMatchObject({ code: 'OUTPOST_INVALID_OPTION', message: expect.stringMatching(/`uploader`/) });
    expect(thrown(() => new UploadPipeline({} as PipelineOptions))).toMatchObject({ code: 'OUTPOST_INVALID_OPTION', message: expect.stringMatching(/`uploader`.*got undefined/) });
    const unknown = thrown(() => new UploadPipeline({ uploader, queueSise: 5 } as PipelineOptions));
    expect(unknown).toBeInstanceOf(InvalidOptionError);
    expect(unknown.message).toMatch(/Unknown option `queueSise` for UploadPipeline.*`queueSize`/);
    expect(thrown(() => new UploadPipeline({ uploader, retryPolicy: { delayMs: 5 } } as PipelineOptions)).message).toMatch(/Unknown option `delayMs` for RetryPolicy/);
  });

  it('treats an option given as undefined as not given', () => {
    const o = resolvePipelineOptions({ uploader, queueSize: undefined, workers: undefined, retryPolicy: undefined, retryDelayMs: undefined } as unknown as PipelineOptions);
    expect(o).toMatchObject({ queueSize: 1000, workers: 3, retryDelayMs: 5000 });
  });

  it('rejects `retryPolicy` together with `retryDelayMs` or `maxRetryDelayMs`, naming both', () => {
    for (const extra of [{ retryDelayMs: 100 }, { maxRetryDelayMs: 100 }]) {
      for (const retryPolicy of [{ retryDelayMs: 10 }, new RetryPolicy()]) {
        const err = thrown(() => new UploadPipeline({ uploader, retryPolicy, ...extra }));
        expect(err).toMatchObject({ code: 'OUTPOST_INVALID_OPTION' });
        expect(err.message).toMatch(new RegExp(`\`retryPolicy\`.*\`${Object.keys(extra)[0]}\``));
      }
    }
  });

  it('rejects `maxRetryDelayMs` below `retryDelayMs`, naming both, and accepts them equal', () => {
    const err = thrown(() => new UploadPipeline({ uploader, retryDelayMs: 2000, maxRetryDelayMs: 1000 }));
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err.message).toMatch(/`maxRetryDelayMs`.*`retryDelayMs` \(2000\).*got 1000/);
    // The default cap counts too.
    expect(thrown(() => new UploadPipeline({ uploader, retryDelayMs: 70_000 })).message).toMatch(/`maxRetryDelayMs`.*`retryDelayMs` \(70000\)/);
    expect(new UploadPipeline({ uploader, retryDelayMs: 1000, maxRetryDelayMs: 1000 }).options.maxRetryDelayMs).toBe(1000);
  });
});

describe('UploadPipeline options: defaults', () => {
  it('fills the documented defaults, equal to pipelineDefaults', () => {
    expect(pipelineDefaults).toEqual({
      queueSize: 1000,
      maxQueueBytes: 64 * 1024 * 1024,
      workers: 3,
      retryAttempts: 3,
      retryDelayMs: 5000,
      maxRetryDelayMs: 60_000,
      uploadTimeoutMs: 120_000,
      stopTimeoutMs: 10_000,
      compressionLevel: 3,
    });
    expect(Object.isFrozen(pipelineDefaults)).toBe(true);
    const uploader = new DeferredUploader();
    const o = new UploadPipeline({ uploader }).options;
    expect(o).toMatchObject(pipelineDefaults);
    expect(o).toMatchObject({ outbox: undefined, tenantId: undefined, onSubmitted: undefined, onCompleted: undefined, onFailed: undefined, onSpilled: undefined });
    expect(o.retryPolicy.options).toMatchObject({ retryDelayMs: 5000, maxRetryDelayMs: 60_000, backoffFactor: 2, jitter: 'full' });
    expect(o.uploaderFor('any')).toBe(uploader);
    expect(Object.isFrozen(o)).toBe(true);
  });

  it('uses a RetryPolicy as given, and the outbox’s compression level, refusing a different one', () => {
    const policy = new RetryPolicy({ retryDelayMs: 7, maxRetryDelayMs: 70 });
    const o = resolvePipelineOptions({ uploader: new DeferredUploader(), retryPolicy: policy });
    expect(o.retryPolicy).toBe(policy);
    expect(o).toMatchObject({ retryDelayMs: 7, maxRetryDelayMs: 70 });
    const tmp = tempDir();
    try {
      const outbox = new ChunkManager({ uploader: new DeferredUploader(), databasePath: join(tmp.dir, 'o.db'), compressionLevel: 7 });
      expect(resolvePipelineOptions({ uploader: new DeferredUploader(), outbox }).compressionLevel).toBe(7);
      expect(resolvePipelineOptions({ uploader: new DeferredUploader(), outbox, compressionLevel: 7 }).compressionLevel).toBe(7);
      const err = thrown(() => new UploadPipeline({ uploader: new DeferredUploader(), outbox, compressionLevel: 19 }));
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect(err.message).toMatch(/`compressionLevel` \(19\).*outbox's \(7\)/);
    } finally {
      tmp.cleanup();
    }
  });
});

describe('UploadPipeline options: each has its effect', () => {
  it('uploader as a function is asked once per tenant, and each tenant’s reports go to its uploader', async () => {
    const made = new Map<string, DeferredUploader>();
    const source = vi.fn((tenantId: string) => {
      const u = new DeferredUploader();
      u.answer = () => OK;
      made.set(tenantId, u);
      return u;
    });
    const { p, rec } = pipelines.open({ uploader: source });
    for (const [id, tenantId] of [['a1', 'a'], ['b1', 'b'], ['a2', 'a']] as const) p.submit(smallReport(), { tenantId, reportId: id });
    await until(() => rec.of('completed').length === 3, 'three completions');
    expect(source.mock.calls.map((c) => c[0]).sort()).toEqual(['a', 'b']);
    expect(made.get('a')?.order()).toEqual(['a1', 'a2']);
    expect(made.get('b')?.order()).toEqual(['b1']);
  });

  it('tenantId is the tenant of reports submitted without one; without it submit() needs one', async () => {
    const tenants: string[] = [];
    const uploader = new DeferredUploader();
    uploader.answer = () => OK;
    const { p, rec } = pipelines.open({ uploader: (t) => (tenants.push(t), uploader), tenantId: 'acme' });
    const id = p.submit(smallReport());
    const other = p.submit(smallReport(), { tenantId: 'globex' });
    await Promise.all([rec.settled(id), rec.settled(other)]);
    expect(rec.of('submitted').map((e) => [e.id, e.item.tenantId])).toEqual([[id, 'acme'], [other, 'globex']]);
    expect(tenants.sort()).toEqual(['acme', 'globex']);
    const { p: bare } = pipelines.open({ uploader });
    const err = thrown(() => bare.submit(smallReport()));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toMatch(/`tenantId`/);
    expect(bare.stats().submitted).toBe(0);
  });

  it('queueSize: the N+1th held report makes submit() throw QueueFullError (bound count) when there is no outbox', async () => {
    const uploader = new DeferredUploader();
    uploader.answer = () => OK;
    const { p, rec } = pipelines.open({ uploader, tenantId: 't', queueSize: 2 }, false);
    p.submit(smallReport());
    p.submit(smallReport());
    const err = thrown(() => p.submit(smallReport()));
    expect(err).toBeInstanceOf(QueueFullError);
    expect(err).toMatchObject({ code: 'OUTPOST_QUEUE_FULL', bound: 'count', limit: 2 });
    expect(p.stats().submitted).toBe(2);
    p.start();
    await until(() => rec.of('completed').length === 2, 'two completions');
    expect(() => p.submit(smallReport())).not.toThrow(); // room again once they are settled
  });

  it('maxQueueBytes: once the encoded bytes held reach it, submit() throws QueueFullError (bound bytes)', async () => {
    const report = smallReport(50);
    const bytes = (await encodeWholeReport(report)).body.byteLength;
    const { p } = pipelines.open({ uploader: new DeferredUploader(), tenantId: 't', maxQueueBytes: 2 * bytes });
    p.submit(report);
    await until(() => p.stats().queuedBytes === bytes, 'the first report to be measured');
    p.submit(report); // under the bound: accepted
    await until(() => p.stats().queuedBytes === 2 * bytes, 'the second report to be measured');
    const err = thrown(() => p.submit(report));
    expect(err).toBeInstanceOf(QueueFullError);
    expect(err).toMatchObject({ code: 'OUTPOST_QUEUE_FULL', bound: 'bytes', limit: 2 * bytes });
    expect(p.stats()).toMatchObject({ submitted: 2, queuedBytes: 2 * bytes });
  });

  it.each([1, 2, 4])('workers: %i uploads run at once while there is work, never more', async (workers) => {
    const uploader = new DeferredUploader();
    const { p, rec } = pipelines.open({ uploader, tenantId: 't', workers });
    for (let i = 0; i < 6; i++) p.submit(smallReport(), { reportId: `r${i}` });
    for (let done = 0; done < 6; done++) {
      const expected = Math.min(workers, 6 - done);
      await until(() => uploader.pending().length === expected, `${expected} uploads in flight`);
      await settle(10);
      expect(uploader.pending()).toHaveLength(expected);
      expect(p.stats().uploading).toBe(expected);
      uploader.pending()[0]?.resolve();
    }
    await until(() => rec.of('completed').length === 6, 'six completions');
    expect(uploader.maxInFlight).toBe(workers);
    expect(rec.violations).toEqual([]);
  });

  it.each([0, 2])('retryAttempts: %i retries after the first attempt, then retries-exhausted', async (retryAttempts) => {
    const uploader = new DeferredUploader();
    uploader.answer = () => unavailable();
    const { p, rec } = pipelines.open({ uploader, tenantId: 't', retryAttempts, retryPolicy: { retryDelayMs: 0, maxRetryDelayMs: 0 } });
    const id = p.submit(smallReport());
    const end = await rec.settled(id);
    expect(uploader.calls).toHaveLength(retryAttempts + 1);
    expect(rec.of('retry').map((e) => e.args[1])).toEqual(Array.from({ length: retryAttempts }, (_, i) => i + 1));
    expect(end).toMatchObject({ event: 'failed', args: [expect.any(UploadHttpError), 'retries-exhausted'] });
  });

  it('retryDelayMs and maxRetryDelayMs: full-jitter delays lie in [0, ceiling), the ceiling doubling up to the cap', async () => {
    vi.useFakeTimers();
    const uploader = new DeferredUploader();
    uploader.answer = () => unavailable();
    const { p, rec } = pipelines.open({ uploader, tenantId: 't', retryDelayMs: 1000, maxRetryDelayMs: 1500, retryAttempts: 3, workers: 20 });
    expect(p.options.retryPolicy.options).toMatchObject({ retryDelayMs: 1000, maxRetryDelayMs: 1500, backoffFactor: 2, jitter: 'full' });
    for (let i = 0; i < 20; i++) p.submit(smallReport(), { reportId: `r${i}` });
    await until(() => uploader.calls.length === 20, 'the first attempts');
    await vi.advanceTimersByTimeAsync(10_000);
    await until(() => rec.of('failed').length === 20, 'every report to run out of retries');
    const retries = rec.of('retry');
    expect(retries).toHaveLength(60);
    for (const r of retries) {
      const [, retry, delayMs] = r.args as [unknown, number, number];
      expect(delayMs).toBeGreaterThanOrEqual(0);
      expect(delayMs).toBeLessThan(retry === 1 ? 1000 : 1500);
      // The next attempt starts exactly when the delay is over.
      expect(uploader.of(r.id)[retry]?.at).toBe(r.at + delayMs);
    }
    // Past the first retry the ceiling grew beyond retryDelayMs (40 samples below 1000 by chance: p < 1e-7).
    expect(Math.max(...retries.filter((r) => r.args[1] !== 1).map((r) => r.args[2] as number))).toBeGreaterThanOrEqual(1000);
  });

  it('retryDelayMs and maxRetryDelayMs through retryPolicy without jitter: exactly 1000, 2000, then capped at 2500', async () => {
    vi.useFakeTimers();
    const uploader = new DeferredUploader();
    uploader.answer = () => unavailable();
    const { p, rec } = pipelines.open({ uploader, tenantId: 't', retryAttempts: 3, retryPolicy: { retryDelayMs: 1000, maxRetryDelayMs: 2500, jitter: 'none' } });
    const id = p.submit(smallReport());
    await until(() => uploader.calls.length === 1, 'the first attempt');
    await vi.advanceTimersByTimeAsync(10_000);
    await rec.settled(id);
    expect(rec.of('retry').map((e) => e.args[2])).toEqual([1000, 2000, 2500]);
    const at = uploader.calls.map((c) => c.at - (uploader.calls[0]?.at ?? 0));
    expect(at).toEqual([0, 1000, 3000, 5500]);
  });

  it('uploadTimeoutMs: the signal given to the uploader aborts with an UploadTimeoutError exactly then', async () => {
    vi.useFakeTimers();
    const uploader = new DeferredUploader();
    const { p, rec } = pipelines.open({ uploader, tenantId: 't', uploadTimeoutMs: 1000, retryAttempts: 0 });
    const id = p.submit(smallReport());
    await until(() => uploader.calls.length === 1, 'the upload');
    const call = uploader.calls[0]!;
    await vi.advanceTimersByTimeAsync(999);
    expect(call.signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(call.signal.aborted).toBe(true);
    expect(call.signal.reason).toBeInstanceOf(UploadTimeoutError);
    expect(call.signal.reason).toMatchObject({ code: 'OUTPOST_UPLOAD_TIMEOUT', timeoutMs: 1000 });
    const end = await rec.settled(id);
    expect(end).toMatchObject({ event: 'failed', args: [call.signal.reason, 'retries-exhausted'] });
    expect(end.at - call.at).toBe(1000);
  });

  it('stopTimeoutMs: stop() lets an upload in flight run that long, then aborts it and fails it stopped', async () => {
    vi.useFakeTimers();
    const uploader = new DeferredUploader();
    const { p, rec } = pipelines.open({ uploader, tenantId: 't', stopTimeoutMs: 500 });
    const id = p.submit(smallReport());
    await until(() => uploader.calls.length === 1, 'the upload');
    const call = uploader.calls[0]!;
    let stopped = false;
    const stopping = p.stop().then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(499);
    expect(call.signal.aborted).toBe(false);
    expect(stopped).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(call.signal.aborted).toBe(true);
    expect(call.signal.reason).toBeInstanceOf(PipelineStoppedError);
    await stopping;
    expect(rec.ended(id)).toEqual(['failed', 'stopped']);
    expect(rec.outcome(id)?.args[0]).toBeInstanceOf(PipelineStoppedError);
  });

  it('compressionLevel: the body is the report compressed at that level', async () => {
    const report = { metadata: { tool: 't' }, findings: Array.from({ length: 400 }, (_, i) => ({ id: i, rule: `rule-${i % 7}`, detail: `the same words again ${i % 13}` })), assets: [] };
    const bodies: Uint8Array[] = [];
    for (const compressionLevel of [1, 19]) {
      const uploader = new DeferredUploader();
      uploader.answer = () => OK;
      const { p, rec } = pipelines.open({ uploader, tenantId: 't', compressionLevel });
      await rec.settled(p.submit(report));
      const body = uploader.calls[0]!.upload.body;
      expect(Buffer.from(body).equals(Buffer.from((await encodeWholeReport(report, { compressionLevel })).body))).toBe(true);
      expect(JSON.parse((await zstdDecompress(Buffer.from(body))).toString('utf8'))).toEqual(report);
      bodies.push(body);
    }
    expect(Buffer.from(bodies[0]!).equals(Buffer.from(bodies[1]!))).toBe(false);
  });

  it('onSubmitted, onCompleted and onFailed are called as the events are emitted', async () => {
    const uploader = new DeferredUploader();
    uploader.answer = (c) => (c.reportId === 'bad' ? new UploadHttpError(400, { retryable: false }) : OK);
    const onSubmitted = vi.fn();
    const onCompleted = vi.fn();
    const onFailed = vi.fn();
    const { p, rec } = pipelines.open({ uploader, tenantId: 't', onSubmitted, onCompleted, onFailed });
    p.submit(smallReport(), { reportId: 'good' });
    expect(onSubmitted).toHaveBeenCalledTimes(1); // inside submit()
    p.submit(smallReport(), { reportId: 'bad' });
    await Promise.all([rec.settled('good'), rec.settled('bad')]);
    expect(onSubmitted.mock.calls.map((c) => (c[0] as { id: string }).id)).toEqual(['good', 'bad']);
    expect(onCompleted).toHaveBeenCalledExactlyOnceWith(expect.objectContaining({ id: 'good', tenantId: 't', attempts: 1 }), OK);
    expect(onFailed).toHaveBeenCalledExactlyOnceWith(expect.objectContaining({ id: 'bad' }), expect.objectContaining({ status: 400 }), 'rejected');
  });
});
