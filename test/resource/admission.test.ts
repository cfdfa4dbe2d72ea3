import { getEventListeners } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { IllegalStateError, InvalidArgumentError } from '../../src/errors.js';
import type { ResourceController, Slot, SourceReading } from '../../src/resource/index.js';
import { flush, scripted, type ScriptedSource } from './fake.js';

const CALM: SourceReading = { cpu: 0.2, memory: 0.2 };
let c: ResourceController;
let source: ScriptedSource;

beforeEach(() => vi.useFakeTimers());
afterEach(async () => {
  await c?.close();
  vi.useRealTimers();
});

async function open(options: Parameters<typeof scripted>[0] = {}, first: SourceReading = CALM): Promise<ResourceController> {
  ({ c, source } = await scripted(options, first));
  return c;
}

async function step(reading: SourceReading, samples = 1): Promise<void> {
  source.next = reading;
  for (let i = 0; i < samples; i++) await vi.advanceTimersByTimeAsync(1000);
}

function take(n: number): Slot[] {
  return Array.from({ length: n }, () => {
    const s = c.tryAcquire();
    if (s === undefined) throw new Error('expected a slot');
    return s;
  });
}

/** Starts `acquire()` calls and records the order they are served in. */
function waiters(specs: readonly { name: string; priority?: number; memoryBytes?: number; signal?: AbortSignal }[], served: string[]) {
  return specs.map(({ name, ...options }) => {
    const p = c.acquire(options).then(
      (slot) => {
        served.push(name);
        return slot;
      },
      (err: unknown) => {
        served.push(`${name}:rejected`);
        throw err;
      },
    );
    // Waiters still pending when a test ends are rejected by close().
    p.catch(() => undefined);
    return p;
  });
}

describe('slots', () => {
  it('admits up to maxConcurrentJobs, then refuses and counts the refusals', async () => {
    await open({ maxConcurrentJobs: 3 });
    const slots = take(3);
    expect(c.tryAcquire()).toBeUndefined();
    expect(c.tryAcquire({ priority: 9 })).toBeUndefined();
    expect(c.status()).toMatchObject({ activeJobs: 3, rejectedJobs: 2, pendingJobs: 0, maxJobs: 3 });
    slots[0]?.release();
    expect(c.tryAcquire()).toBeDefined();
    expect(c.status().rejectedJobs).toBe(2);
  });

  it('releases once however often release() is called, and at the end of a using block', async () => {
    await open({ maxConcurrentJobs: 2 });
    const [a] = take(1);
    a?.release();
    a?.release();
    expect(a?.released).toBe(true);
    expect(c.status().activeJobs).toBe(0);
    {
      using held = c.tryAcquire();
      expect(held?.released).toBe(false);
      expect(c.status().activeJobs).toBe(1);
    }
    expect(c.status().activeJobs).toBe(0);
  });

  it('serves waiters by priority, first come first served within a priority', async () => {
    await open({ maxConcurrentJobs: 1 });
    const [held] = take(1);
    const served: string[] = [];
    const specs = [{ name: 'a' }, { name: 'b' }, { name: 'c', priority: 5 }, { name: 'd', priority: -1 }, { name: 'e', priority: 5 }, { name: 'f' }];
    const byName = new Map(waiters(specs, served).map((p, i) => [specs[i]?.name, p]));
    expect(c.status().pendingJobs).toBe(6);
    const expected = ['c', 'e', 'a', 'b', 'f', 'd'];
    let slot = held as Slot;
    for (const name of expected) {
      slot.release();
      slot = await (byName.get(name) as Promise<Slot>);
      expect(served.at(-1)).toBe(name);
    }
    expect(served).toEqual(expected);
    expect(c.status()).toMatchObject({ pendingJobs: 0, activeJobs: 1 });
    expect(slot.priority).toBe(-1);
  });

  it('resolves acquire() at once when a slot is free and nobody waits', async () => {
    await open({ maxConcurrentJobs: 1 });
    const slot = await c.acquire({ priority: 3 });
    expect(slot.priority).toBe(3);
    expect(c.status().activeJobs).toBe(1);
  });

  it('never lets tryAcquire() jump ahead of a waiter', async () => {
    await open({ maxConcurrentJobs: 4, minConcurrentJobs: 0 }, { memory: 0.5, memoryLimitBytes: 1000 });
    // The head of the queue declares more memory than fits: it waits although slots are free.
    const served: string[] = [];
    waiters([{ name: 'big', memoryBytes: 400 }], served);
    await flush();
    expect(served).toEqual([]);
    expect(c.tryAcquire()).toBeUndefined();
    expect(c.status()).toMatchObject({ activeJobs: 0, pendingJobs: 1, rejectedJobs: 1 });
  });

  it('serves at once a higher-priority waiter that arrives while the head is held back by its memory', async () => {
    // Finding 2: the new head waited for the next sample although a slot was free.
    await open({ maxConcurrentJobs: 4, minConcurrentJobs: 0 }, { memory: 0.5, memoryLimitBytes: 1000 });
    const served: string[] = [];
    const [, urgent] = waiters([{ name: 'big', memoryBytes: 500 }, { name: 'urgent', priority: 10 }], served);
    await flush();
    expect(served).toEqual(['urgent']);
    expect(c.status()).toMatchObject({ activeJobs: 1, pendingJobs: 1 });
    expect((await urgent)?.priority).toBe(10);
    expect(source.reads).toBe(1);
  });

  it('rejects a waiter with the signal reason when aborted, removes its listener and serves the next', async () => {
    await open({ maxConcurrentJobs: 1 });
    const [held] = take(1);
    const ac = new AbortController();
    const served: string[] = [];
    const [a, b] = waiters([{ name: 'a', signal: ac.signal }, { name: 'b' }], served);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    const reason = new Error('gave up');
    ac.abort(reason);
    await expect(a).rejects.toBe(reason);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    expect(c.status().pendingJobs).toBe(1);
    held?.release();
    await b;
    expect(served).toEqual(['a:rejected', 'b']);
  });

  it('serves the waiters behind a head that gave up, at once', async () => {
    await open({ maxConcurrentJobs: 4, minConcurrentJobs: 0 }, { memory: 0.5, memoryLimitBytes: 1000 });
    const ac = new AbortController();
    const served: string[] = [];
    const [big, small] = waiters([{ name: 'big', memoryBytes: 400, signal: ac.signal }, { name: 'small' }], served);
    await flush();
    expect(served).toEqual([]);
    ac.abort(new Error('too big for now'));
    await expect(big).rejects.toThrow('too big for now');
    await small;
    expect(served).toEqual(['big:rejected', 'small']);
  });

  it('removes the abort listener once a waiter is served', async () => {
    await open({ maxConcurrentJobs: 1 });
    const [held] = take(1);
    const ac = new AbortController();
    const p = c.acquire({ signal: ac.signal });
    held?.release();
    await p;
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('rejects at once with the reason of a signal that is already aborted', async () => {
    await open({ maxConcurrentJobs: 1 });
    await expect(c.acquire({ signal: AbortSignal.abort(new Error('already')) })).rejects.toThrow('already');
    expect(c.status()).toMatchObject({ activeJobs: 0, pendingJobs: 0 });
  });

  it('validates priority and memoryBytes', async () => {
    await open();
    expect(() => c.tryAcquire({ priority: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => c.tryAcquire({ priority: '1' as never })).toThrow(/`priority` to be an integer, got "1"/);
    expect(() => c.tryAcquire({ memoryBytes: -1 })).toThrow(/`memoryBytes` to be a non-negative integer, got -1/);
    expect(() => c.tryAcquire(null as never)).toThrow(InvalidArgumentError);
    await expect(c.acquire({ memoryBytes: Number.NaN })).rejects.toThrow(InvalidArgumentError);
    expect(c.status().activeJobs).toBe(0);
  });
});

describe('the hot path', () => {
  it('reads no clock and takes no sample in tryAcquire() and release()', async () => {
    await open({ maxConcurrentJobs: 2 });
    const reads = source.reads;
    const clocks = [vi.spyOn(performance, 'now'), vi.spyOn(Date, 'now'), vi.spyOn(process.hrtime, 'bigint')];
    try {
      for (let i = 0; i < 10_000; i++) {
        const a = c.tryAcquire();
        const b = c.tryAcquire({ memoryBytes: 1 });
        c.tryAcquire();
        a?.release();
        b?.release();
      }
      for (const clock of clocks) expect(clock).not.toHaveBeenCalled();
    } finally {
      for (const clock of clocks) clock.mockRestore();
    }
    expect(source.reads).toBe(reads);
    expect(c.status()).toMatchObject({ activeJobs: 0, rejectedJobs: 10_000 });
  });
});

describe('slots while throttled', () => {
  it('keeps minConcurrentJobs slots available while throttled', async () => {
    await open({ maxConcurrentJobs: 4, minConcurrentJobs: 2 });
    await step({ cpu: 0.95 });
    expect(c.status().throttled).toBe(true);
    take(2);
    expect(c.tryAcquire()).toBeUndefined();
  });

  it('admits nothing while throttled with minConcurrentJobs 0', async () => {
    await open({ maxConcurrentJobs: 4, minConcurrentJobs: 0 });
    await step({ cpu: 0.95 });
    expect(c.tryAcquire()).toBeUndefined();
  });

  it('wakes waiters when admission resumes', async () => {
    await open({ maxConcurrentJobs: 3, cooldownMs: 2000 });
    await step({ cpu: 0.95 });
    take(1);
    const served: string[] = [];
    const p = waiters([{ name: 'a' }, { name: 'b' }, { name: 'c' }], served);
    await step(CALM, 1);
    expect(served).toEqual([]);
    await step(CALM, 1);
    expect(c.status().throttled).toBe(false);
    await Promise.all(p.slice(0, 2));
    expect(served).toEqual(['a', 'b']);
    expect(c.status()).toMatchObject({ activeJobs: 3, pendingJobs: 1 });
  });

  it('lets running jobs finish when throttled and admits again only below the minimum', async () => {
    await open({ maxConcurrentJobs: 3, minConcurrentJobs: 1 });
    const slots = take(3);
    await step({ memory: 0.95 });
    slots[0]?.release();
    expect(c.tryAcquire()).toBeUndefined();
    slots[1]?.release();
    expect(c.tryAcquire()).toBeUndefined();
    slots[2]?.release();
    expect(c.tryAcquire()).toBeDefined();
  });
});

describe('setMaxConcurrentJobs', () => {
  it('grows at runtime and admits waiters at once', async () => {
    await open({ maxConcurrentJobs: 1 });
    take(1);
    const served: string[] = [];
    const p = waiters([{ name: 'a' }, { name: 'b' }, { name: 'c' }], served);
    c.setMaxConcurrentJobs(3);
    await Promise.all(p.slice(0, 2));
    expect(served).toEqual(['a', 'b']);
    expect(c.status()).toMatchObject({ maxJobs: 3, activeJobs: 3, pendingJobs: 1 });
  });

  it('shrinks at runtime: running jobs finish, no new one starts until under the new limit', async () => {
    await open({ maxConcurrentJobs: 4 });
    const slots = take(4);
    c.setMaxConcurrentJobs(2);
    expect(c.status().maxJobs).toBe(2);
    slots[0]?.release();
    slots[1]?.release();
    expect(c.tryAcquire()).toBeUndefined();
    slots[2]?.release();
    expect(c.tryAcquire()).toBeDefined();
  });

  it('refuses values that are not an integer from max(1, minConcurrentJobs) to 100000', async () => {
    await open({ minConcurrentJobs: 2 });
    expect(() => c.setMaxConcurrentJobs(0)).toThrow(/`maxConcurrentJobs` to be an integer from 1 to 100000, got 0/);
    expect(() => c.setMaxConcurrentJobs(2.5)).toThrow(InvalidArgumentError);
    expect(() => c.setMaxConcurrentJobs('3' as never)).toThrow(/got "3"/);
    expect(() => c.setMaxConcurrentJobs(1)).toThrow(/`maxConcurrentJobs` \(1\) to be at least `minConcurrentJobs` \(2\)/);
    expect(c.status().maxJobs).toBe(4);
    await c.close();
    expect(() => c.setMaxConcurrentJobs(3)).toThrow(IllegalStateError);
  });
});

describe('jobs that declare memory', () => {
  // A limit of 1000 bytes keeps the arithmetic readable; the threshold is 0.85.
  const at = (memory: number): SourceReading => ({ cpu: 0.2, memory, memoryLimitBytes: 1000 });

  it('admits a job only if the measured memory plus what it declares stays under the threshold', async () => {
    await open({ maxConcurrentJobs: 8, minConcurrentJobs: 0 }, at(0.5));
    expect(c.tryAcquire({ memoryBytes: 351 })).toBeUndefined();
    const a = c.tryAcquire({ memoryBytes: 300 });
    expect(a?.memoryBytes).toBe(300);
    // Its memory is not in any sample yet: it counts on top of the measurement.
    expect(c.tryAcquire({ memoryBytes: 100 })).toBeUndefined();
    expect(c.tryAcquire({ memoryBytes: 50 })).toBeDefined();
    expect(c.status()).toMatchObject({ reservedMemoryBytes: 350, rejectedJobs: 2 });
    // Undeclared jobs are not checked against memory.
    expect(c.tryAcquire()).toBeDefined();
  });

  it('counts declarations only once a sample shows their memory', async () => {
    await open({ maxConcurrentJobs: 8, minConcurrentJobs: 0 }, at(0.2));
    c.tryAcquire({ memoryBytes: 300 });
    await step(at(0.5));
    // 0.5 (now including the first job) + 0.3 = 0.8: fits. Before the sample it was 0.2 + 0.3 + 0.3 = 0.8 too, but 0.35 did not fit then.
    expect(c.tryAcquire({ memoryBytes: 300 })).toBeDefined();
    expect(c.tryAcquire({ memoryBytes: 60 })).toBeUndefined();
  });

  it('keeps the sum of declarations under the threshold even when the measurement is low', async () => {
    await open({ maxConcurrentJobs: 8, minConcurrentJobs: 0 }, at(0.1));
    // Jobs that have not allocated yet (or never will) keep the measurement low.
    expect(c.tryAcquire({ memoryBytes: 400 })).toBeDefined();
    await step(at(0.1));
    expect(c.tryAcquire({ memoryBytes: 400 })).toBeDefined();
    await step(at(0.1));
    expect(c.tryAcquire({ memoryBytes: 100 })).toBeUndefined();
    expect(c.tryAcquire({ memoryBytes: 50 })).toBeDefined();
  });

  it('wakes a waiting job when a sample shows memory was freed, or a declared job ends', async () => {
    await open({ maxConcurrentJobs: 8, minConcurrentJobs: 0 }, at(0.7));
    const served: string[] = [];
    const [big] = waiters([{ name: 'big', memoryBytes: 400 }], served);
    await step(at(0.6));
    expect(served).toEqual([]);
    await step(at(0.4));
    await big;
    expect(served).toEqual(['big']);
    // Now the budget holds it back: 400 + 500 > 850.
    const [next] = waiters([{ name: 'next', memoryBytes: 500 }], served);
    await step(at(0.1));
    expect(served).toEqual(['big']);
    (await big)?.release();
    await next;
    expect(served).toEqual(['big', 'next']);
  });

  it('checks the memory of a declared job even for a minConcurrentJobs slot', async () => {
    await open({ maxConcurrentJobs: 4, minConcurrentJobs: 1 }, at(0.5));
    expect(c.tryAcquire({ memoryBytes: 400 })).toBeUndefined();
    expect(c.tryAcquire({ memoryBytes: 350 })).toBeDefined();
  });

  it('does not check declarations while the memory limit is unknown', async () => {
    await open({ maxConcurrentJobs: 4, minConcurrentJobs: 0 }, { cpu: 0.1 });
    expect(c.tryAcquire({ memoryBytes: 10 ** 12 })).toBeDefined();
  });
});

describe('close', () => {
  it('rejects waiters with IllegalStateError; releasing a slot afterwards is harmless', async () => {
    await open({ maxConcurrentJobs: 1 });
    const [held] = take(1);
    const served: string[] = [];
    const [a] = waiters([{ name: 'a' }], served);
    await c.close();
    await expect(a).rejects.toMatchObject({ code: 'OUTPOST_ILLEGAL_STATE', state: 'closing' });
    expect(() => held?.release()).not.toThrow();
    expect(() => c.tryAcquire()).toThrow(/Cannot acquire a slot while closed/);
    await expect(c.acquire()).rejects.toBeInstanceOf(IllegalStateError);
  });
});
