/**
 * Test doubles for the resource module: fake cgroup/proc trees in temp
 * directories, and a scripted source for decision tests under fake timers.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ResourceController, type ResourceControllerOptions, type ResourceSource, type SourceReading } from '../../src/resource/index.js';

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

/** A temp directory with `cgroup/` and `proc/` subtrees that tests write files into. */
export class FakeTree {
  readonly root = mkdtempSync(join(tmpdir(), 'outpost-resource-'));
  readonly cgroupRoot = join(this.root, 'cgroup');
  readonly procRoot = join(this.root, 'proc');

  constructor() {
    mkdirSync(this.cgroupRoot);
    mkdirSync(this.procRoot);
  }

  /** Writes `content` to `path` (relative to the tree's root), creating directories. */
  write(path: string, content: string | number): this {
    const file = join(this.root, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${String(content)}\n`);
    return this;
  }

  remove(path: string): this {
    rmSync(join(this.root, path), { recursive: true, force: true });
    return this;
  }

  /** `/proc/self/cgroup`. */
  membership(lines: string): this {
    return this.write('proc/self/cgroup', lines);
  }

  /** `/proc/meminfo` with MemTotal and MemAvailable given in bytes (written in kB). */
  meminfo(totalBytes: number, availableBytes: number, extra = ''): this {
    return this.write('proc/meminfo', `MemTotal:       ${totalBytes / 1024} kB\nMemFree:        ${availableBytes / 2048} kB\nMemAvailable:   ${availableBytes / 1024} kB\n${extra}`);
  }

  /** `/proc/stat` with one line per CPU: `[busy, idle]` ticks each, and the aggregate line. */
  stat(cpus: readonly (readonly [busy: number, idle: number])[]): this {
    const line = (name: string, busy: number, idle: number): string => `${name} ${busy} 0 0 ${idle} 0 0 0 0 0 0`;
    const total = cpus.reduce((acc, [b, i]) => [acc[0] + b, acc[1] + i], [0, 0]);
    return this.write('proc/stat', [line('cpu ', total[0] ?? 0, total[1] ?? 0), ...cpus.map(([b, i], n) => line(`cpu${n}`, b, i)), 'intr 1 2 3', 'ctxt 42'].join('\n'));
  }

  /** `/proc/self/status` with `Cpus_allowed_list`. */
  allowedCpus(list: string): this {
    return this.write('proc/self/status', `Name:\tnode\nCpus_allowed:\t3\nCpus_allowed_list:\t${list}\nvoluntary_ctxt_switches:\t1`);
  }

  /** A cgroup v2 group at `path` with the given files (`memory.current`, `memory.stat` ...). */
  v2(path: string, files: Readonly<Record<string, string | number>>): this {
    for (const [name, content] of Object.entries(files)) this.write(join('cgroup', path, name), content);
    return this;
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** `memory.stat` content of cgroup v2. */
export function v2MemoryStat(inactiveFileBytes: number, activeFileBytes = 0): string {
  return `anon 1000\nfile ${inactiveFileBytes + activeFileBytes}\nactive_file ${activeFileBytes}\ninactive_file ${inactiveFileBytes}\nunevictable 0`;
}

/** `memory.stat` content of cgroup v1 (hierarchical totals included). */
export function v1MemoryStat(inactiveFileBytes: number): string {
  return `cache ${inactiveFileBytes}\nrss 1000\ninactive_file ${inactiveFileBytes}\nhierarchical_memory_limit 9223372036854771712\ntotal_cache ${inactiveFileBytes}\ntotal_inactive_file ${inactiveFileBytes}`;
}

/** Readings from a script; `read()` resolves at once (works under fake timers). */
export class ScriptedSource implements ResourceSource {
  next: SourceReading = {};
  reads = 0;
  failWith: unknown;
  read(): Promise<SourceReading> {
    this.reads++;
    if (this.failWith !== undefined) return Promise.reject(this.failWith);
    return Promise.resolve(this.next);
  }
}

/** A started controller on a scripted source; every option can be overridden. */
export async function scripted(options: ResourceControllerOptions = {}, first: SourceReading = { cpu: 0.1, memory: 0.1, effectiveCpus: 4 }) {
  const source = new ScriptedSource();
  source.next = first;
  const c = new ResourceController({ source, sampleIntervalMs: 1000, cooldownMs: 5000, maxConcurrentJobs: 4, ...options });
  await c.start();
  return { c, source };
}

/** Lets promise callbacks (and the abort listeners they trigger) run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}
