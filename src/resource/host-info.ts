/**
 * `describeHost()`: what the agent runs on, for a start-up log line or an
 * audit record. This is where `systeminformation` is the right tool; it is
 * not used for the periodic samples.
 */
import si from 'systeminformation';
import type { SourceInfo } from './reading.js';
import { SystemSource, type SystemSourceOptions } from './source.js';

/** The machine the process runs on, and what it may use of it. */
export interface HostDescription {
  /** `process.platform`, e.g. `linux`. */
  readonly platform: string;
  /** Distribution or OS name, e.g. `Debian GNU/Linux`. */
  readonly distro: string;
  /** Its release, e.g. `12`. */
  readonly release: string;
  /** Kernel version. */
  readonly kernel: string;
  /** CPU architecture, e.g. `x64`. */
  readonly arch: string;
  /** CPU model, e.g. `EPYC`. */
  readonly cpuModel: string;
  /** Physical cores of the host. */
  readonly physicalCores: number;
  /** Logical CPUs of the host. */
  readonly logicalCpus: number;
  /** Host memory, in bytes. */
  readonly memoryTotalBytes: number;
  /** CPUs this process can use: min(cgroup quota, CPUs it may run on). */
  readonly effectiveCpus: number | undefined;
  /** The tightest memory limit that applies to it (its cgroup's, an ancestor's, or MemTotal), in bytes. */
  readonly memoryLimitBytes: number | undefined;
  /** Which readers the resource controller would use here. */
  readonly source: SourceInfo | undefined;
}

/**
 * Describes the host and the limits that apply to this process. Call it
 * once (at start-up): `systeminformation` runs a few short commands
 * (`lscpu`, `hostname`) to answer.
 *
 * @example
 * ```ts
 * const host = await describeHost();
 * log.info(`running on ${host.distro} ${host.release}, ${host.effectiveCpus} of ${host.logicalCpus} CPUs`);
 * ```
 */
export async function describeHost(options: SystemSourceOptions = {}): Promise<HostDescription> {
  const source = new SystemSource(options);
  const [os, cpu, mem, reading] = await Promise.all([si.osInfo(), si.cpu(), si.mem(), source.read()]);
  return {
    platform: os.platform,
    distro: os.distro,
    release: os.release,
    kernel: os.kernel,
    arch: os.arch,
    cpuModel: cpu.brand,
    physicalCores: cpu.physicalCores,
    logicalCpus: cpu.cores,
    memoryTotalBytes: mem.total,
    effectiveCpus: reading.effectiveCpus,
    memoryLimitBytes: reading.memoryScopes === undefined ? reading.memoryLimitBytes : Math.min(...reading.memoryScopes.map((s) => s.limitBytes)),
    source: source.describe(),
  };
}
