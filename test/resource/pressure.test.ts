/**
 * Real pressure from stress-ng against the real readers of this machine
 * (cgroup v2, v1 or the host, whichever applies here). Skipped, with the
 * reason printed, where stress-ng is missing (`.ci/run` installs it) or the
 * platform has no /proc.
 *
 * Thresholds are set from this machine's own baseline, measured first, so
 * that only the pressure a test adds can cross them; other work on a shared
 * host moves the baseline but not the verdict.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ResourceController, type ResourceControllerOptions, type ResourceMetrics } from '../../src/resource/index.js';
import { GiB, MiB } from './fake.js';

const hasStressNg = spawnSync('stress-ng', ['--version'], { stdio: 'ignore' }).status === 0;
const skipReason = process.platform !== 'linux' ? `not Linux (${process.platform})` : hasStressNg ? undefined : 'stress-ng is not installed (.ci/run installs it)';
if (skipReason !== undefined) console.warn(`skipping the stress-ng pressure tests: ${skipReason}`);

const hogs = new Set<ChildProcess>();
let controller: ResourceController | undefined;
let scratch: string | undefined;

afterEach(async () => {
  await Promise.all([...hogs].map(stop));
  await controller?.close();
  controller = undefined;
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
});

/** Starts stress-ng and resolves once it has dispatched its stressors. */
function hog(args: readonly string[]): Promise<ChildProcess> {
  // The timeout is a safety net: a hog never outlives a crashed test run by long.
  const child = spawn('stress-ng', [...args, '--timeout', '120s'], { stdio: ['ignore', 'pipe', 'pipe'] });
  hogs.add(child);
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      if (out.includes('dispatching hogs')) resolve(child);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`stress-ng exited with ${code} before dispatching: ${out}`)));
  });
}

/** Stops a hog by its pid (stress-ng stops its stressors on SIGINT) and waits for it to exit. */
function stop(child: ChildProcess): Promise<void> {
  hogs.delete(child);
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGINT');
  });
}

/** A controller on the real machine, with samples recorded with their (monotonic) time. */
async function start(options: ResourceControllerOptions) {
  const samples: { t: number; m: ResourceMetrics }[] = [];
  const c = new ResourceController(options);
  controller = c;
  c.on('sample', (m) => samples.push({ t: performance.now(), m }));
  await c.start();
  return { c, samples };
}

function nextSamples(c: ResourceController, n: number): Promise<ResourceMetrics> {
  return new Promise((resolve) => {
    let seen = 0;
    const on = (m: ResourceMetrics): void => {
      if (++seen < n) return;
      c.off('sample', on);
      resolve(m);
    };
    c.on('sample', on);
  });
}

function event<T>(c: ResourceController, name: 'throttled' | 'resumed', timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${name}' event within ${timeoutMs} ms; last sample ${JSON.stringify(c.status().metrics)}`)), timeoutMs);
    c.once(name, (e) => {
      clearTimeout(timer);
      resolve(e as T);
    });
  });
}

async function meminfoKiB(key: string): Promise<number> {
  const m = new RegExp(`^${key.replace(/[()]/g, '\\$&')}:\\s+(\\d+) kB`, 'm').exec(await readFile('/proc/meminfo', 'utf8'));
  return Number(m?.[1]);
}

/**
 * A new cgroup with a CPU quota of one CPU, made for one test (root only):
 * v1 directories under every mount of `cpu` and `cpuacct`, or one v2 group
 * under the unified root. `undefined` (with the reason) where it cannot be made.
 */
function cpuQuotaGroup(): { dirs: string[]; procs: string[]; name: string } | string {
  if (process.getuid?.() !== 0) return 'not root';
  const name = `outpost-test-${process.pid}`;
  const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' '));
  const v1 = mounts.filter((m) => m[2] === 'cgroup' && (m[3] ?? '').split(',').some((o) => o === 'cpu' || o === 'cpuacct')).map((m) => m[1] as string);
  try {
    if (v1.length > 0) {
      const dirs = [...new Set(v1)].map((mount) => join(mount, name));
      for (const dir of dirs) mkdirSync(dir);
      const quota = dirs.find((d) => existsSync(join(d, 'cpu.cfs_quota_us')));
      if (quota === undefined) return 'no cpu.cfs_quota_us in the v1 hierarchy';
      writeFileSync(join(quota, 'cpu.cfs_quota_us'), '100000');
      writeFileSync(join(quota, 'cpu.cfs_period_us'), '100000');
      return { dirs, procs: dirs.map((d) => join(d, 'cgroup.procs')), name };
    }
    const unified = mounts.find((m) => m[2] === 'cgroup2')?.[1];
    if (unified === undefined || !readFileSync(join(unified, 'cgroup.subtree_control'), 'utf8').includes('cpu')) return 'no cpu controller to delegate';
    const dir = join(unified, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'cpu.max'), '100000 100000');
    return { dirs: [dir], procs: [join(dir, 'cgroup.procs')], name };
  } catch (err) {
    return `cannot make a cgroup: ${(err as Error).message}`;
  }
}

describe.skipIf(skipReason !== undefined)('real pressure (stress-ng)', { timeout: 120_000 }, () => {
  it('throttles with reason cpu within two sampling intervals of a CPU hog', async (ctx) => {
    const interval = 500;
    const threshold = 0.9;
    // Other work on a shared host comes and goes: wait (up to 15 s) for two samples in a row with room below the threshold.
    const { c, samples } = await start({ sampleIntervalMs: interval, cpuThreshold: threshold, cooldownMs: 0, memoryThreshold: 1, diskThreshold: 1 });
    let quiet = 0;
    for (let i = 0; i < 30 && quiet < 2; i++) quiet = ((await nextSamples(c, 1)).cpu ?? 1) <= 0.8 ? quiet + 1 : 0;
    if (quiet < 2 || c.status().throttled) {
      console.warn(`skipping the CPU hog test: this host stayed busy without it (cpu ${samples.slice(-4).map((s) => s.m.cpu?.toFixed(2)).join(', ')})`);
      ctx.skip();
      return;
    }
    const baseline = samples.at(-1)?.m.cpu ?? 0;
    const effective = c.status().metrics?.effectiveCpus ?? 1;
    const throttled = event<{ reason: string; metrics: ResourceMetrics }>(c, 'throttled', 10 * interval);
    await hog(['--cpu', String(Math.ceil(effective))]);
    const before = samples.length;
    const e = await throttled;
    expect(e.reason).toBe('cpu');
    expect(e.metrics.cpu).toBeGreaterThan(threshold);
    // The sample that throttled is at most the second one taken after the hog started.
    expect(samples.length - before).toBeLessThanOrEqual(2);
    console.info(`cpu hog: baseline ${baseline.toFixed(2)}, threshold ${threshold}, throttled at sample ${samples.length - before} after the hog started (cpu ${e.metrics.cpu?.toFixed(2)}, ${c.status().source?.cpu})`);
  });

  it('throttles with reason memory under a memory hog sized from this machine, and resumes only after the cooldown', async () => {
    const interval = 250;
    const cooldownMs = 1500;
    const probe = await start({ sampleIntervalMs: interval, cpuThreshold: 1, diskThreshold: 1 });
    const base = probe.c.status().metrics as ResourceMetrics;
    await probe.c.close();
    const limit = base.memoryLimitBytes as number;
    const used = base.memory as number;
    // A quarter of what is free, at most 4 GiB; the threshold sits halfway through it, so that
    // other processes moving by less than half the hog cannot decide the outcome.
    const hogBytes = Math.floor(Math.min(4 * GiB, 0.25 * (1 - used) * limit));
    const threshold = Math.min(0.95, used + hogBytes / 2 / limit);
    const resumeMargin = hogBytes / 4 / limit;
    const { c, samples } = await start({ sampleIntervalMs: interval, cooldownMs, cpuThreshold: 1, diskThreshold: 1, memoryThreshold: threshold, resumeMargin });

    const throttled = event<{ reason: string; metrics: ResourceMetrics }>(c, 'throttled', 40_000);
    const child = await hog(['--vm', '1', '--vm-bytes', String(hogBytes), '--vm-keep', '--vm-hang', '0']);
    const e = await throttled;
    expect(e.reason).toBe('memory');
    expect(e.metrics.memory).toBeGreaterThan(threshold);

    const resumed = event<{ throttledMs: number }>(c, 'resumed', 40_000);
    await stop(child);
    await resumed;
    const resumedAt = performance.now();
    const calm = (m: ResourceMetrics): boolean => (m.memory ?? 1) <= threshold - resumeMargin;
    const lastHot = samples.findLast((s) => !calm(s.m)) as { t: number };
    expect(resumedAt - lastHot.t).toBeGreaterThanOrEqual(cooldownMs - 1);
    // Calm samples came and went during the cooldown without resuming.
    const calmSamples = samples.filter((s) => s.t > lastHot.t && calm(s.m)).length;
    expect(calmSamples).toBeGreaterThanOrEqual(cooldownMs / interval - 1);
    console.info(
      `memory hog: ${(hogBytes / GiB).toFixed(2)} GiB, baseline ${used.toFixed(3)}, threshold ${threshold.toFixed(3)}, throttled at ${e.metrics.memory?.toFixed(3)} (${c.status().source?.memory}); ` +
        `resumed ${(resumedAt - lastHot.t).toFixed(0)} ms after the last hot sample (cooldown ${cooldownMs} ms, ${calmSamples} calm samples)`,
    );
  });

  it('does not throttle while a large file is read into the page cache', async (ctx) => {
    scratch = mkdtempSync(join(tmpdir(), 'outpost-pagecache-'));
    const fs = statfsSync(scratch);
    if (fs.type === 0x01021994) {
      console.warn('skipping the page-cache test: the temp directory is on tmpfs, whose pages are not reclaimable cache');
      ctx.skip();
      return;
    }
    const probe = await start({ sampleIntervalMs: 250, cpuThreshold: 1, diskThreshold: 1 });
    const base = probe.c.status().metrics as ResourceMetrics;
    await probe.c.close();
    const limit = base.memoryLimitBytes as number;
    const used = base.memory as number;
    const fileBytes = Math.floor(Math.min(3 * GiB, 0.25 * (1 - used) * limit, 0.25 * fs.bavail * fs.bsize) / (8 * MiB)) * 8 * MiB;
    // Counting the file's cache as used memory would cross this twice over.
    const threshold = used + fileBytes / 2 / limit;
    const { c, samples } = await start({ sampleIntervalMs: 250, cpuThreshold: 1, diskThreshold: 1, memoryThreshold: threshold, resumeMargin: fileBytes / 4 / limit });
    const throttles: unknown[] = [];
    c.on('throttled', (e) => throttles.push(e));

    const file = join(scratch, 'big.bin');
    const cachedBefore = await meminfoKiB('Cached');
    const handle = await open(file, 'w');
    const block = Buffer.alloc(8 * MiB, 0x5a);
    for (let written = 0; written < fileBytes; written += block.length) await handle.write(block);
    await handle.sync();
    await handle.close();
    for await (const chunk of createReadStream(file, { highWaterMark: MiB })) void chunk;
    const cachedAfter = await meminfoKiB('Cached');
    await nextSamples(c, 3);

    expect((cachedAfter - cachedBefore) * 1024).toBeGreaterThan(0.8 * fileBytes);
    expect(samples.length).toBeGreaterThan(3);
    expect(throttles).toEqual([]);
    const peak = Math.max(...samples.map((s) => s.m.memory ?? 0));
    expect(peak).toBeLessThanOrEqual(threshold);
    console.info(
      `page cache: ${(fileBytes / GiB).toFixed(2)} GiB read, Cached +${(((cachedAfter - cachedBefore) * 1024) / GiB).toFixed(2)} GiB; ` +
        `memory peaked at ${peak.toFixed(3)} against a threshold of ${threshold.toFixed(3)} (baseline ${used.toFixed(3)}): not throttled`,
    );
  });

  it('does not throttle an idle process in its own cgroup (one CPU of quota) while a CPU hog outside it fills the host', async (ctx) => {
    // Design: a signal was max(container, host), so a hog outside the container throttled it.
    const group = cpuQuotaGroup();
    if (typeof group === 'string') {
      console.warn(`skipping the cgroup CPU test: ${group}`);
      ctx.skip();
      return;
    }
    try {
      await hog(['--cpu', String(availableParallelism())]);
      const script = `
        const { ResourceController } = await import(${JSON.stringify(new URL('../../src/resource/index.ts', import.meta.url).href)});
        const c = new ResourceController({ sampleIntervalMs: 250, cooldownMs: 0, memoryThreshold: 1, diskThreshold: 1 });
        const samples = [];
        c.on('sample', (m) => samples.push({ cpu: m.cpu, hostCpu: m.hostCpu }));
        await c.start();
        while (samples.length < 7) await new Promise((r) => setTimeout(r, 50));
        console.log(JSON.stringify({ samples, source: c.status().source }));
        await c.close();
      `;
      const write = group.procs.map((f) => `echo $$ > ${f}`).join(' && ');
      const { stdout } = await promisify(execFile)('sh', ['-c', `${write} && exec "$0" --import tsx --input-type=module -e "$1"`, process.execPath, script], { timeout: 30_000 });
      const out = JSON.parse(stdout.trim().split('\n').at(-1) as string) as { samples: { cpu?: number; hostCpu?: number }[]; source: { cpu: string; cpuCgroupPath?: string } };
      const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
      const later = out.samples.slice(2);
      expect(median(later.map((m) => m.hostCpu ?? 0))).toBeGreaterThan(0.8);
      expect(median(later.map((m) => m.cpu ?? 1))).toBeLessThan(0.3);
      expect(out.source.cpu).toMatch(/^cgroup-v[12]$/);
      expect(out.source.cpuCgroupPath).toBe(`/${group.name}`);
      console.info(`cgroup cpu: ${out.source.cpu} ${out.source.cpuCgroupPath}; cpu ${later.map((m) => m.cpu?.toFixed(2)).join(' ')}; host ${later.map((m) => m.hostCpu?.toFixed(2)).join(' ')}`);
    } finally {
      await Promise.all([...hogs].map(stop));
      for (const dir of group.dirs) rmdirSync(dir);
    }
  });
});
