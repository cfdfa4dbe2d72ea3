import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ResourceController, Slot, SourceReading } from '../../src/resource/index.js';
import { scripted, type ScriptedSource } from './fake.js';

const CALM: SourceReading = { cpu: 0.2, memory: 0.2 };
let c: ResourceController;
let source: ScriptedSource;

beforeEach(() => vi.useFakeTimers());
afterEach(async () => {
  await c.close();
  vi.useRealTimers();
});

async function open(options: Parameters<typeof scripted>[0] = {}): Promise<ResourceController> {
  ({ c, source } = await scripted({ maxConcurrentJobs: 8, cooldownMs: 0, ...options }, CALM));
  return c;
}

async function step(reading: SourceReading, samples = 1): Promise<void> {
  source.next = reading;
  for (let i = 0; i < samples; i++) await vi.advanceTimersByTimeAsync(1000);
}

function hold(n: number): Slot[] {
  return Array.from({ length: n }, () => c.tryAcquire() as Slot);
}

describe('adaptiveMaxJobs()', () => {
  it('starts at the ceiling and halves on every breach, down to max(1, minConcurrentJobs)', async () => {
    await open({ minConcurrentJobs: 0 });
    expect(c.adaptiveMaxJobs()).toBe(8);
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      await step({ cpu: 0.95 });
      seen.push(c.adaptiveMaxJobs());
    }
    expect(seen).toEqual([4, 2, 1, 1, 1]);
  });

  it('never recommends less than minConcurrentJobs', async () => {
    await open({ minConcurrentJobs: 3 });
    await step({ memory: 0.95 }, 4);
    expect(c.adaptiveMaxJobs()).toBe(3);
  });

  it('grows by one per calm sample only while every recommended slot is in use', async () => {
    await open();
    await step({ cpu: 0.95 }, 2);
    expect(c.adaptiveMaxJobs()).toBe(2);
    // Calm but idle: room that is not used proves nothing.
    await step(CALM, 3);
    expect(c.adaptiveMaxJobs()).toBe(2);
    const slots = hold(2);
    await step(CALM);
    expect(c.adaptiveMaxJobs()).toBe(3);
    // Two of three in use: no growth.
    await step(CALM);
    expect(c.adaptiveMaxJobs()).toBe(3);
    slots.push(...hold(1));
    await step(CALM);
    expect(c.adaptiveMaxJobs()).toBe(4);
  });

  it('counts a slot held only between two samples as used', async () => {
    await open();
    await step({ cpu: 0.95 }, 3);
    expect(c.adaptiveMaxJobs()).toBe(1);
    hold(1)[0]?.release();
    await step(CALM);
    expect(c.adaptiveMaxJobs()).toBe(2);
  });

  it('holds while the smoothed load is not calm, even if the last sample was', async () => {
    await open();
    hold(4);
    await step({ cpu: 0.95 });
    await step({ cpu: 0.84 });
    expect(c.adaptiveMaxJobs()).toBe(4);
    // 0.7 is calm (≤ 0.75), but smoothed with 0.84 it is 0.77: wait.
    await step({ cpu: 0.7 });
    expect(c.adaptiveMaxJobs()).toBe(4);
    await step({ cpu: 0.7 });
    expect(c.adaptiveMaxJobs()).toBe(5);
  });

  it('never recommends more than the ceiling set with setMaxConcurrentJobs', async () => {
    await open();
    c.setMaxConcurrentJobs(3);
    expect(c.adaptiveMaxJobs()).toBe(3);
    hold(3);
    await step(CALM, 3);
    expect(c.adaptiveMaxJobs()).toBe(3);
  });

  it('only recommends without autoAdapt: the limit in force does not move', async () => {
    await open();
    await step({ cpu: 0.95 }, 2);
    expect(c.status().maxJobs).toBe(8);
  });

  it('applies the recommendation after every sample with autoAdapt', async () => {
    await open({ autoAdapt: true });
    await step({ cpu: 0.95 });
    expect(c.status().maxJobs).toBe(4);
    await step({ cpu: 0.95 });
    expect(c.status().maxJobs).toBe(2);
    // Resumes (cooldown 0) with nothing running: no growth.
    await step(CALM);
    expect(c.status()).toMatchObject({ throttled: false, maxJobs: 2 });
    hold(2);
    await step(CALM);
    expect(c.status().maxJobs).toBe(3);
    expect(c.tryAcquire()).toBeDefined();
    expect(c.tryAcquire()).toBeUndefined();
  });
});
