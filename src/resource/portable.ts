/**
 * Readings for platforms without `/proc` (macOS, Windows, the BSDs): CPU
 * time from `os.cpus()` (no shell command), available memory from
 * `systeminformation`, which knows each platform's notion of reclaimable
 * memory (asynchronous; on macOS it runs `vm_stat`).
 */
import { cpus } from 'node:os';
import si from 'systeminformation';
import type { CpuTicks, HostMemory } from './proc.js';

/** CPU time of every CPU so far, in milliseconds. */
export function portableCpuTicks(): CpuTicks {
  let busy = 0;
  let total = 0;
  for (const { times } of cpus()) {
    const b = times.user + times.nice + times.sys + times.irq;
    busy += b;
    total += b + times.idle;
  }
  return { busy, total };
}

/** Total and available memory, page cache that can be dropped counted as available. */
export async function portableMemory(): Promise<HostMemory> {
  const m = await si.mem();
  return { totalBytes: m.total, availableBytes: Math.min(m.available, m.total) };
}
