/**
 * Control-group readers: find this process's cgroup (v2, else v1) from
 * `/proc/self/cgroup`, walk up to the hierarchy's root for the limits that
 * apply to it, and read usage, limits and OOM kills with asynchronous file
 * reads. Only what the kernel enforces is read: `memory.max` /
 * `memory.limit_in_bytes`, `cpu.max` / `cpu.cfs_quota_us`.
 */
import { access } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { readText } from './read-text.js';
import { ResourceReadError } from '../errors.js';

/** Which cgroup hierarchy a reading comes from. */
export type CgroupVersion = 'cgroup-v2' | 'cgroup-v1';

/**
 * v1 limits at or above this mean "no limit": the kernel reports
 * 9223372036854771712 (LONG_MAX rounded down to a 4 KiB page), or another
 * page-rounded LONG_MAX on larger pages.
 */
const UNLIMITED_BYTES = 2 ** 62;

/** This process's groups, from `/proc/self/cgroup`. */
export interface Membership {
  /** Path in the v2 (unified) hierarchy, from the `0::<path>` line. */
  readonly v2: string | undefined;
  /** v1 controller → its path and the mount's name (`cpu,cpuacct`). */
  readonly v1: ReadonlyMap<string, { readonly path: string; readonly mount: string }>;
}

/** Where memory is read: the group's directory and its ancestors (leaf first, the hierarchy's root excluded). */
export interface MemoryGroup {
  readonly version: CgroupVersion;
  readonly dirs: readonly string[];
}

/** Where CPU is read: the usage counter's file and the directories whose quotas apply (leaf first). */
export interface CpuGroup {
  readonly version: CgroupVersion;
  readonly usageFile: string | undefined;
  readonly quotaDirs: readonly string[];
}

/** What discovery found; a missing part is read from the host instead. */
export interface CgroupLayout {
  readonly memory: MemoryGroup | undefined;
  readonly cpu: CpuGroup | undefined;
  /** The group's path as the kernel names it (v2 path, else the v1 memory path). */
  readonly path: string | undefined;
}

/** One level of the memory hierarchy that is measured: the leaf always, an ancestor only when it has a limit. */
export interface MemoryScope {
  /** Working set: usage minus inactive file cache, in bytes. */
  readonly usedBytes: number;
  /** The level's limit in bytes; `undefined` when unlimited. */
  readonly limitBytes: number | undefined;
}

/** A cgroup memory reading. */
export interface CgroupMemory {
  /** The leaf first, then each limited ancestor. */
  readonly scopes: readonly MemoryScope[];
  /** OOM kills counted by the group (`oom_kill`), when the kernel reports them. */
  readonly oomKills: number | undefined;
}

/** A cgroup CPU reading. */
export interface CgroupCpu {
  /** Cumulative CPU time of the group, in microseconds; `undefined` when there is no usage counter. */
  readonly usageMicros: number | undefined;
  /** The tightest quota on the way up, in CPUs (quota ÷ period); `undefined` when unlimited. */
  readonly quotaCpus: number | undefined;
}

/** Parses `/proc/self/cgroup` (`id:controllers:path` lines). */
export function parseMembership(text: string): Membership {
  let v2: string | undefined;
  const v1 = new Map<string, { path: string; mount: string }>();
  for (const line of text.split('\n')) {
    const a = line.indexOf(':');
    const b = line.indexOf(':', a + 1);
    if (a < 0 || b < 0) continue;
    const controllers = line.slice(a + 1, b);
    const path = line.slice(b + 1).trim();
    if (!path.startsWith('/')) continue;
    if (line.slice(0, a) === '0' && controllers === '') v2 = path;
    else for (const c of controllers.split(',')) if (c !== '' && !c.startsWith('name=')) v1.set(c, { path, mount: controllers });
  }
  return { v2, v1 };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The directory of group `path` under `mount` that holds `file`. Without a
 * cgroup namespace a container sees its own group mounted as the root while
 * `/proc/self/cgroup` still names the host's path: leading components are
 * dropped until a directory matches.
 */
async function locate(mount: string, path: string, file: string): Promise<string | undefined> {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.' && p !== '..');
  for (let i = 0; i <= parts.length; i++) {
    const dir = join(mount, ...parts.slice(i));
    if (await exists(join(dir, file))) return dir;
  }
  return undefined;
}

/** `dir` and its parents up to (not including) `mount`, leaf first; `[mount]` for the root group itself. */
function ancestry(mount: string, dir: string): string[] {
  const dirs: string[] = [];
  for (let d = dir; d !== mount && d.startsWith(mount); d = dirname(d)) dirs.push(d);
  return dirs.length > 0 ? dirs : [mount];
}

async function v2Mount(cgroupRoot: string): Promise<{ dir: string; controllers: Set<string> } | undefined> {
  for (const dir of [cgroupRoot, join(cgroupRoot, 'unified')]) {
    try {
      const text = await readText(join(dir, 'cgroup.controllers'));
      return { dir, controllers: new Set(text.trim().split(/\s+/)) };
    } catch {
      // Not a cgroup2 mount: try the next place.
    }
  }
  return undefined;
}

async function v1Dir(cgroupRoot: string, membership: Membership, controller: string, file: string): Promise<{ mount: string; dir: string } | undefined> {
  const entry = membership.v1.get(controller);
  if (entry === undefined) return undefined;
  for (const mount of new Set([join(cgroupRoot, entry.mount), join(cgroupRoot, controller)])) {
    const dir = await locate(mount, entry.path, file);
    if (dir !== undefined) return { mount, dir };
  }
  return undefined;
}

/**
 * Finds where this process's memory and CPU are accounted: cgroup v2 when
 * the unified hierarchy has the controller, else cgroup v1, else nothing
 * (the host is read instead).
 */
export async function discoverCgroups(cgroupRoot: string, membership: Membership): Promise<CgroupLayout> {
  let memory: MemoryGroup | undefined;
  let cpu: CpuGroup | undefined;
  const unified = membership.v2 === undefined ? undefined : await v2Mount(cgroupRoot);
  if (unified !== undefined && membership.v2 !== undefined) {
    if (unified.controllers.has('memory')) {
      const dir = await locate(unified.dir, membership.v2, 'memory.current');
      if (dir !== undefined) memory = { version: 'cgroup-v2', dirs: ancestry(unified.dir, dir) };
    }
    if (unified.controllers.has('cpu')) {
      const dir = await locate(unified.dir, membership.v2, 'cpu.stat');
      if (dir !== undefined) cpu = { version: 'cgroup-v2', usageFile: join(dir, 'cpu.stat'), quotaDirs: ancestry(unified.dir, dir) };
    }
  }
  if (memory === undefined) {
    const found = await v1Dir(cgroupRoot, membership, 'memory', 'memory.usage_in_bytes');
    if (found !== undefined) memory = { version: 'cgroup-v1', dirs: ancestry(found.mount, found.dir) };
  }
  if (cpu === undefined) {
    const usage = await v1Dir(cgroupRoot, membership, 'cpuacct', 'cpuacct.usage');
    const quota = await v1Dir(cgroupRoot, membership, 'cpu', 'cpu.cfs_quota_us');
    if (usage !== undefined || quota !== undefined) {
      cpu = {
        version: 'cgroup-v1',
        usageFile: usage === undefined ? undefined : join(usage.dir, 'cpuacct.usage'),
        quotaDirs: quota === undefined ? [] : ancestry(quota.mount, quota.dir),
      };
    }
  }
  const pathOf = (version: CgroupVersion | undefined, controllers: readonly string[]): string | undefined =>
    version === 'cgroup-v2' ? membership.v2 : version === 'cgroup-v1' ? controllers.map((c) => membership.v1.get(c)?.path).find((p) => p !== undefined) : undefined;
  return { memory, cpu, path: pathOf(memory?.version, ['memory']) ?? pathOf(cpu?.version, ['cpuacct', 'cpu']) };
}

/** Reads a file as text; failures become {@link ResourceReadError} naming the file. */
async function text(path: string, target: 'cpu' | 'memory'): Promise<string> {
  try {
    return await readText(path);
  } catch (err) {
    throw new ResourceReadError(target, `Cannot read ${path}`, { path, cause: err });
  }
}

/** Like {@link text}, but a missing file is `undefined` (the root group has no limit files). */
async function optional(path: string, target: 'cpu' | 'memory'): Promise<string | undefined> {
  try {
    return await readText(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ResourceReadError(target, `Cannot read ${path}`, { path, cause: err });
  }
}

function integer(value: string | undefined, path: string, target: 'cpu' | 'memory'): number {
  const n = value === undefined ? Number.NaN : Number(value.trim());
  if (!Number.isFinite(n) || n < 0) throw new ResourceReadError(target, `Expected a non-negative number in ${path}, got ${JSON.stringify(value?.slice(0, 40))}`, { path });
  return n;
}

const fieldPatterns = new Map<string, RegExp>();

/** The value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`, `memory.events`). */
function field(content: string, key: string): string | undefined {
  let pattern = fieldPatterns.get(key);
  if (pattern === undefined) {
    pattern = new RegExp(`^${key} (\\d+)\\s*$`, 'm');
    fieldPatterns.set(key, pattern);
  }
  return pattern.exec(content)?.[1];
}

/** A memory limit: `max` (v2) or a v1 sentinel is `undefined`. */
function memoryLimit(content: string | undefined, path: string): number | undefined {
  if (content === undefined || content.trim() === 'max') return undefined;
  const n = integer(content, path, 'memory');
  return n >= UNLIMITED_BYTES ? undefined : n;
}

async function workingSet(dir: string, version: CgroupVersion): Promise<{ usedBytes: number; stat: string }> {
  const usageFile = join(dir, version === 'cgroup-v2' ? 'memory.current' : 'memory.usage_in_bytes');
  const statFile = join(dir, 'memory.stat');
  const [usage, stat] = await Promise.all([text(usageFile, 'memory'), text(statFile, 'memory')]);
  const inactive = version === 'cgroup-v2' ? field(stat, 'inactive_file') : (field(stat, 'total_inactive_file') ?? field(stat, 'inactive_file'));
  if (inactive === undefined) throw new ResourceReadError('memory', `No inactive_file in ${statFile}`, { path: statFile });
  return { usedBytes: Math.max(0, integer(usage, usageFile, 'memory') - Number(inactive)), stat };
}

/**
 * Reads the group's working set and OOM kills, and the limit of every level
 * up to the root; an ancestor with a limit is measured too (its limit is
 * shared with its other children).
 */
export async function readCgroupMemory(group: MemoryGroup): Promise<CgroupMemory> {
  const v2 = group.version === 'cgroup-v2';
  const limitName = v2 ? 'memory.max' : 'memory.limit_in_bytes';
  const [leaf, events, limits] = await Promise.all([
    workingSet(group.dirs[0] as string, group.version),
    optional(join(group.dirs[0] as string, v2 ? 'memory.events' : 'memory.oom_control'), 'memory'),
    Promise.all(group.dirs.map(async (dir) => memoryLimit(await optional(join(dir, limitName), 'memory'), join(dir, limitName)))),
  ]);
  const scopes: MemoryScope[] = [{ usedBytes: leaf.usedBytes, limitBytes: limits[0] }];
  const limited = group.dirs.slice(1).flatMap((dir, i) => (limits[i + 1] === undefined ? [] : [{ dir, limit: limits[i + 1] }]));
  const upper = await Promise.all(limited.map(async ({ dir, limit }) => ({ usedBytes: (await workingSet(dir, group.version)).usedBytes, limitBytes: limit })));
  scopes.push(...upper);
  const kills = events === undefined ? undefined : field(events, 'oom_kill');
  return { scopes, oomKills: kills === undefined ? undefined : Number(kills) };
}

/** Reads the group's CPU time and the tightest quota on the way up. */
export async function readCgroupCpu(group: CpuGroup): Promise<CgroupCpu> {
  const usage = async (): Promise<number | undefined> => {
    const file = group.usageFile;
    if (file === undefined) return undefined;
    const content = await text(file, 'cpu');
    if (group.version === 'cgroup-v1') return integer(content, file, 'cpu') / 1000;
    const usec = field(content, 'usage_usec');
    if (usec === undefined) throw new ResourceReadError('cpu', `No usage_usec in ${file}`, { path: file });
    return Number(usec);
  };
  const quota = async (dir: string): Promise<number | undefined> => {
    if (group.version === 'cgroup-v2') {
      const file = join(dir, 'cpu.max');
      const content = await optional(file, 'cpu');
      if (content === undefined) return undefined;
      const [q, p] = content.trim().split(/\s+/);
      if (q === 'max') return undefined;
      return integer(q, file, 'cpu') / Math.max(1, integer(p ?? '100000', file, 'cpu'));
    }
    const qFile = join(dir, 'cpu.cfs_quota_us');
    const pFile = join(dir, 'cpu.cfs_period_us');
    const [q, p] = await Promise.all([optional(qFile, 'cpu'), optional(pFile, 'cpu')]);
    if (q === undefined || p === undefined || q.trim() === '-1') return undefined;
    return integer(q, qFile, 'cpu') / Math.max(1, integer(p, pFile, 'cpu'));
  };
  const [usageMicros, quotas] = await Promise.all([usage(), Promise.all(group.quotaDirs.map(quota))]);
  let quotaCpus: number | undefined;
  for (const q of quotas) if (q !== undefined && q > 0 && (quotaCpus === undefined || q < quotaCpus)) quotaCpus = q;
  return { usageMicros, quotaCpus };
}
