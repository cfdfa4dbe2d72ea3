/**
 * Finding this process's control groups: which group (v2, else v1) from
 * `/proc/self/cgroup`, where its directory is mounted, and the levels up to
 * the hierarchy's root whose limits apply to it. Done once (and again if the
 * process moves); the readers in `cgroup.ts` then read the files found here.
 */
import { access } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { readText } from './read-text.js';

/** Which cgroup hierarchy a reading comes from. */
export type CgroupVersion = 'cgroup-v2' | 'cgroup-v1';

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
  /** The group's path as the kernel names it in `/proc/self/cgroup`. */
  readonly path: string;
  readonly dirs: readonly string[];
}

/** One level of the CPU hierarchy whose quota applies: its directory and, where it has one, its usage counter. */
export interface CpuLevel {
  readonly dir: string;
  /** `cpu.stat` (v2) or `cpuacct.usage` (v1) of this level; `undefined` when it has none (v1 with `cpuacct` mounted apart). */
  readonly usageFile: string | undefined;
}

/** Where CPU is read: the usage counter's file and the levels whose quotas apply (leaf first). */
export interface CpuGroup {
  readonly version: CgroupVersion;
  /** The group's path as the kernel names it in `/proc/self/cgroup`. */
  readonly path: string;
  /** The group's own usage counter. */
  readonly usageFile: string | undefined;
  readonly levels: readonly CpuLevel[];
}

/**
 * What discovery found; a missing part is read from the host instead. The
 * root group counts as missing: its usage is the whole host's and it has no
 * limits, so the host's own figures describe it better.
 */
export interface CgroupLayout {
  readonly memory: MemoryGroup | undefined;
  readonly cpu: CpuGroup | undefined;
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
 * (the host is read instead). The root group counts as nothing.
 */
export async function discoverCgroups(cgroupRoot: string, membership: Membership): Promise<CgroupLayout> {
  let memory: MemoryGroup | undefined;
  let cpu: CpuGroup | undefined;
  const unified = membership.v2 === undefined ? undefined : await v2Mount(cgroupRoot);
  if (unified !== undefined && membership.v2 !== undefined) {
    const path = membership.v2;
    // The root group has no `memory.max` / `cpu.max`; a group that only looks like the root
    // (a cgroup namespace, or a container that sees its own group as the mount) has them.
    if (unified.controllers.has('memory')) {
      const dir = await locate(unified.dir, path, 'memory.current');
      if (dir !== undefined && (dir !== unified.dir || (await exists(join(dir, 'memory.max'))))) memory = { version: 'cgroup-v2', path, dirs: ancestry(unified.dir, dir) };
    }
    if (unified.controllers.has('cpu')) {
      const dir = await locate(unified.dir, path, 'cpu.stat');
      if (dir !== undefined && (dir !== unified.dir || (await exists(join(dir, 'cpu.max'))))) {
        const levels = ancestry(unified.dir, dir).map((d) => ({ dir: d, usageFile: join(d, 'cpu.stat') }));
        cpu = { version: 'cgroup-v2', path, usageFile: join(dir, 'cpu.stat'), levels };
      }
    }
  }
  // In v1 the root group's files look like any other's: its path (`/`) tells it apart.
  const v1 = (controller: string): string | undefined => {
    const path = membership.v1.get(controller)?.path;
    return path === '/' ? undefined : path;
  };
  const memoryPath = v1('memory');
  if (memory === undefined && memoryPath !== undefined) {
    const found = await v1Dir(cgroupRoot, membership, 'memory', 'memory.usage_in_bytes');
    if (found !== undefined) memory = { version: 'cgroup-v1', path: memoryPath, dirs: ancestry(found.mount, found.dir) };
  }
  const cpuPath = v1('cpuacct') ?? v1('cpu');
  if (cpu === undefined && cpuPath !== undefined) {
    const usage = v1('cpuacct') === undefined ? undefined : await v1Dir(cgroupRoot, membership, 'cpuacct', 'cpuacct.usage');
    const quota = v1('cpu') === undefined ? undefined : await v1Dir(cgroupRoot, membership, 'cpu', 'cpu.cfs_quota_us');
    if (usage !== undefined || quota !== undefined) {
      const usageFile = usage === undefined ? undefined : join(usage.dir, 'cpuacct.usage');
      const dirs = quota === undefined ? [] : ancestry(quota.mount, quota.dir);
      // `cpu` and `cpuacct` are usually mounted together: an ancestor's usage is then next to its quota.
      const levels = await Promise.all(
        dirs.map(async (dir, i) => {
          const own = join(dir, 'cpuacct.usage');
          return { dir, usageFile: i === 0 ? usageFile : (await exists(own)) ? own : undefined };
        }),
      );
      cpu = { version: 'cgroup-v1', path: cpuPath, usageFile, levels };
    }
  }
  return { memory, cpu };
}

