/**
 * Host readings from `/proc`: memory from `meminfo`, CPU time from `stat`,
 * the CPUs this process may run on from `self/status`. Parsers only: the
 * reads are done (asynchronously) by the source.
 */

/** Host memory from `/proc/meminfo`, in bytes. */
export interface HostMemory {
  /** `MemTotal`. */
  readonly totalBytes: number;
  /**
   * `MemAvailable`: what can be allocated without swapping, page cache that
   * can be dropped included. Kernels before 3.14 lack it: `MemFree` +
   * `Inactive(file)` stands in.
   */
  readonly availableBytes: number;
}

/** Busy and total CPU time from `/proc/stat`, in clock ticks (only their ratio is used). */
export interface CpuTicks {
  /** Ticks spent running (user, nice, system, irq, softirq, steal; guest time is inside user). */
  readonly busy: number;
  /** Busy ticks plus idle and iowait. */
  readonly total: number;
}

function kib(text: string, key: string): number | undefined {
  const at = text.indexOf(`\n${key}:`);
  const start = at >= 0 ? at + key.length + 2 : text.startsWith(`${key}:`) ? key.length + 1 : -1;
  if (start < 0) return undefined;
  const end = text.indexOf('\n', start);
  const value = Number.parseInt(text.slice(start, end < 0 ? undefined : end).trim(), 10);
  return Number.isFinite(value) && value >= 0 ? value * 1024 : undefined;
}

/** Parses `/proc/meminfo`; `undefined` when `MemTotal` or both availability fields are missing. */
export function parseMeminfo(text: string): HostMemory | undefined {
  const totalBytes = kib(text, 'MemTotal');
  if (totalBytes === undefined || totalBytes === 0) return undefined;
  let availableBytes = kib(text, 'MemAvailable');
  if (availableBytes === undefined) {
    const free = kib(text, 'MemFree');
    if (free === undefined) return undefined;
    availableBytes = free + (kib(text, 'Inactive(file)') ?? 0);
  }
  return { totalBytes, availableBytes: Math.min(availableBytes, totalBytes) };
}

/**
 * Sums the `cpuN` lines of `/proc/stat` for the CPUs in `cpus` (all of them
 * when `cpus` is undefined, read from the aggregate `cpu` line).
 * `undefined` when no matching line parses.
 */
export function parseProcStat(text: string, cpus: ReadonlySet<number> | undefined): CpuTicks | undefined {
  let busy = 0;
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith('cpu')) continue;
    const fields = line.trim().split(/\s+/);
    const name = fields[0] as string;
    if (cpus === undefined ? name !== 'cpu' : name === 'cpu' || !cpus.has(Number(name.slice(3)))) continue;
    const n = fields.slice(1, 9).map(Number);
    if (n.length < 4 || n.some((x) => !Number.isFinite(x))) continue;
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = n;
    const b = user + nice + system + irq + softirq + steal;
    busy += b;
    total += b + idle + iowait;
    found = true;
  }
  return found ? { busy, total } : undefined;
}

/** Parses a kernel CPU list such as `0-3,8,10-11`; `undefined` when malformed or empty. */
export function parseCpuList(text: string): Set<number> | undefined {
  const cpus = new Set<number>();
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  for (const part of trimmed.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (m === null) return undefined;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from || to - from > 65_536) return undefined;
    for (let c = from; c <= to; c++) cpus.add(c);
  }
  return cpus;
}

/** The CPUs this process may run on, from `Cpus_allowed_list` in `/proc/self/status`. */
export function parseAllowedCpus(status: string): Set<number> | undefined {
  const m = /^Cpus_allowed_list:\s*(\S+)\s*$/m.exec(status);
  return m === null ? undefined : parseCpuList(m[1] as string);
}
