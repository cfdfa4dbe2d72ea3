import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ResourceReadError } from '../../src/errors.js';
import { ResourceController, type ResumedEvent, type SourceReading, type ThrottledEvent, type WarningEvent } from '../../src/resource/index.js';
import { scripted, ScriptedSource } from './fake.js';

const CALM: SourceReading = { cpu: 0.2, memory: 0.2, disk: 0.2 };
let c: ResourceController | undefined;
let source: ScriptedSource;
let throttled: ThrottledEvent[];
let resumed: (ResumedEvent & { at: number })[];
let warnings: WarningEvent[];

beforeEach(() => {
  vi.useFakeTimers();
  throttled = [];
  resumed = [];
  warnings = [];
});
afterEach(async () => {
  await c?.close();
  c = undefined;
  vi.useRealTimers();
});

async function open(options: Parameters<typeof scripted>[0] = {}, first: SourceReading = CALM): Promise<ResourceController> {
  ({ c, source } = await scripted(options, first));
  c.on('throttled', (e) => throttled.push(e));
  c.on('resumed', (e) => resumed.push({ ...e, at: performance.now() }));
  c.on('warning', (e) => warnings.push(e));
  return c;
}

/** The next periodic sample (interval 1000 ms) reads `reading`. */
async function step(reading: SourceReading, samples = 1): Promise<void> {
  source.next = reading;
  for (let i = 0; i < samples; i++) await vi.advanceTimersByTimeAsync(1000);
}

describe('throttling', () => {
  it('does not decide on CPU from the first sample after start', async () => {
    const ctl = await open({}, { cpu: 0.99, memory: 0.2 });
    expect(ctl.status()).toMatchObject({ throttled: false, metrics: { cpu: 0.99 } });
    await step({ cpu: 0.99 });
    expect(ctl.status()).toMatchObject({ throttled: true, reason: 'cpu' });
  });

  it('decides on memory and disk from the first sample after start', async () => {
    // Finding 11: the first-sample rule held every signal back for one interval.
    const onThrottled = vi.fn();
    const ctl = await open({ maxConcurrentJobs: 4, minConcurrentJobs: 1, onThrottled }, { memory: 0.99, disk: 0.99, effectiveCpus: 4 });
    expect(ctl.status()).toMatchObject({ throttled: true, reasons: ['memory', 'disk'] });
    expect(onThrottled).toHaveBeenCalledTimes(1);
    expect([1, 2, 3, 4].map(() => ctl.tryAcquire() !== undefined)).toEqual([true, false, false, false]);
  });

  it('throttles as soon as one signal is over its threshold, naming every reason, memory first', async () => {
    const ctl = await open();
    await step({ cpu: 0.85, memory: 0.85, disk: 0.9 });
    expect(throttled).toHaveLength(0);
    await step({ cpu: 0.9, memory: 0.86, disk: 0.95 });
    expect(throttled).toHaveLength(1);
    expect(throttled[0]).toMatchObject({ reason: 'memory', reasons: ['memory', 'disk', 'cpu'], metrics: { cpu: 0.9, memory: 0.86, disk: 0.95 } });
    expect(throttled[0]?.message).toBe('memory 0.86 > 0.85, disk 0.95 > 0.9, cpu 0.90 > 0.85');
    expect(ctl.status()).toMatchObject({ throttled: true, reason: 'memory', reasons: ['memory', 'disk', 'cpu'] });
  });

  it('throttles when the OOM-kill count rises, not on a count that was already there', async () => {
    const ctl = await open({}, { ...CALM, oomKills: 3 });
    await step({ ...CALM, oomKills: 3 });
    expect(ctl.status().throttled).toBe(false);
    await step({ ...CALM, oomKills: 4 });
    expect(throttled[0]).toMatchObject({ reason: 'oom', reasons: ['oom'], message: 'oom kills 3 → 4' });
  });

  it('resumes only once every signal stayed at or below threshold − margin for the whole cooldown', async () => {
    const ctl = await open({ cooldownMs: 5000 });
    const t0 = performance.now();
    await step({ ...CALM, cpu: 0.9 });
    expect(ctl.status().throttled).toBe(true);
    // Calm samples at +2 s … +5 s: the cooldown (5 s since the breach at +1 s) is not over.
    await step({ ...CALM, cpu: 0.75 }, 4);
    expect(ctl.status().throttled).toBe(true);
    expect(resumed).toHaveLength(0);
    await step({ ...CALM, cpu: 0.75 });
    expect(ctl.status()).toMatchObject({ throttled: false, reason: undefined, reasons: [] });
    expect(resumed).toHaveLength(1);
    expect(resumed[0]?.at).toBe(t0 + 6000);
    expect(resumed[0]?.throttledMs).toBe(5000);
  });

  it('restarts the cooldown while a signal sits between threshold − margin and the threshold', async () => {
    const ctl = await open({ cooldownMs: 3000 });
    await step({ ...CALM, memory: 0.9 });
    // 0.8 is under the threshold (no breach) but over 0.85 − 0.1: not calm.
    await step({ ...CALM, memory: 0.8 }, 10);
    expect(ctl.status().throttled).toBe(true);
    expect(throttled).toHaveLength(1);
    const lastWarm = performance.now();
    await step(CALM, 2);
    expect(ctl.status().throttled).toBe(true);
    await step(CALM);
    expect(resumed[0]?.at).toBe(lastWarm + 3000);
  });

  it('restarts the cooldown on a new breach while throttled and reports its reasons, without a second event', async () => {
    const ctl = await open({ cooldownMs: 3000 });
    await step({ ...CALM, cpu: 0.9 });
    await step(CALM, 2);
    await step({ ...CALM, disk: 0.95 });
    expect(throttled).toHaveLength(1);
    expect(ctl.status()).toMatchObject({ throttled: true, reason: 'disk', reasons: ['disk'] });
    await step(CALM, 2);
    expect(ctl.status().throttled).toBe(true);
    await step(CALM);
    expect(ctl.status().throttled).toBe(false);
  });

  it('resumes at the first calm sample with a cooldown of 0', async () => {
    const ctl = await open({ cooldownMs: 0 });
    await step({ ...CALM, cpu: 0.9 });
    await step({ ...CALM, cpu: 0.8 });
    expect(ctl.status().throttled).toBe(true);
    await step(CALM);
    expect(ctl.status().throttled).toBe(false);
  });

  it('neither throttles nor counts toward resuming on a sample whose reads just failed', async () => {
    const ctl = await open({ cooldownMs: 2000 });
    const failed = { cpu: 0.2, memory: undefined, failures: [new ResourceReadError('memory', 'memory.current is gone')] };
    await step(failed);
    expect(ctl.status().throttled).toBe(false);
    await step({ ...CALM, cpu: 0.95 });
    // The breach was at +2 s; memory fails again at +3 s: that sample restarts the cooldown.
    await step(failed);
    expect(ctl.status().throttled).toBe(true);
    await step(CALM);
    expect(ctl.status().throttled).toBe(true);
    await step(CALM);
    expect(ctl.status().throttled).toBe(false);
    expect(resumed[0]?.throttledMs).toBe(3000);
  });

  it('lets a signal that stays unreadable hold the resume back for one cooldown only', async () => {
    // Finding 9: a read that always failed (a dataDir that is gone) kept admission throttled for ever.
    const ctl = await open({ cooldownMs: 3000 });
    const noDisk = (cpu: number): SourceReading => ({ cpu, memory: 0.2, failures: [new ResourceReadError('disk', 'Cannot statfs /data')] });
    await step(noDisk(0.2));
    await step(noDisk(0.95));
    expect(ctl.status().throttled).toBe(true);
    // Disk unreadable since +1 s holds the resume back until +4 s: the last warm sample is +3 s, the resume +6 s.
    await step(noDisk(0.2), 3);
    expect(ctl.status().throttled).toBe(true);
    await step(noDisk(0.2));
    expect(ctl.status().throttled).toBe(false);
    expect(resumed).toHaveLength(1);
  });

  it('turns a signal off with a threshold of 1', async () => {
    const ctl = await open({ diskThreshold: 1, cooldownMs: 1000 });
    await step({ ...CALM, disk: 0.99 });
    expect(ctl.status().throttled).toBe(false);
    await step({ ...CALM, cpu: 0.9, disk: 0.99 });
    expect(ctl.status().reasons).toEqual(['cpu']);
    // A full disk that does not count does not hold the resume back either.
    await step({ ...CALM, disk: 0.99 });
    expect(ctl.status().throttled).toBe(false);
    expect(warnings.filter((w) => w.signal === 'disk')).toEqual([]);
  });

  it('calls onThrottled and onResumed', async () => {
    const onThrottled = vi.fn();
    const onResumed = vi.fn();
    await open({ onThrottled, onResumed, cooldownMs: 1000 });
    await step({ ...CALM, memory: 0.9 });
    expect(onThrottled).toHaveBeenCalledWith(expect.objectContaining({ reason: 'memory' }));
    await step(CALM, 1);
    expect(onResumed).toHaveBeenCalledWith(expect.objectContaining({ throttledMs: 1000 }));
  });

  it('shows the new state to listeners of the sample and the decision events', async () => {
    const ctl = await open();
    const seen: boolean[] = [];
    ctl.on('sample', () => seen.push(ctl.status().throttled));
    ctl.on('throttled', () => seen.push(ctl.status().throttled));
    await step({ ...CALM, cpu: 0.9 });
    expect(seen).toEqual([true, true]);
  });
});

describe('warnings', () => {
  it('fires once when a signal reaches warningFactor × threshold, and again only after it fell below that by the margin', async () => {
    await open();
    // cpu: threshold 0.85, warning level 0.68, re-armed below 0.58.
    await step({ ...CALM, cpu: 0.7 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ signal: 'cpu', value: 0.7, threshold: 0.85, metrics: { cpu: 0.7 } });
    expect(warnings[0]?.level).toBeCloseTo(0.68, 9);
    await step({ ...CALM, cpu: 0.75 });
    await step({ ...CALM, cpu: 0.6 });
    await step({ ...CALM, cpu: 0.7 });
    expect(warnings).toHaveLength(1);
    await step({ ...CALM, cpu: 0.5 });
    await step({ ...CALM, cpu: 0.7 });
    expect(warnings).toHaveLength(2);
  });

  it('uses warningFactor and warns per signal; a breach throttles instead of warning', async () => {
    await open({ warningFactor: 0.5, memoryThreshold: 0.6 });
    await step({ cpu: 0.43, memory: 0.31, disk: 0.95 });
    expect(warnings.map((w) => [w.signal, w.level])).toEqual([
      ['memory', 0.3],
      ['cpu', 0.425],
    ]);
    expect(throttled[0]?.reasons).toEqual(['disk']);
  });

  it('is emitted for the first sample, except for CPU', async () => {
    const source = new ScriptedSource();
    source.next = { cpu: 0.8, memory: 0.8 };
    c = new ResourceController({ source, maxConcurrentJobs: 4 });
    c.on('warning', (e) => warnings.push(e));
    await c.start();
    expect(warnings.map((w) => w.signal)).toEqual(['memory']);
  });
});
