/**
 * Jobs that declare memory: the budget at every level that limits the
 * process, jobs that can never fit, the minimum slots, memory admitted while
 * a sample is being read, and samples whose memory could not be read.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { JobTooLargeError, ResourceReadError } from '../../src/errors.js';
import { ResourceController, type SourceReading } from '../../src/resource/index.js';
import { FakeTree, GiB, MiB, flush, scripted, v2MemoryStat, type ScriptedSource } from './fake.js';

let c: ResourceController | undefined;
let source: ScriptedSource;

afterEach(async () => {
  await c?.close();
  c = undefined;
  vi.useRealTimers();
});

/** A limit of 1000 bytes keeps the arithmetic readable; the threshold is 0.85. */
const at = (memory: number, extra: SourceReading = {}): SourceReading => ({ cpu: 0.2, memory, memoryLimitBytes: 1000, effectiveCpus: 4, ...extra });

async function open(options: Parameters<typeof scripted>[0], first: SourceReading): Promise<ResourceController> {
  const opened = await scripted(options, first);
  c = opened.c;
  source = opened.source;
  return opened.c;
}

describe('declared memory at every level', () => {
  let tree: FakeTree;
  beforeEach(() => {
    tree = new FakeTree();
  });
  afterEach(() => tree.cleanup());

  it('checks declarations against the container, not the host, when the host is the fuller of the two', async () => {
    // Finding 1: a 1 GiB container at 100 MiB on a 16 GiB host 40 % used was budgeted against 16 GiB.
    tree
      .meminfo(16 * GiB, 0.6 * 16 * GiB)
      .stat([[100, 900]])
      .allowedCpus('0')
      .membership('0::/ctr')
      .write('cgroup/cgroup.controllers', 'cpu memory')
      .v2('ctr', { 'memory.current': 100 * MiB, 'memory.stat': v2MemoryStat(0), 'memory.max': GiB, 'cpu.stat': 'usage_usec 1', 'cpu.max': 'max 100000' });
    c = new ResourceController({ cgroupRoot: tree.cgroupRoot, procRoot: tree.procRoot, maxConcurrentJobs: 4 });
    await c.start();
    expect(c.status().metrics?.memoryLimitBytes).toBe(GiB);
    expect(c.status().metrics?.hostMemory).toBeCloseTo(0.4, 6);
    expect(c.tryAcquire({ memoryBytes: 600 * MiB })).toBeDefined();
    expect(c.tryAcquire({ memoryBytes: 600 * MiB })).toBeUndefined();
    expect(c.status().reservedMemoryBytes).toBe(600 * MiB);
  });

  it('checks declarations against the group even when a limited ancestor is fuller', async () => {
    // Finding 1: leaf 1 GiB at 50 %, ancestor 8 GiB at 55 %: only the ancestor's 8 GiB was checked.
    tree
      .meminfo(64 * GiB, 60 * GiB)
      .stat([[100, 900]])
      .allowedCpus('0')
      .membership('0::/pod/ctr')
      .write('cgroup/cgroup.controllers', 'cpu memory')
      .v2('pod', { 'memory.current': Math.round(0.55 * 8 * 1024) * MiB, 'memory.stat': v2MemoryStat(0), 'memory.max': 8 * GiB })
      .v2('pod/ctr', { 'memory.current': 512 * MiB, 'memory.stat': v2MemoryStat(0), 'memory.max': GiB, 'cpu.stat': 'usage_usec 1', 'cpu.max': 'max 100000' });
    c = new ResourceController({ cgroupRoot: tree.cgroupRoot, procRoot: tree.procRoot, maxConcurrentJobs: 4 });
    await c.start();
    expect(c.status().metrics?.memory).toBeCloseTo(0.55, 3);
    expect(c.status().metrics?.memoryLimitBytes).toBe(8 * GiB);
    // 0.5 + 600/1024 > 0.85 of the container's own limit.
    expect(c.tryAcquire({ memoryBytes: 600 * MiB })).toBeUndefined();
    expect(c.tryAcquire({ memoryBytes: 300 * MiB })).toBeDefined();
  });

  it('checks declarations against the ancestor when it has the least room', async () => {
    // Leaf 4 GiB at 10 %, ancestor 2 GiB (shared with siblings) at 80 %: 1.6 GiB used, 0.1 GiB left under 0.85.
    await open({ maxConcurrentJobs: 4, minConcurrentJobs: 0 }, { cpu: 0.1, memoryScopes: [{ usedBytes: 0.4 * GiB, limitBytes: 4 * GiB }, { usedBytes: 1.6 * GiB, limitBytes: 2 * GiB }] });
    expect(c?.tryAcquire({ memoryBytes: 200 * MiB })).toBeUndefined();
    expect(c?.tryAcquire({ memoryBytes: 50 * MiB })).toBeDefined();
    expect(c?.status().memoryBudgetBytes).toBe(0.85 * 2 * GiB);
  });
});

describe('jobs that can never fit', () => {
  beforeEach(() => vi.useFakeTimers());

  it('refuses at once, with JobTooLargeError, a job declaring more than the threshold × the limit', async () => {
    // Finding 3: with minConcurrentJobs 0 such a job waited at the head of the queue for ever, blocking everyone.
    await open({ maxConcurrentJobs: 4, minConcurrentJobs: 0 }, at(0.05));
    const big = c?.acquire({ memoryBytes: 900, priority: 10 });
    await expect(big).rejects.toBeInstanceOf(JobTooLargeError);
    await expect(big).rejects.toMatchObject({ code: 'OUTPOST_RESOURCE_JOB_TOO_LARGE', memoryBytes: 900, budgetBytes: 850 });
    expect(() => c?.tryAcquire({ memoryBytes: 851 })).toThrow(JobTooLargeError);
    await expect(c?.run(() => 1, { memoryBytes: 10_000 })).rejects.toBeInstanceOf(JobTooLargeError);
    // Nothing is left waiting: the others get their slots.
    expect(c?.status()).toMatchObject({ pendingJobs: 0, activeJobs: 0 });
    expect(c?.tryAcquire()).toBeDefined();
    expect(c?.tryAcquire({ memoryBytes: 800 })).toBeDefined();
  });

  it('refuses a waiting job as soon as a sample shows a limit it can never fit under', async () => {
    await open({ maxConcurrentJobs: 4, minConcurrentJobs: 0 }, at(0.5));
    const waiting = c?.acquire({ memoryBytes: 600 });
    const small = c?.acquire();
    const outcome = waiting?.catch((e: unknown) => e);
    await flush();
    expect(c?.status().pendingJobs).toBe(2);
    source.next = at(0.1, { memoryLimitBytes: 500 });
    await vi.advanceTimersByTimeAsync(1000);
    expect(await outcome).toMatchObject({ code: 'OUTPOST_RESOURCE_JOB_TOO_LARGE', budgetBytes: 425 });
    await expect(small).resolves.toBeDefined();
  });
});

describe('minConcurrentJobs slots and declared memory', () => {
  it('checks the memory of every declared job, even within the minimum', async () => {
    // Finding 4: three 600-byte jobs in a 1000-byte limit were all admitted into three minimum slots.
    await open({ maxConcurrentJobs: 8, minConcurrentJobs: 3 }, at(0.1));
    expect([1, 2, 3].map(() => c?.tryAcquire({ memoryBytes: 600 }) !== undefined)).toEqual([true, false, false]);
    expect(c?.status().reservedMemoryBytes).toBe(600);
    // Undeclared jobs still get the minimum slots.
    expect(c?.tryAcquire()).toBeDefined();
  });

  it('does not admit a declared job that does not fit, even with nothing running', async () => {
    // The container is at 0.5 of its limit: a 400-byte job would take it to 0.9 and risk an OOM kill.
    await open({ maxConcurrentJobs: 8, minConcurrentJobs: 1 }, at(0.5));
    expect(c?.tryAcquire({ memoryBytes: 400 })).toBeUndefined();
    expect(c?.tryAcquire({ memoryBytes: 350 })).toBeDefined();
  });

  it('admits minimum slots while throttled only if their memory fits', async () => {
    vi.useFakeTimers();
    await open({ maxConcurrentJobs: 8, minConcurrentJobs: 3 }, at(0.1));
    source.next = at(0.1, { cpu: 0.99 });
    await vi.advanceTimersByTimeAsync(2000);
    expect(c?.status().throttled).toBe(true);
    expect(c?.tryAcquire({ memoryBytes: 500 })).toBeDefined();
    expect(c?.tryAcquire({ memoryBytes: 500 })).toBeUndefined();
    expect(c?.tryAcquire({ memoryBytes: 200 })).toBeDefined();
    // The minimum is the limit while throttled.
    expect(c?.tryAcquire()).toBeDefined();
    expect(c?.tryAcquire()).toBeUndefined();
  });
});

describe('memory admitted while a sample is being read', () => {
  it('keeps counting a job admitted while a read was in flight, as that read cannot show its memory', async () => {
    // Finding 5: the sample landing after job A started a new epoch that forgot A's 400 bytes.
    const reading = at(0.4);
    let hold = false;
    let land: ((r: SourceReading) => void) | undefined;
    source = { next: reading } as ScriptedSource;
    const held = { read: () => (hold ? new Promise<SourceReading>((r) => (land = r)) : Promise.resolve(source.next)) };
    c = new ResourceController({ source: held, maxConcurrentJobs: 8, minConcurrentJobs: 0 });
    await c.start();
    hold = true;
    const inFlight = c.sample();
    await flush();
    const a = c.tryAcquire({ memoryBytes: 400 });
    expect(a).toBeDefined();
    land?.(reading);
    await inFlight;
    // 0.4 measured + A's 400 not in it + 400 = 1.2 of the limit.
    expect(c.tryAcquire({ memoryBytes: 400 })).toBeUndefined();
    expect(c.tryAcquire({ memoryBytes: 50 })).toBeDefined();
    // A read that started after A shows it: A no longer counts on top of the measurement.
    hold = false;
    source.next = at(0.8);
    await c.sample();
    expect(c.tryAcquire({ memoryBytes: 51 })).toBeUndefined();
    expect(c.tryAcquire({ memoryBytes: 50 })).toBeDefined();
  });
});

describe('samples whose memory could not be read', () => {
  beforeEach(() => vi.useFakeTimers());

  it('keeps checking declarations against the last known limit and measurement', async () => {
    // Finding 6: one failed memory read turned the checks off until the next sample.
    await open({ maxConcurrentJobs: 4, minConcurrentJobs: 0 }, at(0.5));
    expect(c?.tryAcquire({ memoryBytes: 400 })).toBeUndefined();
    source.next = { cpu: 0.1, failures: [new ResourceReadError('memory', 'Cannot read memory.stat')] };
    await vi.advanceTimersByTimeAsync(1000);
    expect(c?.status().metrics?.memory).toBeUndefined();
    expect(() => c?.tryAcquire({ memoryBytes: 1000 })).toThrow(JobTooLargeError);
    expect(c?.tryAcquire({ memoryBytes: 300 })).toBeDefined();
    expect(c?.tryAcquire({ memoryBytes: 300 })).toBeUndefined();
    expect(c?.status()).toMatchObject({ reservedMemoryBytes: 300, memoryBudgetBytes: 850 });
  });
});
