import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CloseTimeoutError, IllegalStateError, InvalidOptionError, ListenerError, ResourceReadError } from '../../src/errors.js';
import { ResourceController, type ResourceMetrics, type SampleFailedEvent, type SourceReading } from '../../src/resource/index.js';
import { FakeTree, GiB, ScriptedSource, flush, scripted } from './fake.js';

let c: ResourceController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
  vi.useRealTimers();
});

describe('ResourceController lifecycle', () => {
  it('moves idle → running → closing → closed; start and close are idempotent; wrong-state calls throw IllegalStateError', async () => {
    const source = new ScriptedSource();
    c = new ResourceController({ source, maxConcurrentJobs: 2 });
    expect(c.state).toBe('idle');
    expect(c.status()).toMatchObject({ metrics: undefined, source: undefined, throttled: false, maxJobs: 2 });
    expect(c.history()).toEqual([]);
    expect(() => c?.tryAcquire()).toThrow(/Cannot acquire a slot while idle/);
    await expect(c.acquire()).rejects.toMatchObject({ code: 'OUTPOST_ILLEGAL_STATE', state: 'idle' });
    await expect(c.sample()).rejects.toBeInstanceOf(IllegalStateError);
    const starting = c.start();
    expect(c.start()).toBe(starting);
    await starting;
    expect(c.state).toBe('running');
    expect(source.reads).toBe(1);
    const closing = c.close();
    expect(c.state).toBe('closing');
    expect(c.close()).toBe(closing);
    await closing;
    expect(c.state).toBe('closed');
    await c.close();
    await expect(c.start()).rejects.toMatchObject({ code: 'OUTPOST_ILLEGAL_STATE', state: 'closed' });
    expect(() => c?.tryAcquire()).toThrow(/while closed/);
  });

  it('closes a controller that never started', async () => {
    c = new ResourceController({ source: new ScriptedSource() });
    await c.close();
    expect(c.state).toBe('closed');
  });

  it('leaves no timer behind after close, with the sampler and a job timeout armed', async () => {
    vi.useFakeTimers();
    const { c: ctl } = await scripted();
    c = ctl;
    expect(vi.getTimerCount()).toBe(1);
    const job = ctl.run((signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))), { timeoutMs: 60_000 }).catch(() => undefined);
    await flush();
    expect(vi.getTimerCount()).toBe(2);
    await ctl.close();
    await job;
    expect(vi.getTimerCount()).toBe(0);
  });

  it('waits for a sample in flight before closing', async () => {
    let resolve!: (r: SourceReading) => void;
    const source = { read: vi.fn(() => Promise.resolve<SourceReading>({ cpu: 0.1 })) };
    c = new ResourceController({ source });
    await c.start();
    source.read.mockImplementation(() => new Promise<SourceReading>((r) => (resolve = r)));
    const sampling = c.sample();
    let closed = false;
    const closing = c.close().then(() => (closed = true));
    await flush();
    expect(closed).toBe(false);
    resolve({ cpu: 0.2 });
    await closing;
    expect((await sampling).cpu).toBe(0.2);
  });

  it('stops cleanly when closed during start', async () => {
    vi.useFakeTimers();
    let resolve!: (r: SourceReading) => void;
    const source = { read: () => new Promise<SourceReading>((r) => (resolve = r)) };
    c = new ResourceController({ source });
    const starting = c.start();
    const closing = c.close();
    resolve({});
    await starting;
    await closing;
    expect(c.state).toBe('closed');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('admits only minConcurrentJobs until the first sample is in, then applies its limits', async () => {
    // Finding 12: between start() and the first sample, slots were handed out by the host's CPU count, unthrottled.
    let land!: (r: SourceReading) => void;
    const source = { read: () => new Promise<SourceReading>((r) => (land = r)) };
    c = new ResourceController({ source });
    const starting = c.start();
    const early = Array.from({ length: 8 }, () => c?.tryAcquire()).filter((s) => s !== undefined);
    expect(early).toHaveLength(1);
    let waited = false;
    const waiting = c.acquire().then((s) => ((waited = true), s));
    await flush();
    expect(waited).toBe(false);
    land({ cpu: 0.99, memory: 0.99, effectiveCpus: 1 });
    await starting;
    expect(c.status()).toMatchObject({ maxJobs: 1, activeJobs: 1, pendingJobs: 1, throttled: true });
    early[0]?.release();
    await waiting;
    expect(c.status().activeJobs).toBe(1);
  });

  it('lets waiting acquire() calls in once the first sample is in, up to the effective CPUs', async () => {
    let land!: (r: SourceReading) => void;
    const source = { read: () => new Promise<SourceReading>((r) => (land = r)) };
    c = new ResourceController({ source, minConcurrentJobs: 0 });
    const starting = c.start();
    expect(c.tryAcquire()).toBeUndefined();
    const served: number[] = [];
    for (let i = 0; i < 4; i++) void c.acquire().then(() => served.push(i), () => undefined);
    // One CPU of quota, on a host with more: the host's count must not let more than one in.
    land({ cpu: 0.1, memory: 0.1, effectiveCpus: 1 });
    await starting;
    await flush();
    expect(served).toEqual([0]);
    expect(c.status()).toMatchObject({ maxJobs: 1, activeJobs: 1, pendingJobs: 3 });
  });

  it('refuses to start when dataDir does not exist, naming it, and can start once it does', async () => {
    // Finding 9: a typo in dataDir left the disk signal failing for ever.
    const tree = new FakeTree();
    try {
      tree.meminfo(8 * GiB, 4 * GiB).stat([[1, 1]]).allowedCpus('0');
      const dataDir = `${tree.root}/data`;
      c = new ResourceController({ cgroupRoot: tree.cgroupRoot, procRoot: tree.procRoot, dataDir });
      const err = await c.start().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect(err).toMatchObject({ code: 'OUTPOST_INVALID_OPTION', message: `Expected \`dataDir\` to be an existing directory, got ${JSON.stringify(dataDir)} (ENOENT)` });
      expect(c.state).toBe('idle');
      tree.write('data/file', 'x');
      await expect(new ResourceController({ cgroupRoot: tree.cgroupRoot, procRoot: tree.procRoot, dataDir: `${dataDir}/file` }).start()).rejects.toThrow(/not a directory/);
      await c.start();
      expect(c.status().metrics?.disk).toBeGreaterThan(0);
    } finally {
      await c?.close();
      tree.cleanup();
    }
  });

  it('gives up on a sample whose read never ends after closeTimeoutMs, and reports it', async () => {
    // Minor: Sampler.stop() waited for ever on a hung read.
    vi.useFakeTimers();
    const source = { read: vi.fn(() => Promise.resolve<SourceReading>({ cpu: 0.1 })) };
    // The default closeTimeoutMs: 10 s.
    c = new ResourceController({ source });
    await c.start();
    const errors: unknown[] = [];
    c.on('error', (e) => errors.push(e));
    source.read.mockImplementation(() => new Promise<SourceReading>(() => undefined));
    void c.sample();
    const closing = c.close();
    await vi.advanceTimersByTimeAsync(9_999);
    expect(c.state).toBe('closing');
    await vi.advanceTimersByTimeAsync(1);
    await closing;
    expect(c.state).toBe('closed');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(CloseTimeoutError);
    expect(errors[0]).toMatchObject({ code: 'OUTPOST_RESOURCE_CLOSE_TIMEOUT', closeTimeoutMs: 10_000, runningJobs: 0, sampleInFlight: true });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('gives up on a start whose first read never ends after closeTimeoutMs', async () => {
    vi.useFakeTimers();
    c = new ResourceController({ source: { read: () => new Promise<SourceReading>(() => undefined) }, closeTimeoutMs: 200 });
    void c.start();
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const closing = c.close();
      await vi.advanceTimersByTimeAsync(200);
      await closing;
      await new Promise((r) => process.nextTick(r));
      expect(c.state).toBe('closed');
      // Nobody listens to 'error': it becomes a process warning.
      expect(warnings.some((w) => w instanceof CloseTimeoutError && w.sampleInFlight)).toBe(true);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('samples on an unref\'d timer: a process that never closes it exits on its own', async () => {
    const script = `
      const { ResourceController } = await import(${JSON.stringify(new URL('../../src/resource/index.ts', import.meta.url).href)});
      const c = new ResourceController({ sampleIntervalMs: 20 });
      let samples = 0;
      c.on('sample', () => samples++);
      await c.start();
      setTimeout(() => console.log(JSON.stringify({ samples, timers: process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length })), 300);
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 15_000 });
    const out = JSON.parse(stdout.trim()) as { samples: number; timers: number };
    // The first sample is taken by start(); the timer took more while the process lived, then let it exit.
    expect(out.samples).toBeGreaterThan(3);
    // Only the script's own 300 ms timer keeps the loop alive.
    expect(out.timers).toBe(1);
  });
});

describe('sampling', () => {
  it('samples every sampleIntervalMs and keeps the last historySize samples, oldest first', async () => {
    vi.useFakeTimers();
    const { c: ctl, source } = await scripted({ historySize: 3, sampleIntervalMs: 250 });
    c = ctl;
    const at: number[] = [];
    ctl.on('sample', (m) => at.push(m.at));
    for (let i = 1; i <= 5; i++) {
      source.next = { cpu: i / 10 };
      await vi.advanceTimersByTimeAsync(250);
    }
    expect(source.reads).toBe(6);
    expect(at.map((t) => t - (at[0] as number))).toEqual([0, 250, 500, 750, 1000]);
    expect(ctl.history().map((m) => m.cpu)).toEqual([0.3, 0.4, 0.5]);
    expect(ctl.status().metrics?.cpu).toBe(0.5);
  });

  it('takes a sample now with sample(), joining one already in flight', async () => {
    const { c: ctl, source } = await scripted();
    c = ctl;
    source.next = { cpu: 0.3 };
    const [a, b] = await Promise.all([ctl.sample(), ctl.sample()]);
    expect(a).toBe(b);
    expect(source.reads).toBe(2);
    expect(ctl.history()).toHaveLength(2);
  });

  it('turns a source that throws into sample-failed events and keeps sampling', async () => {
    vi.useFakeTimers();
    const { c: ctl, source } = await scripted();
    c = ctl;
    const failed: SampleFailedEvent[] = [];
    ctl.on('sample-failed', (e) => failed.push(e));
    const boom = new Error('boom');
    source.failWith = boom;
    await vi.advanceTimersByTimeAsync(2000);
    expect(failed).toHaveLength(2);
    expect(failed[0]?.errors[0]).toBeInstanceOf(ResourceReadError);
    expect(failed[0]?.errors[0]).toMatchObject({ code: 'OUTPOST_RESOURCE_READ_FAILED', target: 'source', cause: boom });
    expect(failed[0]?.metrics).toMatchObject({ cpu: undefined, memory: undefined });
    source.failWith = undefined;
    source.next = { cpu: 0.4 };
    await vi.advanceTimersByTimeAsync(1000);
    expect(ctl.status().metrics?.cpu).toBe(0.4);
    expect(failed).toHaveLength(2);
  });

  it('treats a reading that is not an object, or fields that are not numbers, as unknown', async () => {
    vi.useFakeTimers();
    const { c: ctl, source } = await scripted();
    c = ctl;
    const failed: SampleFailedEvent[] = [];
    ctl.on('sample-failed', (e) => failed.push(e));
    source.next = null as unknown as SourceReading;
    await vi.advanceTimersByTimeAsync(1000);
    expect(failed[0]?.errors[0]?.target).toBe('source');
    source.next = { cpu: Number.NaN, memory: '0.5' as never, disk: -1, memoryLimitBytes: Number.POSITIVE_INFINITY };
    await vi.advanceTimersByTimeAsync(1000);
    expect(ctl.status().metrics).toMatchObject({ cpu: undefined, memory: undefined, disk: undefined, memoryLimitBytes: undefined });
  });

  it('reports the failures a custom source lists that are not ResourceReadErrors', async () => {
    // Minor: they were filtered out, so nobody saw them.
    vi.useFakeTimers();
    const { c: ctl, source } = await scripted();
    c = ctl;
    const failed: SampleFailedEvent[] = [];
    ctl.on('sample-failed', (e) => failed.push(e));
    const cause = new Error('sidecar unreachable');
    source.next = { cpu: 0.2, failures: [cause as never, new ResourceReadError('disk', 'statfs failed')] };
    await vi.advanceTimersByTimeAsync(1000);
    expect(failed).toHaveLength(1);
    expect(failed[0]?.errors).toHaveLength(2);
    expect(failed[0]?.errors[0]).toMatchObject({ code: 'OUTPOST_RESOURCE_READ_FAILED', target: 'source', cause });
    expect(failed[0]?.errors[1]).toMatchObject({ target: 'disk', message: 'statfs failed' });
  });

  it('treats a fraction over 1 from a custom source as a failed read of its signal', async () => {
    // Minor: 1.5 was taken as a valid fraction and throttled.
    vi.useFakeTimers();
    const { c: ctl, source } = await scripted();
    c = ctl;
    const failed: SampleFailedEvent[] = [];
    ctl.on('sample-failed', (e) => failed.push(e));
    source.next = { cpu: 1.5, memory: 0.2, disk: 85 };
    await vi.advanceTimersByTimeAsync(1000);
    expect(ctl.status()).toMatchObject({ throttled: false, metrics: { cpu: undefined, memory: 0.2, disk: undefined } });
    expect(failed[0]?.errors.map((e) => [e.target, e.message])).toEqual([
      ['cpu', 'The source reported `cpu` = 1.5, not a fraction from 0 to 1'],
      ['disk', 'The source reported `disk` = 85, not a fraction from 0 to 1'],
    ]);
  });

  it('runs the listeners added with on() even when an onThrottled callback throws', async () => {
    // Minor: the callback, registered first, stopped the listeners after it.
    vi.useFakeTimers();
    const { c: ctl, source } = await scripted({
      onThrottled: () => {
        throw new Error('callback bug');
      },
    });
    c = ctl;
    const seen: string[] = [];
    ctl.on('throttled', (e) => seen.push(e.reason));
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      source.next = { cpu: 0.99 };
      await vi.advanceTimersByTimeAsync(1000);
      await new Promise((r) => process.nextTick(r));
      expect(seen).toEqual(['cpu']);
      expect(warnings.some((w) => w instanceof ListenerError && w.message.includes("resource 'throttled'"))).toBe(true);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('keeps sampling when a listener throws, and reports it as a process warning', async () => {
    vi.useFakeTimers();
    const { c: ctl } = await scripted();
    c = ctl;
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      let samples = 0;
      ctl.on('sample', () => {
        samples++;
        throw new Error('listener bug');
      });
      await vi.advanceTimersByTimeAsync(3000);
      // process.emitWarning emits on the next tick.
      await new Promise((r) => process.nextTick(r));
      expect(samples).toBe(3);
      expect(warnings.some((w) => w instanceof ListenerError && w.message.includes("resource 'sample'"))).toBe(true);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('reports the event-loop utilization of the last interval from the second sample on', async () => {
    const { c: ctl } = await scripted();
    c = ctl;
    expect(ctl.status().metrics?.eventLoop).toBeUndefined();
    const m: ResourceMetrics = await ctl.sample();
    expect(m.eventLoop).toBeGreaterThanOrEqual(0);
    expect(m.eventLoop).toBeLessThanOrEqual(1);
  });

  it('sets maxConcurrentJobs to the effective CPUs at start when it was not given', async () => {
    const cases: [SourceReading, number | undefined, number, number][] = [
      [{ effectiveCpus: 3.5 }, undefined, 1, 3],
      [{ effectiveCpus: 0.5 }, undefined, 1, 1],
      [{ effectiveCpus: 1 }, undefined, 2, 2],
      [{ effectiveCpus: 16 }, 4, 1, 4],
    ];
    for (const [first, maxConcurrentJobs, minConcurrentJobs, expected] of cases) {
      const source = new ScriptedSource();
      source.next = first;
      const ctl = new ResourceController({ source, minConcurrentJobs, ...(maxConcurrentJobs === undefined ? {} : { maxConcurrentJobs }) });
      await ctl.start();
      expect(ctl.status().maxJobs).toBe(expected);
      expect(ctl.adaptiveMaxJobs()).toBe(expected);
      await ctl.close();
    }
  });

  it('keeps a limit set with setMaxConcurrentJobs before start', async () => {
    const source = new ScriptedSource();
    source.next = { effectiveCpus: 8 };
    c = new ResourceController({ source });
    c.setMaxConcurrentJobs(3);
    await c.start();
    expect(c.status().maxJobs).toBe(3);
  });

  it('reports which readers are in use', async () => {
    const { c: ctl } = await scripted();
    expect(ctl.status().source).toEqual({ cpu: 'custom', memory: 'custom', cpuCgroupPath: undefined, memoryCgroupPath: undefined, dataDir: undefined });
    await ctl.close();
    const tree = new FakeTree();
    try {
      tree.meminfo(8 * GiB, 4 * GiB).stat([[1, 1]]).allowedCpus('0');
      c = new ResourceController({ cgroupRoot: tree.cgroupRoot, procRoot: tree.procRoot, dataDir: tree.root });
      await c.start();
      expect(c.status().source).toEqual({ cpu: 'host', memory: 'host', cpuCgroupPath: undefined, memoryCgroupPath: undefined, dataDir: tree.root });
      expect(c.status()).toMatchObject({ maxJobs: 1, metrics: { memory: 0.5, effectiveCpus: 1 } });
      expect(c.status().metrics?.disk).toBeGreaterThan(0);
    } finally {
      await c?.close();
      tree.cleanup();
    }
  });
});
