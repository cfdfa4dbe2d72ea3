/**
 * The `ResourceSource` seam and the built-in {@link SystemSource}: cgroup v2,
 * then cgroup v1, then the host (`/proc`), then portable readings; every read
 * asynchronous. Tests point `cgroupRoot` and `procRoot` at fake directories.
 */
import { access } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { ResourceReadError, type ResourceReadTarget } from '../errors.js';
import * as v from '../internal/validate.js';
import { discoverCgroups, parseMembership, readCgroupCpu, readCgroupMemory, type CgroupCpu, type CgroupLayout, type CgroupMemory } from './cgroup.js';
import { readDisk, type DiskUsage } from './disk.js';
import { portableCpuTicks, portableMemory } from './portable.js';
import { readText } from './read-text.js';
import { parseAllowedCpus, parseMeminfo, parseProcStat, type CpuTicks, type HostMemory } from './proc.js';

/** Where a signal is read from: a cgroup hierarchy, the host's `/proc`, portable APIs (no `/proc`), or a custom source. */
export type SourceKind = 'cgroup-v2' | 'cgroup-v1' | 'host' | 'portable' | 'custom';

/** Which readers a source uses, as `status().source` reports it. */
export interface SourceInfo {
  /** Where CPU usage and the CPU quota come from (the host's CPU time is read as well unless `portable`). */
  readonly cpu: SourceKind;
  /** Where memory usage and the limit come from (the host's available memory is read as well unless `portable`). */
  readonly memory: SourceKind;
  /** The process's cgroup path as the kernel names it, when a cgroup is used. */
  readonly cgroupPath: string | undefined;
  /** The directory whose filesystem is measured for `disk`, if any. */
  readonly dataDir: string | undefined;
}

/**
 * One reading. Fractions are 0–1. A field left `undefined` is unknown: it
 * neither throttles nor counts toward resuming.
 */
export interface SourceReading {
  /** CPU in use, as a fraction of what this process may use: the larger of {@link cgroupCpu} and {@link hostCpu}. */
  readonly cpu?: number | undefined;
  /** The group's CPU time ÷ (wall time × effective CPUs) since the last reading. */
  readonly cgroupCpu?: number | undefined;
  /** Busy fraction of the CPUs this process may run on, host-wide (every process counts), since the last reading. */
  readonly hostCpu?: number | undefined;
  /** CPUs this process can use: min(cgroup quota ÷ period, CPUs it may run on). */
  readonly effectiveCpus?: number | undefined;
  /** Memory in use: the larger of {@link cgroupMemory} and {@link hostMemory}. */
  readonly memory?: number | undefined;
  /** Working set ÷ min(limit, MemTotal), for the group and each ancestor with a limit; the largest. */
  readonly cgroupMemory?: number | undefined;
  /** 1 − MemAvailable ÷ MemTotal: the host's memory that page cache cannot give back. */
  readonly hostMemory?: number | undefined;
  /** Bytes in use behind {@link memory} (a working set, page cache excluded). */
  readonly memoryUsedBytes?: number | undefined;
  /** The limit behind {@link memory}, in bytes: the cgroup limit or MemTotal. */
  readonly memoryLimitBytes?: number | undefined;
  /** OOM kills the cgroup has counted; a rise throttles. */
  readonly oomKills?: number | undefined;
  /** Used fraction of the filesystem holding the data directory. */
  readonly disk?: number | undefined;
  /** Bytes in use on that filesystem. */
  readonly diskUsedBytes?: number | undefined;
  /** Bytes in use plus bytes available on it. */
  readonly diskTotalBytes?: number | undefined;
  /** What could not be read this time; each makes its signal unknown. */
  readonly failures?: readonly ResourceReadError[] | undefined;
}

/**
 * Where the resource controller gets its readings. The built-in one is
 * {@link SystemSource}; pass your own as the `source` option to read
 * elsewhere (a sidecar, a platform API) or to script readings in tests.
 */
export interface ResourceSource {
  /** Takes one reading. Asynchronous, called on an unref'd timer; a rejection counts as a failed reading. */
  read(): Promise<SourceReading>;
  /** Which readers are in use, once known (after the first `read()`). */
  describe?(): SourceInfo | undefined;
}

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
  readonly cgroups: CgroupLayout;
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

function maxOf(...xs: (number | undefined)[]): number | undefined {
  let best: number | undefined;
  for (const x of xs) if (x !== undefined && (best === undefined || x > best)) best = x;
  return best;
}

const clamp01 = (x: number): number => Math.min(1, Math.max(0, x));

/**
 * Reads what the kernel enforces on this process: the cgroup's memory and CPU
 * limits and usage (v2, else v1), the host's available memory and the busy
 * time of the CPUs it may run on, and the disk holding `dataDir`. Every read
 * is an asynchronous file read; nothing runs a shell command. On platforms
 * without `/proc` it falls back to `os.cpus()` and `systeminformation`.
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
  #lastCgroupCpu: { readonly usageMicros: number; readonly at: number } | undefined;
  #lastHostCpu: CpuTicks | undefined;
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
    const { cgroups } = layout;
    const [cgCpu, hostTicks, cgMemory, hostMemory, disk] = await Promise.all([
      cgroups.cpu === undefined ? SKIPPED : attempt('cpu', async () => ({ ...(await readCgroupCpu(cgroups.cpu as NonNullable<CgroupLayout['cpu']>)), at: performance.now() })),
      attempt('cpu', () => (layout.portable ? Promise.resolve(portableCpuTicks()) : this.#hostTicks(layout))),
      cgroups.memory === undefined ? SKIPPED : attempt('memory', () => readCgroupMemory(cgroups.memory as NonNullable<CgroupLayout['memory']>)),
      attempt('memory', () => (layout.portable ? portableMemory() : this.#hostMemory())),
      this.#dataDir === undefined ? SKIPPED : attempt('disk', () => readDisk(this.#dataDir as string)),
    ]);
    if ((!cgCpu.ok || !cgMemory.ok) && !layout.portable) this.#recheck = true;
    return {
      ...this.#cpu(layout, cgCpu, hostTicks),
      ...this.#memory(cgMemory, hostMemory),
      ...this.#disk(disk),
      failures,
    };
  }

  #cpu(layout: Layout, cg: Outcome<(CgroupCpu & { at: number }) | undefined>, host: Outcome<CpuTicks>): SourceReading {
    const quota = cg.ok ? cg.value?.quotaCpus : undefined;
    const effectiveCpus = quota === undefined ? layout.allowedCpus : Math.min(quota, layout.allowedCpus);
    let cgroupCpu: number | undefined;
    if (cg.ok && cg.value?.usageMicros !== undefined) {
      const now = { usageMicros: cg.value.usageMicros, at: cg.value.at };
      const last = this.#lastCgroupCpu;
      if (last !== undefined && now.at > last.at && now.usageMicros >= last.usageMicros) {
        cgroupCpu = clamp01((now.usageMicros - last.usageMicros) / ((now.at - last.at) * 1000 * effectiveCpus));
      }
      this.#lastCgroupCpu = now;
    }
    let hostCpu: number | undefined;
    if (host.ok) {
      const last = this.#lastHostCpu;
      if (last !== undefined && host.value.total > last.total && host.value.busy >= last.busy) hostCpu = clamp01((host.value.busy - last.busy) / (host.value.total - last.total));
      this.#lastHostCpu = host.value;
    }
    const cpu = cg.ok && host.ok ? maxOf(cgroupCpu, hostCpu) : undefined;
    return { cpu, cgroupCpu, hostCpu, effectiveCpus };
  }

  #memory(cg: Outcome<CgroupMemory | undefined>, host: Outcome<HostMemory>): SourceReading {
    const total = host.ok ? host.value.totalBytes : undefined;
    let best: { fraction: number; used: number; limit: number } | undefined;
    let cgroupMemory: number | undefined;
    if (cg.ok && cg.value !== undefined) {
      for (const scope of cg.value.scopes) {
        const limit = scope.limitBytes === undefined ? total : total === undefined ? scope.limitBytes : Math.min(scope.limitBytes, total);
        if (limit === undefined || limit <= 0) continue;
        const fraction = clamp01(scope.usedBytes / limit);
        cgroupMemory = maxOf(cgroupMemory, fraction);
        if (best === undefined || fraction > best.fraction) best = { fraction, used: scope.usedBytes, limit };
      }
    }
    let hostMemory: number | undefined;
    if (host.ok) {
      const used = host.value.totalBytes - host.value.availableBytes;
      hostMemory = clamp01(used / host.value.totalBytes);
      if (best === undefined || hostMemory > best.fraction) best = { fraction: hostMemory, used, limit: host.value.totalBytes };
    }
    const known = cg.ok && host.ok;
    return {
      memory: known ? best?.fraction : undefined,
      cgroupMemory,
      hostMemory,
      memoryUsedBytes: known ? best?.used : undefined,
      memoryLimitBytes: known ? best?.limit : undefined,
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
        this.#lastCgroupCpu = undefined;
      }
    }
    this.#layout ??= this.#discover(undefined);
    return this.#layout;
  }

  async #discover(portable: boolean | undefined): Promise<Layout> {
    const proc = this.#procRoot;
    portable ??= !(await exists(join(proc, 'stat'))) && !(await exists(join(proc, 'meminfo')));
    const membership = portable ? undefined : await readText(join(proc, 'self', 'cgroup')).catch(() => undefined);
    const cgroups: CgroupLayout = membership === undefined ? { memory: undefined, cpu: undefined, path: undefined } : await discoverCgroups(this.#cgroupRoot, parseMembership(membership));
    const status = portable ? undefined : await readText(join(proc, 'self', 'status')).catch(() => undefined);
    const cpuSet = status === undefined ? undefined : parseAllowedCpus(status);
    const layout: Layout = { portable, membership, cgroups, allowedCpus: cpuSet?.size ?? availableParallelism(), cpuSet };
    this.#info = {
      cpu: portable ? 'portable' : (cgroups.cpu?.version ?? 'host'),
      memory: portable ? 'portable' : (cgroups.memory?.version ?? 'host'),
      cgroupPath: cgroups.path,
      dataDir: this.#dataDir,
    };
    return layout;
  }
}
