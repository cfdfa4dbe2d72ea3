import { statfsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ResourceReadError } from '../../src/errors.js';
import { describeHost, SystemSource } from '../../src/resource/index.js';
import { FakeTree, GiB, MiB, v1MemoryStat, v2MemoryStat } from './fake.js';

let tree: FakeTree;
beforeEach(() => {
  tree = new FakeTree();
  // CPU fractions divide by wall time: only the clock is faked, file reads stay real.
  vi.useFakeTimers({ toFake: ['performance'] });
});
afterEach(() => {
  vi.useRealTimers();
  tree.cleanup();
});

const source = (dataDir?: string): SystemSource => new SystemSource({ cgroupRoot: tree.cgroupRoot, procRoot: tree.procRoot, ...(dataDir === undefined ? {} : { dataDir }) });

/** A host of 4 CPUs and 8 GiB (6 GiB available), the process allowed on all of them. */
function host(t: FakeTree = tree): FakeTree {
  return t
    .meminfo(8 * GiB, 6 * GiB)
    .stat([
      [100, 900],
      [100, 900],
      [100, 900],
      [100, 900],
    ])
    .allowedCpus('0-3');
}

/** A cgroup v2 container at /kubepods/pod1/ctr: 1 GiB limit, half a CPU. */
function v2Container(): void {
  host()
    .membership('0::/kubepods/pod1/ctr')
    .write('cgroup/cgroup.controllers', 'cpuset cpu io memory pids')
    .v2('kubepods', { 'memory.max': 'max', 'cpu.max': 'max 100000' })
    .v2('kubepods/pod1', { 'memory.max': 'max', 'cpu.max': 'max 100000' })
    .v2('kubepods/pod1/ctr', {
      'memory.current': 600 * MiB,
      'memory.stat': v2MemoryStat(100 * MiB),
      'memory.max': GiB,
      'memory.events': 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1',
      'cpu.stat': 'usage_usec 5000000\nuser_usec 4000000\nsystem_usec 1000000',
      'cpu.max': '50000 100000',
    });
}

describe('SystemSource on cgroup v2', () => {
  it('measures the working set against the group limit and CPU against the quota', async () => {
    v2Container();
    const s = source();
    const first = await s.read();
    expect(first.failures).toEqual([]);
    expect(first.memory).toBeCloseTo(500 / 1024, 6);
    expect(first).toMatchObject({ cgroupMemory: first.memory, hostMemory: 0.25, memoryUsedBytes: 500 * MiB, memoryLimitBytes: GiB, oomKills: 1, effectiveCpus: 0.5 });
    expect(s.describe()).toEqual({ cpu: 'cgroup-v2', memory: 'cgroup-v2', cpuCgroupPath: '/kubepods/pod1/ctr', memoryCgroupPath: '/kubepods/pod1/ctr', dataDir: undefined });

    // 0.4 CPU-seconds in 1 s, against a quota of half a CPU: 80 %.
    vi.advanceTimersByTime(1000);
    tree.v2('kubepods/pod1/ctr', { 'cpu.stat': 'usage_usec 5400000' });
    const second = await s.read();
    expect(second.cgroupCpu).toBeCloseTo(0.8, 3);
    expect(second.cpu).toBeCloseTo(0.8, 3);
  });

  it('reports no CPU figure in the first reading: CPU is a rate', async () => {
    v2Container();
    const first = await source().read();
    expect(first.cpu).toBeUndefined();
    expect(first.cgroupCpu).toBeUndefined();
    expect(first.hostCpu).toBeUndefined();
  });

  it('divides by the CPUs the process may run on when the quota is unlimited', async () => {
    v2Container();
    tree.v2('kubepods/pod1/ctr', { 'cpu.max': 'max 100000' }).allowedCpus('0-1');
    const s = source();
    await s.read();
    vi.advanceTimersByTime(2000);
    // 1 CPU-second in 2 s on 2 allowed CPUs: 25 %.
    tree.v2('kubepods/pod1/ctr', { 'cpu.stat': 'usage_usec 6000000' });
    const r = await s.read();
    expect(r.effectiveCpus).toBe(2);
    expect(r.cgroupCpu).toBeCloseTo(0.25, 3);
  });

  it('takes the tightest CPU quota and memory limit on the way up', async () => {
    v2Container();
    tree.v2('kubepods/pod1/ctr', { 'cpu.max': '400000 100000', 'memory.max': 'max' });
    tree.v2('kubepods', { 'cpu.max': '150000 100000' });
    tree.v2('kubepods/pod1', { 'memory.max': 800 * MiB, 'memory.current': 740 * MiB, 'memory.stat': v2MemoryStat(40 * MiB) });
    const r = await source().read();
    expect(r.effectiveCpus).toBe(1.5);
    // The pod's limit is shared with the container's siblings: its own working set counts.
    expect(r.memory).toBeCloseTo(700 / 800, 6);
    expect(r.memoryLimitBytes).toBe(800 * MiB);
    expect(r.memoryUsedBytes).toBe(700 * MiB);
  });

  it('does not count inactive page cache as used memory', async () => {
    v2Container();
    // 900 MiB charged, 800 MiB of it inactive file cache, 50 MiB active file cache (still counted).
    tree.v2('kubepods/pod1/ctr', { 'memory.current': 900 * MiB, 'memory.stat': v2MemoryStat(800 * MiB, 50 * MiB) }).meminfo(8 * GiB, 7.95 * GiB);
    const r = await source().read();
    expect(r.memoryUsedBytes).toBe(100 * MiB);
    expect(r.cgroupMemory).toBeCloseTo(100 / 1024, 6);
    expect(r.memory).toBe(r.cgroupMemory);
  });

  it('caps an oversized limit at MemTotal', async () => {
    v2Container();
    tree.v2('kubepods/pod1/ctr', { 'memory.max': 64 * GiB, 'memory.current': 2 * GiB, 'memory.stat': v2MemoryStat(0) });
    const r = await source().read();
    expect(r.memoryLimitBytes).toBe(8 * GiB);
    expect(r.cgroupMemory).toBeCloseTo(0.25, 6);
  });

  it('measures memory in the container, not on the host, and reports the host apart', async () => {
    v2Container();
    // Neighbours fill the host; the container is at half its own limit.
    tree.meminfo(8 * GiB, 0.5 * GiB);
    const r = await source().read();
    expect(r.cgroupMemory).toBeCloseTo(500 / 1024, 6);
    expect(r.memory).toBe(r.cgroupMemory);
    expect(r.memoryLimitBytes).toBe(GiB);
    expect(r.hostMemory).toBeCloseTo(7.5 / 8, 6);
  });

  it('measures CPU in the container, not on the host, and reports the host apart', async () => {
    v2Container();
    const s = source();
    await s.read();
    // Neighbours keep every host CPU 90 % busy; the container used 5 % of its half CPU.
    tree.stat([
      [1000, 1000],
      [1000, 1000],
      [1000, 1000],
      [1000, 1000],
    ]);
    tree.v2('kubepods/pod1/ctr', { 'cpu.stat': 'usage_usec 5025000' });
    vi.advanceTimersByTime(1000);
    const r = await s.read();
    expect(r.cgroupCpu).toBeCloseTo(0.05, 6);
    expect(r.cpu).toBe(r.cgroupCpu);
    expect(r.hostCpu).toBeCloseTo(0.9, 6);
  });

  it('reports the busy time of the allowed CPUs on the host, every process included', async () => {
    v2Container();
    tree.allowedCpus('2-3');
    const s = source();
    await s.read();
    // CPUs 0 and 1 (not ours) fully busy; 2 and 3 busy half the time.
    tree.stat([
      [1100, 900],
      [1100, 900],
      [600, 1400],
      [600, 1400],
    ]);
    vi.advanceTimersByTime(1000);
    const r = await s.read();
    expect(r.hostCpu).toBeCloseTo(0.5, 6);
    expect(r.cgroupCpu).toBe(0);
    expect(r.cpu).toBe(0);
  });

  it('finds the group when a container sees its own group as the root (no cgroup namespace)', async () => {
    host()
      .membership('0::/system.slice/docker-abc.scope')
      .write('cgroup/cgroup.controllers', 'cpu memory')
      .v2('', { 'memory.current': 300 * MiB, 'memory.stat': v2MemoryStat(0), 'memory.max': 600 * MiB, 'cpu.stat': 'usage_usec 1', 'cpu.max': '100000 100000' });
    const r = await source().read();
    expect(r.failures).toEqual([]);
    expect(r.memory).toBeCloseTo(0.5, 6);
    expect(r.effectiveCpus).toBe(1);
  });
});

describe('SystemSource: where each signal comes from', () => {
  it('reads CPU from the host when the process is in the root cgroup v1 (its usage is the whole host\'s)', async () => {
    // Finding 8: 8 CPUs, pinned to 0-1 (idle) while 2-5 are busy; the root group's counter sees all of it.
    const stat = (k: number): FakeTree => tree.stat(Array.from({ length: 8 }, (_, i) => (i >= 2 && i < 6 ? [k * 100, 0] : [0, k * 100]) as [number, number]));
    tree
      .meminfo(16 * GiB, 12 * GiB)
      .allowedCpus('0-1')
      .membership('3:cpuset:/\n2:cpu,cpuacct:/\n1:memory:/')
      .write('cgroup/cpu,cpuacct/cpuacct.usage', 0)
      .write('cgroup/cpu,cpuacct/cpu.cfs_quota_us', -1)
      .write('cgroup/cpu,cpuacct/cpu.cfs_period_us', 100000);
    stat(0);
    const s = source();
    await s.read();
    vi.advanceTimersByTime(1000);
    tree.write('cgroup/cpu,cpuacct/cpuacct.usage', 4e9);
    stat(1);
    const r = await s.read();
    expect(s.describe()).toEqual({ cpu: 'host', memory: 'host', cpuCgroupPath: undefined, memoryCgroupPath: undefined, dataDir: undefined });
    expect(r.cpu).toBe(0);
    expect(r.cgroupCpu).toBeUndefined();
    expect(r.effectiveCpus).toBe(2);
  });

  it('reads CPU and memory from the host when the process is in the root cgroup v2', async () => {
    // The root group has cpu.stat but neither cpu.max nor memory.max.
    host().membership('0::/').write('cgroup/cgroup.controllers', 'cpu memory').v2('', { 'cpu.stat': 'usage_usec 1', 'memory.current': GiB, 'memory.stat': v2MemoryStat(0) });
    const s = source();
    const r = await s.read();
    expect(s.describe()).toMatchObject({ cpu: 'host', memory: 'host' });
    expect(r.memory).toBe(0.25);
  });

  it('reads a group that is the root of its cgroup namespace (it has cpu.max and memory.max)', async () => {
    host()
      .membership('0::/')
      .write('cgroup/cgroup.controllers', 'cpu memory')
      .v2('', { 'cpu.stat': 'usage_usec 1', 'cpu.max': '200000 100000', 'memory.current': 512 * MiB, 'memory.stat': v2MemoryStat(0), 'memory.max': GiB });
    const s = source();
    const r = await s.read();
    expect(s.describe()).toMatchObject({ cpu: 'cgroup-v2', memory: 'cgroup-v2', cpuCgroupPath: '/', memoryCgroupPath: '/' });
    expect(r).toMatchObject({ memory: 0.5, effectiveCpus: 2 });
  });

  it('names the cgroup of each signal apart (memory in a group, CPU in the root)', async () => {
    // Minor 2: `cgroupPath` named the memory group even for a CPU figure read from the host.
    host()
      .membership('4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/')
      .write('cgroup/memory/process_api/abc/memory.usage_in_bytes', GiB)
      .write('cgroup/memory/process_api/abc/memory.limit_in_bytes', '9223372036854771712')
      .write('cgroup/memory/process_api/abc/memory.stat', v1MemoryStat(0))
      .write('cgroup/cpuacct/cpuacct.usage', 1)
      .write('cgroup/cpu/cpu.cfs_quota_us', -1)
      .write('cgroup/cpu/cpu.cfs_period_us', 100000);
    const s = source();
    const r = await s.read();
    expect(s.describe()).toEqual({ cpu: 'host', memory: 'cgroup-v1', cpuCgroupPath: undefined, memoryCgroupPath: '/process_api/abc', dataDir: undefined });
    expect(r.memory).toBeCloseTo(1 / 8, 6);
  });

  it('counts what an ancestor with a CPU quota uses against that quota', async () => {
    // Finding 7: /pod has 2 CPUs for /pod/agent (this process, no quota of its own) and a busy sidecar.
    host()
      .membership('0::/pod/agent')
      .write('cgroup/cgroup.controllers', 'cpu memory')
      .v2('pod', { 'cpu.max': '200000 100000', 'cpu.stat': 'usage_usec 0', 'memory.max': 'max' })
      .v2('pod/agent', { 'cpu.max': 'max 100000', 'cpu.stat': 'usage_usec 0', 'memory.current': 100 * MiB, 'memory.stat': v2MemoryStat(0), 'memory.max': 'max' });
    const s = source();
    await s.read();
    vi.advanceTimersByTime(1000);
    // Over 1 s the agent used 0.2 CPU-s, the pod 1.8 CPU-s: 90 % of its quota.
    tree.v2('pod/agent', { 'cpu.stat': 'usage_usec 200000' }).v2('pod', { 'cpu.stat': 'usage_usec 1800000' });
    const r = await s.read();
    expect(r.effectiveCpus).toBe(2);
    expect(r.cgroupCpu).toBeCloseTo(0.9, 6);
    expect(r.cpu).toBe(r.cgroupCpu);
  });

  it('lists every level memory is measured on: the group and each ancestor with a limit', async () => {
    v2Container();
    tree.v2('kubepods/pod1', { 'memory.max': 4 * GiB, 'memory.current': 3 * GiB, 'memory.stat': v2MemoryStat(GiB) });
    const r = await source().read();
    expect(r.memoryScopes).toEqual([
      { usedBytes: 500 * MiB, limitBytes: GiB },
      { usedBytes: 2 * GiB, limitBytes: 4 * GiB },
    ]);
    expect(r.memory).toBe(0.5);
  });

  it('measures the host as the one level when the process is in no cgroup', async () => {
    host();
    expect((await source().read()).memoryScopes).toEqual([{ usedBytes: 2 * GiB, limitBytes: 8 * GiB }]);
  });
});

describe('SystemSource on cgroup v1', () => {
  function v1Container(limit: number | string, quota: number): void {
    host()
      .membership('12:pids:/docker/abc\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/')
      .write('cgroup/memory/memory.limit_in_bytes', '9223372036854771712')
      .write('cgroup/memory/docker/memory.limit_in_bytes', '9223372036854771712')
      .write('cgroup/memory/docker/abc/memory.usage_in_bytes', 1536 * MiB)
      .write('cgroup/memory/docker/abc/memory.limit_in_bytes', limit)
      .write('cgroup/memory/docker/abc/memory.stat', v1MemoryStat(512 * MiB))
      .write('cgroup/memory/docker/abc/memory.oom_control', 'oom_kill_disable 0\nunder_oom 0\noom_kill 2')
      .write('cgroup/cpu,cpuacct/docker/abc/cpuacct.usage', 7_000_000_000)
      .write('cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us', quota)
      .write('cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us', 100000)
      .write('cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us', -1)
      .write('cgroup/cpu,cpuacct/docker/cpu.cfs_period_us', 100000);
  }

  it('reads the limit, the working set, the quota and OOM kills', async () => {
    v1Container(2 * GiB, 150000);
    const s = source();
    const r = await s.read();
    expect(r.failures).toEqual([]);
    expect(s.describe()).toEqual({ cpu: 'cgroup-v1', memory: 'cgroup-v1', cpuCgroupPath: '/docker/abc', memoryCgroupPath: '/docker/abc', dataDir: undefined });
    expect(r).toMatchObject({ memoryUsedBytes: GiB, memoryLimitBytes: 2 * GiB, memory: 0.5, oomKills: 2, effectiveCpus: 1.5 });
    vi.advanceTimersByTime(1000);
    tree.write('cgroup/cpu,cpuacct/docker/abc/cpuacct.usage', 7_750_000_000);
    expect((await s.read()).cgroupCpu).toBeCloseTo(0.75 / 1.5, 3);
  });

  it('treats the 9223372036854771712 sentinel and a -1 quota as unlimited', async () => {
    v1Container('9223372036854771712', -1);
    const r = await source().read();
    // The denominator is MemTotal; the CPUs the process may run on bound the CPU.
    expect(r.memoryLimitBytes).toBe(8 * GiB);
    expect(r.cgroupMemory).toBeCloseTo(1 / 8, 6);
    expect(r.effectiveCpus).toBe(4);
  });

  it('uses v1 when the unified hierarchy lacks the controllers (hybrid mode)', async () => {
    v1Container(2 * GiB, -1);
    // cpu.stat exists in every v2 group, with or without the controller; memory.current is a stray file here.
    tree.write('cgroup/unified/cgroup.controllers', 'hugetlb').write('cgroup/unified/cpu.stat', 'usage_usec 1').write('cgroup/unified/memory.current', 1);
    const s = source();
    await s.read();
    expect(s.describe()).toMatchObject({ cpu: 'cgroup-v1', memory: 'cgroup-v1' });
  });
});

describe('SystemSource on the host', () => {
  it('reads /proc when the process is in no cgroup it can see', async () => {
    host();
    const s = source();
    const first = await s.read();
    expect(s.describe()).toEqual({ cpu: 'host', memory: 'host', cpuCgroupPath: undefined, memoryCgroupPath: undefined, dataDir: undefined });
    expect(first).toMatchObject({ memory: 0.25, hostMemory: 0.25, memoryLimitBytes: 8 * GiB, memoryUsedBytes: 2 * GiB, effectiveCpus: 4, cgroupMemory: undefined, oomKills: undefined });
    tree.stat([
      [190, 910],
      [190, 910],
      [190, 910],
      [190, 910],
    ]);
    expect((await s.read()).cpu).toBeCloseTo(0.9, 6);
  });

  it('reads the whole of a large /proc/stat (a host with 1024 CPUs)', async () => {
    host().allowedCpus('1000-1023');
    const busy = (n: number): (readonly [number, number])[] => Array.from({ length: 1024 }, (_, i) => [i >= 1000 ? n : 0, 1000 - (i >= 1000 ? n : 0)] as const);
    tree.stat(busy(0));
    const s = source();
    await s.read();
    tree.stat(busy(300).map(([b, i]) => [b, i + 1000] as const));
    const r = await s.read();
    expect(r.effectiveCpus).toBe(24);
    expect(r.hostCpu).toBeCloseTo(0.3, 6);
  });

  it('falls back to MemFree + Inactive(file) on kernels without MemAvailable', async () => {
    host().write('proc/meminfo', `MemTotal: ${(8 * GiB) / 1024} kB\nMemFree: ${GiB / 1024} kB\nInactive(file): ${GiB / 1024} kB`);
    expect((await source().read()).memory).toBeCloseTo(0.75, 6);
  });

  it('falls back to portable readings (os.cpus, systeminformation) without /proc', async () => {
    const s = source();
    const first = await s.read();
    expect(s.describe()).toMatchObject({ cpu: 'portable', memory: 'portable' });
    expect(first.failures).toEqual([]);
    expect(first.memory).toBeGreaterThan(0);
    expect(first.memory).toBeLessThan(1);
    expect(first.cpu).toBeUndefined();
    await new Promise((r) => setTimeout(r, 20));
    const second = await s.read();
    expect(second.cpu).toBeGreaterThanOrEqual(0);
    expect(second.cpu).toBeLessThanOrEqual(1);
  });

  it('measures the disk holding dataDir as df does', async () => {
    host();
    const r = await source(tree.root).read();
    const s = statfsSync(tree.root);
    const used = (s.blocks - s.bfree) * s.bsize;
    expect(r.diskTotalBytes).toBeGreaterThan(0);
    // Other processes write to the same disk: compare loosely.
    expect(Math.abs((r.diskUsedBytes ?? 0) - used) / (used + s.bavail * s.bsize)).toBeLessThan(0.01);
    expect(r.disk).toBeCloseTo((r.diskUsedBytes ?? 0) / (r.diskTotalBytes ?? 1), 9);
  });
});

describe('SystemSource when files are missing or unreadable', () => {
  it('leaves memory unknown while memory.current is missing, names the file, and recovers', async () => {
    v2Container();
    const s = source();
    await s.read();
    tree.remove('cgroup/kubepods/pod1/ctr/memory.current');
    vi.advanceTimersByTime(1000);
    const during = await s.read();
    expect(during.memory).toBeUndefined();
    expect(during.memoryLimitBytes).toBeUndefined();
    expect(during.cpu).toBeDefined();
    expect(during.failures).toHaveLength(1);
    const [err] = during.failures ?? [];
    expect(err).toBeInstanceOf(ResourceReadError);
    expect(err).toMatchObject({ code: 'OUTPOST_RESOURCE_READ_FAILED', target: 'memory', path: `${tree.cgroupRoot}/kubepods/pod1/ctr/memory.current` });
    expect((err?.cause as NodeJS.ErrnoException).code).toBe('ENOENT');
    tree.v2('kubepods/pod1/ctr', { 'memory.current': 600 * MiB });
    const after = await s.read();
    expect(after.failures).toEqual([]);
    expect(after.memory).toBeCloseTo(500 / 1024, 6);
    expect(s.describe()?.memory).toBe('cgroup-v2');
  });

  it('leaves a signal unknown when its file cannot be read or parsed', async () => {
    v2Container();
    const s = source();
    await s.read();
    // A directory where the file should be: EISDIR. Root ignores permission bits, so chmod would not do.
    tree.remove('cgroup/kubepods/pod1/ctr/memory.stat').write('cgroup/kubepods/pod1/ctr/memory.stat/x', 1);
    tree.v2('kubepods/pod1/ctr', { 'cpu.stat': 'garbage' });
    tree.stat([
      [200, 1800],
      [200, 1800],
      [200, 1800],
      [200, 1800],
    ]);
    const r = await s.read();
    // The host's half of each signal was read, but a signal is unknown when any of its inputs failed.
    expect(r.hostCpu).toBeCloseTo(0.1, 6);
    expect(r.hostMemory).toBe(0.25);
    expect(r.memory).toBeUndefined();
    expect(r.cpu).toBeUndefined();
    expect(r.failures?.map((e) => e.target).sort()).toEqual(['cpu', 'memory']);
    expect(r.failures?.find((e) => e.target === 'cpu')?.message).toMatch(/No usage_usec in .*cpu\.stat/);
  });

  it('leaves memory unknown when /proc/meminfo is missing, and disk unknown when dataDir is gone', async () => {
    host();
    const s = source(`${tree.root}/gone`);
    tree.remove('proc/meminfo');
    const r = await s.read();
    expect(r.memory).toBeUndefined();
    expect(r.disk).toBeUndefined();
    expect(r.failures?.map((e) => [e.target, e.path])).toEqual(
      expect.arrayContaining([
        ['memory', `${tree.procRoot}/meminfo`],
        ['disk', `${tree.root}/gone`],
      ]),
    );
  });

  it('finds the new group after the process moved to another cgroup', async () => {
    v2Container();
    const s = source();
    await s.read();
    tree.v2('other', { 'memory.current': 100 * MiB, 'memory.stat': v2MemoryStat(0), 'memory.max': 200 * MiB, 'cpu.stat': 'usage_usec 1', 'cpu.max': 'max 100000' });
    tree.remove('cgroup/kubepods/pod1/ctr').membership('0::/other');
    expect((await s.read()).memory).toBeUndefined();
    const moved = await s.read();
    expect(moved.failures).toEqual([]);
    expect(moved.memory).toBeCloseTo(0.5, 6);
    expect(s.describe()).toMatchObject({ cpuCgroupPath: '/other', memoryCgroupPath: '/other' });
  });

  it('gives no CPU figure when the usage counter went backwards', async () => {
    v2Container();
    const s = source();
    await s.read();
    vi.advanceTimersByTime(1000);
    tree.v2('kubepods/pod1/ctr', { 'cpu.stat': 'usage_usec 10' });
    expect((await s.read()).cgroupCpu).toBeUndefined();
  });
});

describe('describeHost', () => {
  it('describes the real host and the limits of this process', async () => {
    vi.useRealTimers();
    const h = await describeHost();
    expect(h.platform).toBe(process.platform);
    expect(h.logicalCpus).toBeGreaterThan(0);
    expect(h.memoryTotalBytes).toBeGreaterThan(0);
    expect(h.effectiveCpus).toBeGreaterThan(0);
    expect(h.memoryLimitBytes).toBeLessThanOrEqual(h.memoryTotalBytes);
    expect(h.source?.memory).toMatch(/^(cgroup-v2|cgroup-v1|host|portable)$/);
  });
});
