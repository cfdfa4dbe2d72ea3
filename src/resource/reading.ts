/**
 * The `ResourceSource` seam: what a reading holds and how a source says where
 * its figures come from. The built-in source is {@link SystemSource}; tests and
 * custom integrations pass their own.
 */
import type { ResourceReadError } from '../errors.js';

/** Where a signal is read from: a cgroup hierarchy, the host's `/proc`, portable APIs (no `/proc`), or a custom source. */
export type SourceKind = 'cgroup-v2' | 'cgroup-v1' | 'host' | 'portable' | 'custom';

/** Which readers a source uses, as `status().source` reports it. */
export interface SourceInfo {
  /** Where `cpu` comes from: the process's cgroup when it is in one (other than the root) with a CPU usage counter, else the host. */
  readonly cpu: SourceKind;
  /** Where `memory` comes from: the process's cgroup when it is in one (other than the root) with the memory controller, else the host. */
  readonly memory: SourceKind;
  /** The cgroup `cpu` is read from, as the kernel names it; `undefined` when `cpu` is not read from a cgroup. */
  readonly cpuCgroupPath: string | undefined;
  /** The cgroup `memory` is read from, as the kernel names it; `undefined` when `memory` is not read from a cgroup. */
  readonly memoryCgroupPath: string | undefined;
  /** The directory whose filesystem is measured for `disk`, if any. */
  readonly dataDir: string | undefined;
}

/** One level that memory is measured on: a cgroup (the process's own, or an ancestor with a limit), or the host. */
export interface MemoryScope {
  /** Working set (page cache excluded), in bytes. */
  readonly usedBytes: number;
  /** The limit that applies at this level, capped at MemTotal, in bytes. */
  readonly limitBytes: number;
}

/**
 * One reading. Fractions are 0–1. A field left `undefined` is unknown: it
 * neither throttles nor counts toward resuming.
 */
export interface SourceReading {
  /** CPU in use, as a fraction of what this process may use: {@link cgroupCpu} when the process is in a cgroup, else {@link hostCpu}. */
  readonly cpu?: number | undefined;
  /** The group's CPU time ÷ (wall time × effective CPUs) since the last reading, or, where larger, an ancestor's CPU time ÷ its own quota. */
  readonly cgroupCpu?: number | undefined;
  /** Busy fraction of the CPUs this process may run on, host-wide (every process counts), since the last reading. */
  readonly hostCpu?: number | undefined;
  /** CPUs this process can use: min(cgroup quota ÷ period, CPUs it may run on). */
  readonly effectiveCpus?: number | undefined;
  /** Memory in use: {@link cgroupMemory} when the process is in a cgroup, else {@link hostMemory}. */
  readonly memory?: number | undefined;
  /** Working set ÷ min(limit, MemTotal), for the group and each ancestor with a limit; the largest. */
  readonly cgroupMemory?: number | undefined;
  /** 1 − MemAvailable ÷ MemTotal: the host's memory that page cache cannot give back. */
  readonly hostMemory?: number | undefined;
  /** Bytes in use behind {@link memory} (a working set, page cache excluded). */
  readonly memoryUsedBytes?: number | undefined;
  /** The limit behind {@link memory}, in bytes: the cgroup limit (capped at MemTotal) or MemTotal. */
  readonly memoryLimitBytes?: number | undefined;
  /**
   * Every level {@link memory} is measured on — the group and each ancestor with a limit, or the
   * host — each with its own working set and limit. A job that declares memory must fit in all of
   * them. Left out: one level, from {@link memoryUsedBytes} (or {@link memory}) and {@link memoryLimitBytes}.
   */
  readonly memoryScopes?: readonly MemoryScope[] | undefined;
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
