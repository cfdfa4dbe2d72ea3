/**
 * Property test of the slots against a model: random sequences of
 * tryAcquire, acquire (with priorities and aborts), release, resize and
 * throttle, checked after every step.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Admission, type Slot } from '../../src/resource/admission.js';
import { flush } from './fake.js';

type Op =
  | { readonly kind: 'try' }
  | { readonly kind: 'acquire'; readonly priority: number }
  | { readonly kind: 'release'; readonly pick: number }
  | { readonly kind: 'abort'; readonly pick: number }
  | { readonly kind: 'resize'; readonly max: number }
  | { readonly kind: 'throttle'; readonly on: boolean };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.constant<Op>({ kind: 'try' }),
  fc.integer({ min: -2, max: 2 }).map((priority): Op => ({ kind: 'acquire', priority })),
  fc.nat(20).map((pick): Op => ({ kind: 'release', pick })),
  fc.nat(20).map((pick): Op => ({ kind: 'abort', pick })),
  fc.integer({ min: 2, max: 5 }).map((max): Op => ({ kind: 'resize', max })),
  fc.boolean().map((on): Op => ({ kind: 'throttle', on })),
);

interface Waiting {
  readonly seq: number;
  readonly priority: number;
  readonly abort: AbortController;
  state: 'waiting' | 'served' | 'aborted';
}

describe('slots (model)', () => {
  it('never admits over the limit, serves by priority then arrival, and keeps its counters true', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 60 }), async (ops) => {
        const min = 1;
        const a = new Admission(3, min, 0.85);
        const held: Slot[] = [];
        const waiting: Waiting[] = [];
        let seq = 0;
        const limit = (): number => Math.max(min, a.throttled ? min : a.max);
        for (const o of ops) {
          const activeBefore = a.active;
          switch (o.kind) {
            case 'try': {
              const slot = a.tryAcquire(0, 0);
              const queued = waiting.some((w) => w.state === 'waiting');
              expect(slot !== undefined).toBe(!queued && activeBefore < limit());
              if (slot !== undefined) held.push(slot);
              break;
            }
            case 'acquire': {
              const w: Waiting = { seq: seq++, priority: o.priority, abort: new AbortController(), state: 'waiting' };
              waiting.push(w);
              a.acquire(o.priority, 0, w.abort.signal).then(
                (slot) => {
                  // Nobody of higher priority, or of the same priority and earlier, was still waiting.
                  const ahead = waiting.filter((x) => x.state === 'waiting' && x !== w && (x.priority > w.priority || (x.priority === w.priority && x.seq < w.seq)));
                  expect(ahead).toEqual([]);
                  w.state = 'served';
                  held.push(slot);
                },
                () => void (w.state = 'aborted'),
              );
              break;
            }
            case 'release':
              held.splice(o.pick % Math.max(1, held.length), 1)[0]?.release();
              break;
            case 'abort': {
              const open = waiting.filter((w) => w.state === 'waiting');
              open[o.pick % Math.max(1, open.length)]?.abort.abort(new Error('gave up'));
              break;
            }
            case 'resize':
              a.max = o.max;
              a.dispatch();
              break;
            case 'throttle':
              a.throttled = o.on;
              a.dispatch();
              break;
          }
          await flush();
          // Grants only ever happen below the limit: the count can exceed it only after a shrink or a throttle.
          expect(a.active <= Math.max(limit(), activeBefore)).toBe(true);
          expect(a.active).toBe(held.length);
          expect(a.pending).toBe(waiting.filter((w) => w.state === 'waiting').length);
          // Nobody waits while a slot is free.
          if (a.pending > 0) expect(a.active).toBeGreaterThanOrEqual(limit());
        }
      }),
      { numRuns: 300 },
    );
  });
});
