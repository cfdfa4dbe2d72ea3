import { getEventListeners } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CloseTimeoutError, IllegalStateError, InvalidArgumentError, JobTimeoutError } from '../../src/errors.js';
import type { JobTimeoutEvent, ResourceController } from '../../src/resource/index.js';
import { flush, scripted } from './fake.js';

let c: ResourceController;

beforeEach(async () => {
  vi.useFakeTimers();
  ({ c } = await scripted({ maxConcurrentJobs: 1 }));
});
afterEach(async () => {
  await c.close();
  vi.useRealTimers();
});

/** A job that settles when told to, and records the signal it was given. */
function manual<T>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const done = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const job = { signal: undefined as AbortSignal | undefined, resolve, reject, fn: (signal: AbortSignal) => ((job.signal = signal), done) };
  return job;
}

describe('run()', () => {
  it('runs fn in a slot with a live signal and resolves with its result', async () => {
    const result = await c.run(async (signal) => {
      expect(signal.aborted).toBe(false);
      expect(c.status().activeJobs).toBe(1);
      return 42;
    });
    expect(result).toBe(42);
    expect(c.status().activeJobs).toBe(0);
  });

  it('releases the slot when fn throws, synchronously or not', async () => {
    await expect(
      c.run(() => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
    await expect(c.run(() => Promise.reject(new Error('async')))).rejects.toThrow('async');
    expect(c.status().activeJobs).toBe(0);
  });

  it('waits for a slot: the next job starts when the previous one ends', async () => {
    const first = manual<string>();
    const a = c.run(first.fn);
    const order: string[] = [];
    const b = c.run(async () => order.push('b'));
    await flush();
    expect(order).toEqual([]);
    expect(c.status().pendingJobs).toBe(1);
    first.resolve('a');
    expect(await a).toBe('a');
    await b;
    expect(order).toEqual(['b']);
  });

  it('aborts the job at timeoutMs, emits job-timeout and rejects with JobTimeoutError at once', async () => {
    const events: JobTimeoutEvent[] = [];
    c.on('job-timeout', (e) => events.push(e));
    let seen: unknown;
    const p = c.run(
      (signal) =>
        new Promise((_, reject) =>
          signal.addEventListener('abort', () => {
            seen = signal.reason;
            reject(signal.reason);
          }),
        ),
      { timeoutMs: 1000, priority: 2, memoryBytes: 7 },
    );
    const outcome = p.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(999);
    expect(events).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    const err = await outcome;
    expect(err).toBeInstanceOf(JobTimeoutError);
    expect(err).toMatchObject({ code: 'OUTPOST_RESOURCE_JOB_TIMEOUT', timeoutMs: 1000, message: 'Job timed out after 1000 ms' });
    expect(seen).toBe(err);
    expect(events).toEqual([{ timeoutMs: 1000, priority: 2, memoryBytes: 7, error: err }]);
    await flush();
    expect(c.status().activeJobs).toBe(0);
  });

  it('keeps the slot of a timed-out job that ignores its signal until it really ends', async () => {
    const job = manual<number>();
    const p = c.run(job.fn, { timeoutMs: 500 }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(500);
    expect(await p).toBeInstanceOf(JobTimeoutError);
    expect(job.signal?.aborted).toBe(true);
    expect(c.status().activeJobs).toBe(1);
    expect(c.tryAcquire()).toBeUndefined();
    job.resolve(1);
    await flush();
    expect(c.status().activeJobs).toBe(0);
  });

  it('clears the timeout timer and the abort listeners when the job ends first', async () => {
    const ac = new AbortController();
    const timersBefore = vi.getTimerCount();
    const job = manual<string>();
    const p = c.run(job.fn, { timeoutMs: 60_000, signal: ac.signal });
    await flush();
    expect(vi.getTimerCount()).toBe(timersBefore + 1);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    job.resolve('done');
    expect(await p).toBe('done');
    expect(vi.getTimerCount()).toBe(timersBefore);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('arms the timeout on an unref\'d timer', async () => {
    vi.useRealTimers();
    const refTimers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = refTimers();
    const job = manual<void>();
    const p = c.run(job.fn, { timeoutMs: 60_000 });
    await flush();
    expect(c.status().activeJobs).toBe(1);
    expect(refTimers()).toBe(before);
    job.resolve();
    await p;
  });

  it('aborts a running job when options.signal aborts and rejects with its reason', async () => {
    const ac = new AbortController();
    const job = manual<void>();
    const p = c.run(job.fn, { signal: ac.signal });
    await flush();
    const reason = new Error('cancelled by the caller');
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
    expect(job.signal?.reason).toBe(reason);
    job.resolve();
    await flush();
    expect(c.status().activeJobs).toBe(0);
  });

  it('stops waiting for a slot when options.signal aborts, without running fn', async () => {
    const holder = manual<void>();
    void c.run(holder.fn);
    const ac = new AbortController();
    const fn = vi.fn();
    const p = c.run(fn, { signal: ac.signal });
    ac.abort(new Error('no longer needed'));
    await expect(p).rejects.toThrow('no longer needed');
    expect(fn).not.toHaveBeenCalled();
    holder.resolve();
  });

  it('aborts running jobs on close() and waits for them to settle', async () => {
    const job = manual<void>();
    const p = c.run(job.fn).catch((e: unknown) => e);
    await flush();
    let closed = false;
    const closing = c.close().then(() => (closed = true));
    await flush();
    expect(job.signal?.reason).toBeInstanceOf(IllegalStateError);
    expect(await p).toBeInstanceOf(IllegalStateError);
    expect(closed).toBe(false);
    job.reject(job.signal?.reason);
    await closing;
    expect(c.state).toBe('closed');
  });

  it('stops waiting for jobs that ignore their signal after closeTimeoutMs, resolves, and reports them', async () => {
    // Finding 10: close() never resolved while a run() job ignored its signal.
    // The default closeTimeoutMs: 10 s.
    const errors: unknown[] = [];
    c.on('error', (e) => errors.push(e));
    const stuck = manual<void>();
    const p = c.run(stuck.fn).catch((e: unknown) => e);
    await flush();
    let closed = false;
    const closing = c.close().then(() => (closed = true));
    expect(await p).toBeInstanceOf(IllegalStateError);
    await vi.advanceTimersByTimeAsync(9_999);
    expect(closed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await closing;
    expect(c.state).toBe('closed');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(CloseTimeoutError);
    expect(errors[0]).toMatchObject({ code: 'OUTPOST_RESOURCE_CLOSE_TIMEOUT', closeTimeoutMs: 10_000, runningJobs: 1, sampleInFlight: false });
    // The job keeps its slot until it really ends; then it is released as usual.
    expect(c.status().activeJobs).toBe(1);
    stuck.resolve();
    await flush();
    expect(c.status().activeJobs).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('waits at most closeTimeoutMs, and reports nothing when every job settles within it', async () => {
    await c.close();
    ({ c } = await scripted({ maxConcurrentJobs: 1, closeTimeoutMs: 50 }));
    const errors: unknown[] = [];
    c.on('error', (e) => errors.push(e));
    const job = manual<void>();
    void c.run(job.fn).catch(() => undefined);
    await flush();
    const closing = c.close();
    await vi.advanceTimersByTimeAsync(49);
    job.resolve();
    await closing;
    expect(errors).toEqual([]);
    // A second one that does not settle is left after 50 ms.
    ({ c } = await scripted({ maxConcurrentJobs: 1, closeTimeoutMs: 50 }));
    c.on('error', (e) => errors.push(e));
    void c.run(manual<void>().fn).catch(() => undefined);
    await flush();
    const second = c.close();
    await vi.advanceTimersByTimeAsync(50);
    await second;
    expect(errors).toMatchObject([{ runningJobs: 1 }]);
  });

  it('adds no listener per job to a shared signal: many concurrent jobs raise no MaxListenersExceededWarning', async () => {
    // Finding 13: every run() job added an abort listener to the controller's close signal.
    vi.useRealTimers();
    await c.close();
    ({ c } = await scripted({ maxConcurrentJobs: 32 }));
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const jobs = Array.from({ length: 32 }, () => manual<void>());
      const runs = jobs.map((j) => c.run(j.fn));
      await flush();
      expect(c.status().activeJobs).toBe(32);
      for (const j of jobs) j.resolve();
      await Promise.all(runs);
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('validates fn and timeoutMs before taking a slot', async () => {
    await expect(c.run('job' as never)).rejects.toThrow(/`fn` to be a function, got "job"/);
    await expect(c.run(() => 1, { timeoutMs: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(c.run(() => 1, { timeoutMs: 1.5 })).rejects.toThrow(/`timeoutMs` to be an integer from 1 to 2147483647, got 1.5/);
    await expect(c.run(() => 1, { timeoutMs: 2 ** 31 })).rejects.toThrow(InvalidArgumentError);
    expect(c.status()).toMatchObject({ activeJobs: 0, pendingJobs: 0 });
  });
});
