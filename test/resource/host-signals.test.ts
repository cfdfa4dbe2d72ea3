/**
 * The container's figures decide; the host's are reported, and throttle only
 * with the opt-in `hostCpuThreshold` / `hostMemoryThreshold`.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ResourceController, type ResourceControllerOptions, type ThrottledEvent } from '../../src/resource/index.js';
import { FakeTree, GiB, MiB, scripted, v2MemoryStat } from './fake.js';

let tree: FakeTree;
let c: ResourceController | undefined;
beforeEach(() => {
  tree = new FakeTree();
  // CPU fractions divide by wall time: only the clock is faked; samples are taken with sample().
  vi.useFakeTimers({ toFake: ['performance'] });
});
afterEach(async () => {
  await c?.close();
  c = undefined;
  vi.useRealTimers();
  tree.cleanup();
});

/**
 * A container (2-CPU quota, 4 GiB limit) that is idle — 5 % of its quota, 400 MiB — on a
 * 32-CPU, 64 GiB host that its neighbours keep 90 % busy and 90 % full.
 */
async function idleContainerOnBusyHost(options: ResourceControllerOptions = {}): Promise<{ c: ResourceController; throttled: ThrottledEvent[] }> {
  const cpus = 32;
  let usage = 0;
  let busy = 0;
  let idle = 0;
  const write = (): void => {
    tree.stat(Array.from({ length: cpus }, () => [busy, idle] as const)).v2('ctr', { 'cpu.stat': `usage_usec ${usage}` });
  };
  tree
    .meminfo(64 * GiB, 6.4 * GiB)
    .allowedCpus(`0-${cpus - 1}`)
    .membership('0::/ctr')
    .write('cgroup/cgroup.controllers', 'cpu memory')
    .v2('ctr', { 'memory.current': 400 * MiB, 'memory.stat': v2MemoryStat(0), 'memory.max': 4 * GiB, 'memory.events': 'oom_kill 0', 'cpu.max': '200000 100000' });
  write();
  const ctl = new ResourceController({ cgroupRoot: tree.cgroupRoot, procRoot: tree.procRoot, sampleIntervalMs: 60_000, cooldownMs: 300, ...options });
  c = ctl;
  const throttled: ThrottledEvent[] = [];
  ctl.on('throttled', (e) => throttled.push(e));
  await ctl.start();
  for (let i = 0; i < 5; i++) {
    vi.advanceTimersByTime(100);
    usage += 0.05 * 2 * 100_000;
    busy += 9;
    idle += 1;
    write();
    await ctl.sample();
  }
  return { c: ctl, throttled };
}

describe('the container decides, the host is reported', () => {
  it('does not throttle an idle container on a saturated host, and reports the host', async () => {
    // Design: each signal was max(container, host), so neighbours throttled an idle container.
    const { c: ctl, throttled } = await idleContainerOnBusyHost();
    const s = ctl.status();
    expect(throttled).toEqual([]);
    expect(s).toMatchObject({ throttled: false, maxJobs: 2, source: { cpu: 'cgroup-v2', memory: 'cgroup-v2' } });
    expect(s.metrics?.cpu).toBeCloseTo(0.05, 6);
    expect(s.metrics?.memory).toBeCloseTo(0.1 / 1.024, 6);
    expect(s.metrics?.hostCpu).toBeCloseTo(0.9, 6);
    expect(s.metrics?.hostMemory).toBeCloseTo(0.9, 6);
    expect([ctl.tryAcquire(), ctl.tryAcquire()].every((slot) => slot !== undefined)).toBe(true);
  });

  it('throttles on the host CPU with reason hostCpu when hostCpuThreshold is set', async () => {
    const { c: ctl, throttled } = await idleContainerOnBusyHost({ hostCpuThreshold: 0.85 });
    expect(throttled).toHaveLength(1);
    expect(throttled[0]).toMatchObject({ reason: 'hostCpu', reasons: ['hostCpu'], message: 'hostCpu 0.90 > 0.85' });
    expect(ctl.status()).toMatchObject({ throttled: true, reason: 'hostCpu' });
  });

  it('throttles on the host memory with reason hostMemory when hostMemoryThreshold is set, from the first sample', async () => {
    const { c: ctl, throttled } = await idleContainerOnBusyHost({ hostMemoryThreshold: 0.85 });
    expect(throttled).toHaveLength(1);
    expect(throttled[0]?.reasons).toEqual(['hostMemory']);
    expect(ctl.history()[0]?.hostMemory).toBeCloseTo(0.9, 6);
  });
});

describe('opt-in host thresholds on any source', () => {
  it('warns and resumes on host signals like on the others', async () => {
    vi.useFakeTimers();
    const { c: ctl, source } = await scripted({ hostMemoryThreshold: 0.9, cooldownMs: 1000 }, { cpu: 0.1, memory: 0.1, hostMemory: 0.5 });
    c = ctl;
    const events: string[] = [];
    ctl.on('warning', (e) => events.push(`warning ${e.signal}`));
    ctl.on('throttled', (e) => events.push(`throttled ${e.reason}`));
    ctl.on('resumed', () => events.push('resumed'));
    source.next = { cpu: 0.1, memory: 0.1, hostMemory: 0.75 };
    await vi.advanceTimersByTimeAsync(1000);
    source.next = { cpu: 0.1, memory: 0.1, hostMemory: 0.95 };
    await vi.advanceTimersByTimeAsync(1000);
    source.next = { cpu: 0.1, memory: 0.1, hostMemory: 0.5 };
    await vi.advanceTimersByTimeAsync(2000);
    expect(events).toEqual(['warning hostMemory', 'throttled hostMemory', 'resumed']);
  });
});
