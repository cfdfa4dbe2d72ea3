/**
 * Control-group readers: usage, limits and OOM kills of the groups found by
 * `cgroup-discovery.ts`, with asynchronous file reads. Only what the kernel
 * enforces is read: `memory.max` / `memory.limit_in_bytes`, `cpu.max` /
 * `cpu.cfs_quota_us`.
 */
import { join } from 'node:path';
import { ResourceReadError } from '../errors.js';
import type { CgroupVersion, CpuGroup, MemoryGroup } from './cgroup-discovery.js';
import { readText } from './read-text.js';

/**
 * v1 limits at or above this mean "no limit": the kernel reports
 * 9223372036854771712 (LONG_MAX rounded down to a 4 KiB page), or another
 * page-rounded LONG_MAX on larger pages.
 */
const UNLIMITED_BYTES = 2 ** 62;

/** One level of the memory hierarchy that is measured: the leaf always, an ancestor only when it has a limit. */
export interface CgroupMemoryLevel {
  /** Working set: usage minus inactive file cache, in bytes. */
  readonly usedBytes: number;
  /** The level's limit in bytes; `undefined` when unlimited. */
  readonly limitBytes: number | undefined;
}

/** A cgroup memory reading. */
export interface CgroupMemory {
  /** The leaf first, then each limited ancestor. */
  readonly scopes: readonly CgroupMemoryLevel[];
  /** OOM kills counted by the group (`oom_kill`), when the kernel reports them. */
  readonly oomKills: number | undefined;
}

/** An ancestor with a CPU quota, and what its whole subtree used so far. */
export interface CpuAncestor {
  /** Its usage counter (identifies the level across readings). */
  readonly usageFile: string;
  /** Cumulative CPU time of the ancestor's subtree, in microseconds. */
  readonly usageMicros: number;
  /** Its quota, in CPUs (quota ÷ period). */
  readonly quotaCpus: number;
}

/** A cgroup CPU reading. */
export interface CgroupCpu {
  /** Cumulative CPU time of the group, in microseconds; `undefined` when there is no usage counter. */
  readonly usageMicros: number | undefined;
  /** The tightest quota on the way up, in CPUs (quota ÷ period); `undefined` when unlimited. */
  readonly quotaCpus: number | undefined;
  /** Every ancestor with a quota and a usage counter: a quota is shared by the whole subtree under it. */
  readonly ancestors: readonly CpuAncestor[];
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
  const scopes: CgroupMemoryLevel[] = [{ usedBytes: leaf.usedBytes, limitBytes: limits[0] }];
  const limited = group.dirs.slice(1).flatMap((dir, i) => (limits[i + 1] === undefined ? [] : [{ dir, limit: limits[i + 1] }]));
  const upper = await Promise.all(limited.map(async ({ dir, limit }) => ({ usedBytes: (await workingSet(dir, group.version)).usedBytes, limitBytes: limit })));
  scopes.push(...upper);
  const kills = events === undefined ? undefined : field(events, 'oom_kill');
  return { scopes, oomKills: kills === undefined ? undefined : Number(kills) };
}

/**
 * Reads the group's CPU time, the quota of every level on the way up (the
 * tightest is the group's), and the CPU time of each ancestor that has a
 * quota: that quota is shared with the ancestor's other children.
 */
export async function readCgroupCpu(group: CpuGroup): Promise<CgroupCpu> {
  const usage = async (file: string | undefined, required = true): Promise<number | undefined> => {
    if (file === undefined) return undefined;
    const content = required ? await text(file, 'cpu') : await optional(file, 'cpu');
    if (content === undefined) return undefined;
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
  const [usageMicros, quotas] = await Promise.all([usage(group.usageFile), Promise.all(group.levels.map((level) => quota(level.dir)))]);
  let quotaCpus: number | undefined;
  for (const q of quotas) if (q !== undefined && q > 0 && (quotaCpus === undefined || q < quotaCpus)) quotaCpus = q;
  // Only ancestors with a quota are read again (a second, rarely needed round): most groups have none.
  const limited = group.levels.flatMap((level, i) => {
    const q = quotas[i];
    return i > 0 && q !== undefined && q > 0 && level.usageFile !== undefined ? [{ usageFile: level.usageFile, quotaCpus: q }] : [];
  });
  // An ancestor without a usage counter (it should have one) is left out rather than failing the reading.
  const read = await Promise.all(limited.map(async (a) => ({ ...a, usageMicros: await usage(a.usageFile, false) })));
  const ancestors = read.flatMap((a) => (a.usageMicros === undefined ? [] : [{ ...a, usageMicros: a.usageMicros }]));
  return { usageMicros, quotaCpus, ancestors };
}
