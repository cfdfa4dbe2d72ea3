/**
 * The built-in {@link ResourceSource}, {@link SystemSource}: each signal from
 * cgroup v2, else cgroup v1, else the host (`/proc`), else portable readings;
 * every read asynchronous. Tests point `cgroupRoot` and `procRoot` at fake
 * directories.
 */
import { access } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { ResourceReadError, type ResourceReadTarget } from '../errors.js';
import * as v from '../internal/validate.js';
import { discoverCgroups, parseMembership, type CgroupLayout, type CpuGroup, type MemoryGroup } from './cgroup-discovery.js';
import { readCgroupCpu, readCgroupMemory, type CgroupCpu, type CgroupMemory } from './cgroup.js';
import { readDisk, type DiskUsage } from './disk.js';
import { portableCpuTicks, portableMemory } from './portable.js';
import { readText } from './read-text.js';
import { parseAllowedCpus, parseMeminfo, parseProcStat, type CpuTicks, type HostMemory } from './proc.js';
import type { MemoryScope, ResourceSource, SourceInfo, SourceReading } from './reading.js';

/** Options of {@link SystemSource}. */
export interface SystemSourceOptions {
  /** Where the cgroup hierarchies are mounted. @default '/sys/fs/cgroup' */
  readonly cgroupRoot?: string | undefined;
  /** Where procfs is mounted; `<procRoot>/self/cgroup` names the group. @default '/proc' */
  readonly procRoot?: string | undefined;
  /** A directory on the filesystem whose usage is the `disk` signal; no disk signal without it. */
  readonly dataDir?: string | undefined;
}

interface Layout {
  readonly portable: boolean;
  readonly membership: string | undefined;
  /** The group CPU usage is read from; `undefined`: the host's. */
  readonly cpu: CpuGroup | undefined;
  /** The group whose CPU quotas apply (the same as {@link cpu}, or one without a usage counter). */
  readonly quota: CpuGroup | undefined;
  /** The group memory is read from; `undefined`: the host's. */
  readonly memory: MemoryGroup | undefined;
  /** CPUs this process may run on (`Cpus_allowed_list`); `undefined`: all of them. */
  readonly cpuSet: ReadonlySet<number> | undefined;
  readonly allowedCpus: number;
}

type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false };
const SKIPPED: Outcome<undefined> = { ok: true, value: undefined };

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

const clamp01 = (x: number): number => Math.min(1, Math.max(0, x));

/**
 * Reads what the kernel enforces on this process: the memory and CPU usage
 * and limits of its cgroup (v2, else v1) — or, where it is in none (or in the
 * root group), the host's — and the disk holding `dataDir`. The host's
 * available memory and the busy time of the CPUs the process may run on are
 * read as well and reported (`hostMemory`, `hostCpu`). Every read is an
 * asynchronous file read; nothing runs a shell command. On platforms without
 * `/proc` it falls back to `os.cpus()` and `systeminformation`.
 *
 * @example
 * ```ts
 * const source = new SystemSource({ dataDir: '/var/lib/agent' });
 * await source.read(); // the first reading has no CPU figure: CPU is a rate
 * const { cpu, memory, disk } = await source.read();
 * ```
 */
export class SystemSource implements ResourceSource {
  readonly #cgroupRoot: string;
  readonly #procRoot: string;
  readonly #dataDir: string | undefined;
  #layout: Promise<Layout> | undefined;
  #recheck = false;
  /** Cumulative CPU time and when it was read, per usage counter (the group's and its limited ancestors'). */
  #lastUsage = new Map<string, { readonly usageMicros: number; readonly at: number }>();
  #lastHostCpu: CpuTicks | undefined;
  /** MemTotal from the last `/proc/meminfo` that could be read: it caps every cgroup limit. */
  #memTotal: number | undefined;
  #info: SourceInfo | undefined;

  /** @throws {@link InvalidOptionError} when a path is not a non-empty string */
  constructor(options: SystemSourceOptions = {}) {
    if (typeof options !== 'object' || options === null) v.fail('SystemSource options', 'an object', options);
    v.knownKeys('SystemSource', options, ['cgroupRoot', 'procRoot', 'dataDir']);
    this.#cgroupRoot = v.nonEmptyString('cgroupRoot', options.cgroupRoot ?? '/sys/fs/cgroup');
    this.#procRoot = v.nonEmptyString('procRoot', options.procRoot ?? '/proc');
    this.#dataDir = options.dataDir === undefined ? undefined : v.nonEmptyString('dataDir', options.dataDir);
  }

  /** Which readers are in use; `undefined` before the first {@link read}. */
  describe(): SourceInfo | undefined {
    return this.#info;
  }

  /** Takes one reading; never rejects (what fails is listed in `failures`). */
  async read(): Promise<SourceReading> {
    const layout = await this.#detect();
    const failures: ResourceReadError[] = [];
    const attempt = async <T>(target: ResourceReadTarget, fn: () => Promise<T>): Promise<Outcome<T>> => {
      try {
        return { ok: true, value: await fn() };
      } catch (err) {
        failures.push(err instanceof ResourceReadError ? err : new ResourceReadError(target, `Cannot read ${target}`, { cause: err }));
        return { ok: false };
      }
    };
    const { quota: cpu, memory } = layout;
    const [cgCpu, hostTicks, cgMemory, hostMemory, disk] = await Promise.all([
      cpu === undefined ? SKIPPED : attempt('cpu', async () => ({ ...(await readCgroupCpu(cpu)), at: performance.now() })),
      attempt('cpu', () => (layout.portable ? Promise.resolve(portableCpuTicks()) : this.#hostTicks(layout))),
      memory === undefined ? SKIPPED : attempt('memory', () => readCgroupMemory(memory)),
      attempt('memory', () => (layout.portable ? portableMemory() : this.#hostMemory())),
      this.#dataDir === undefined ? SKIPPED : attempt('disk', () => readDisk(this.#dataDir as string)),
    ]);
    if ((!cgCpu.ok || !cgMemory.ok) && !layout.portable) this.#recheck = true;
    if (hostMemory.ok) this.#memTotal = hostMemory.value.totalBytes;
    return {
      ...this.#cpu(layout, cgCpu, hostTicks),
      ...this.#memory(layout, cgMemory, hostMemory),
      ...this.#disk(disk),
      failures,
    };
  }

  #cpu(layout: Layout, cg: Outcome<(CgroupCpu & { at: number }) | undefined>, host: Outcome<CpuTicks>): SourceReading {
    const quota = cg.ok ? cg.value?.quotaCpus : undefined;
    const effectiveCpus = quota === undefined ? layout.allowedCpus : Math.min(quota, layout.allowedCpus);
    let cgroupCpu: number | undefined;
    if (cg.ok && cg.value !== undefined) {
      const { at, usageMicros, ancestors } = cg.value;
      const file = layout.cpu?.usageFile;
      if (usageMicros !== undefined && file !== undefined) cgroupCpu = this.#rate(file, usageMicros, at, effectiveCpus);
      // A quota higher up is shared with the ancestor's other children: its subtree's use counts against it.
      for (const a of ancestors) {
        const rate = this.#rate(a.usageFile, a.usageMicros, at, a.quotaCpus);
        if (rate !== undefined && cgroupCpu !== undefined) cgroupCpu = Math.max(cgroupCpu, rate);
      }
    }
    let hostCpu: number | undefined;
    if (host.ok) {
      const last = this.#lastHostCpu;
      if (last !== undefined && host.value.total > last.total && host.value.busy >= last.busy) hostCpu = clamp01((host.value.busy - last.busy) / (host.value.total - last.total));
      this.#lastHostCpu = host.value;
    }
    return { cpu: layout.cpu === undefined ? hostCpu : cgroupCpu, cgroupCpu, hostCpu, effectiveCpus };
  }

  /** CPU time per wall time per CPU since the counter was last read; remembers this reading. */
  #rate(file: string, usageMicros: number, at: number, cpus: number): number | undefined {
    const last = this.#lastUsage.get(file);
    this.#lastUsage.set(file, { usageMicros, at });
    if (last === undefined || at <= last.at || usageMicros < last.usageMicros || cpus <= 0) return undefined;
    return clamp01((usageMicros - last.usageMicros) / ((at - last.at) * 1000 * cpus));
  }

  #memory(layout: Layout, cg: Outcome<CgroupMemory | undefined>, host: Outcome<HostMemory>): SourceReading {
    const total = this.#memTotal;
    let hostMemory: number | undefined;
    let hostScope: MemoryScope | undefined;
    if (host.ok) {
      hostScope = { usedBytes: host.value.totalBytes - host.value.availableBytes, limitBytes: host.value.totalBytes };
      hostMemory = clamp01(hostScope.usedBytes / hostScope.limitBytes);
    }
    let cgroupMemory: number | undefined;
    let cgScopes: MemoryScope[] | undefined;
    let fullest: MemoryScope | undefined;
    if (cg.ok && cg.value !== undefined) {
      cgScopes = [];
      for (const scope of cg.value.scopes) {
        const limit = scope.limitBytes === undefined ? total : total === undefined ? scope.limitBytes : Math.min(scope.limitBytes, total);
        if (limit === undefined || limit <= 0) continue;
        const s = { usedBytes: scope.usedBytes, limitBytes: limit };
        const fraction = clamp01(s.usedBytes / limit);
        cgScopes.push(s);
        if (cgroupMemory === undefined || fraction > cgroupMemory) {
          cgroupMemory = fraction;
          fullest = s;
        }
      }
      // Nothing to measure against (no limit, and MemTotal never read): unknown.
      if (cgScopes.length === 0) cgScopes = undefined;
    }
    const fromCgroup = layout.memory !== undefined;
    const scopes = fromCgroup ? cgScopes : hostScope === undefined ? undefined : [hostScope];
    const behind = fromCgroup ? fullest : hostScope;
    return {
      memory: fromCgroup ? cgroupMemory : hostMemory,
      cgroupMemory,
      hostMemory,
      memoryUsedBytes: behind?.usedBytes,
      memoryLimitBytes: behind?.limitBytes,
      memoryScopes: scopes,
      oomKills: cg.ok ? cg.value?.oomKills : undefined,
    };
  }

  #disk(disk: Outcome<DiskUsage | undefined>): SourceReading {
    if (!disk.ok || disk.value === undefined || disk.value.totalBytes <= 0) return {};
    return { disk: clamp01(disk.value.usedBytes / disk.value.totalBytes), diskUsedBytes: disk.value.usedBytes, diskTotalBytes: disk.value.totalBytes };
  }

  async #hostTicks(layout: Layout): Promise<CpuTicks> {
    const path = join(this.#procRoot, 'stat');
    const text = await this.#file(path, 'cpu');
    const ticks = parseProcStat(text, layout.cpuSet);
    if (ticks === undefined) throw new ResourceReadError('cpu', `No cpu lines in ${path}`, { path });
    return ticks;
  }

  async #hostMemory(): Promise<HostMemory> {
    const path = join(this.#procRoot, 'meminfo');
    const memory = parseMeminfo(await this.#file(path, 'memory'));
    if (memory === undefined) throw new ResourceReadError('memory', `No MemTotal and MemAvailable in ${path}`, { path });
    return memory;
  }

  async #file(path: string, target: ResourceReadTarget): Promise<string> {
    try {
      return await readText(path);
    } catch (err) {
      throw new ResourceReadError(target, `Cannot read ${path}`, { path, cause: err });
    }
  }

  /** Finds the readers once; after a failed cgroup read, again if the process moved to another group. */
  async #detect(): Promise<Layout> {
    if (this.#layout !== undefined && this.#recheck) {
      this.#recheck = false;
      const previous = await this.#layout;
      const membership = await readText(join(this.#procRoot, 'self', 'cgroup')).catch(() => undefined);
      if (membership !== undefined && membership !== previous.membership) {
        this.#layout = this.#discover(previous.portable);
        this.#lastUsage.clear();
      }
    }
    this.#layout ??= this.#discover(undefined);
    return this.#layout;
  }

  async #discover(portable: boolean | undefined): Promise<Layout> {
    const proc = this.#procRoot;
    portable ??= !(await exists(join(proc, 'stat'))) && !(await exists(join(proc, 'meminfo')));
    const membership = portable ? undefined : await readText(join(proc, 'self', 'cgroup')).catch(() => undefined);
    const cgroups: CgroupLayout = membership === undefined ? { memory: undefined, cpu: undefined } : await discoverCgroups(this.#cgroupRoot, parseMembership(membership));
    // A CPU group without a usage counter gives no rate: the host's figure is used (its quota still bounds the effective CPUs).
    const cpu = cgroups.cpu?.usageFile === undefined ? undefined : cgroups.cpu;
    const status = portable ? undefined : await readText(join(proc, 'self', 'status')).catch(() => undefined);
    const cpuSet = status === undefined ? undefined : parseAllowedCpus(status);
    const layout: Layout = { portable, membership, cpu, quota: cgroups.cpu, memory: cgroups.memory, allowedCpus: cpuSet?.size ?? availableParallelism(), cpuSet };
    const fallback = portable ? 'portable' : 'host';
    this.#info = {
      cpu: cpu?.version ?? fallback,
      memory: cgroups.memory?.version ?? fallback,
      cpuCgroupPath: cpu?.path,
      memoryCgroupPath: cgroups.memory?.path,
      dataDir: this.#dataDir,
    };
    return layout;
  }
}
