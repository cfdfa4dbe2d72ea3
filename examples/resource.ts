/**
 * `node --import tsx examples/resource.ts`: admission control on this machine.
 *
 * - describes the host and the limits that apply to this process (cgroup v2,
 *   v1, or the host — each signal from the process's own cgroup when it has one);
 * - starts a `ResourceController` sampling every 500 ms and logs its events;
 * - runs ten jobs through `run()` (higher priority first), one of which
 *   overruns its `timeoutMs` and is aborted;
 * - shows `tryAcquire()` with `using`, prints `status()` and the history,
 *   closes, and exits on its own.
 *
 * Run `stress-ng --cpu 0 --timeout 20s` in another terminal to watch it throttle.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describeHost, ResourceController } from '../src/resource/index.js';

const host = await describeHost();
console.log(
  `host: ${host.distro} ${host.release} (${host.arch}), ${host.logicalCpus} CPUs, ${(host.memoryTotalBytes / 2 ** 30).toFixed(1)} GiB; ` +
    `this process may use ${host.effectiveCpus} CPUs and ${((host.memoryLimitBytes ?? 0) / 2 ** 30).toFixed(1)} GiB (cpu: ${host.source?.cpu}, memory: ${host.source?.memory})`,
);

const pct = (x: number | undefined): string => (x === undefined ? '  ?' : `${(x * 100).toFixed(0).padStart(3)}%`);
// The container's own figures decide. `hostCpuThreshold: 0.95` would also yield to a host saturated by its neighbours.
await using resources = new ResourceController({ dataDir: process.cwd(), sampleIntervalMs: 500, cooldownMs: 2_000, closeTimeoutMs: 5_000 });
resources.on('sample', (m) =>
  console.log(`sample: cpu ${pct(m.cpu)}  memory ${pct(m.memory)}  disk ${pct(m.disk)}  event loop ${pct(m.eventLoop)}  (host: cpu ${pct(m.hostCpu)}, memory ${pct(m.hostMemory)})`),
);
resources.on('warning', (e) => console.log(`warning: ${e.signal} at ${pct(e.value)} (throttles over ${pct(e.threshold)})`));
resources.on('throttled', (e) => console.log(`throttled: ${e.message}; only ${resources.status().minJobs} job(s) admitted`));
resources.on('resumed', (e) => console.log(`resumed after ${e.throttledMs} ms`));
resources.on('sample-failed', (e) => console.log(`sample-failed: ${e.errors.map((err) => err.message).join('; ')}`));
resources.on('job-timeout', (e) => console.log(`job-timeout: a job ran past ${e.timeoutMs} ms and was aborted`));
resources.on('error', (e) => console.log(`error: ${e.code}: ${e.message}`));

await resources.start();
const { source, maxJobs } = resources.status();
console.log(
  `controller: ${maxJobs} jobs at once; readers: cpu ${source?.cpu} (cgroup ${source?.cpuCgroupPath ?? 'none'}), memory ${source?.memory} (cgroup ${source?.memoryCgroupPath ?? 'none'})`,
);

// Ten jobs of 300 ms; job 7 would take 5 s but is given 1 s. Priorities: jobs 8 and 9 jump the queue.
const jobs = Array.from({ length: 10 }, (_, i) =>
  resources
    .run(
      async (signal) => {
        console.log(`job ${i} started (${resources.status().activeJobs} running, ${resources.status().pendingJobs} waiting)`);
        await sleep(i === 7 ? 5_000 : 300, undefined, { signal });
        return i;
      },
      { priority: i >= 8 ? 10 : 0, ...(i === 7 ? { timeoutMs: 1_000 } : {}) },
    )
    .then(
      (n) => console.log(`job ${n} done`),
      (err: unknown) => console.log(`job ${i} failed: ${(err as Error).message}`),
    ),
);
await Promise.all(jobs);
// run() rejected at the timeout; the job's slot is released once its function has settled (a moment later).
await sleep(10);

// A slot outside run(): released at the end of the block, however it is left.
{
  using slot = resources.tryAcquire({ memoryBytes: 64 * 2 ** 20 });
  console.log(slot === undefined ? 'tryAcquire: refused (busy or throttled)' : `tryAcquire: got a slot declaring ${slot.memoryBytes} bytes`);
}

const status = resources.status();
console.log(`status: throttled ${status.throttled}, active ${status.activeJobs}, rejected ${status.rejectedJobs}, recommended limit ${resources.adaptiveMaxJobs()}`);
console.log(`history: ${resources.history().length} samples, cpu ${resources.history().map((m) => pct(m.cpu).trim()).join(' ')}`);
// `await using` closes the controller here: no timer is left and the process exits.
