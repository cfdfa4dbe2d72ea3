/**
 * Promises for "wait until": `flush()` (everything submitted so far settled)
 * and `onIdle()` (nothing live). Checked when an item settles: no polling.
 * @internal
 */

interface Waiter {
  /** Settled when every item with `seq < upTo` is terminal. */
  readonly upTo: number;
  readonly resolve: () => void;
  readonly reject: (reason: unknown) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
}

/** Waiters on a watermark of submission order. */
export class Waiters {
  readonly #waiters = new Set<Waiter>();

  /** Whether anyone waits. */
  get size(): number {
    return this.#waiters.size;
  }

  /**
   * A promise settled when `oldestLive()` is at least `upTo` (every item
   * before it is terminal); rejects with `signal.reason` on abort.
   */
  wait(upTo: number, oldestLive: number, signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (oldestLive >= upTo) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        upTo,
        resolve,
        reject,
        signal,
        onAbort: () => {
          this.#waiters.delete(waiter);
          reject(signal?.reason);
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.#waiters.add(waiter);
    });
  }

  /** Resolves the waiters whose watermark `oldestLive` has reached. */
  check(oldestLive: number): void {
    for (const waiter of this.#waiters) {
      if (oldestLive < waiter.upTo) continue;
      this.#waiters.delete(waiter);
      waiter.signal?.removeEventListener('abort', waiter.onAbort);
      waiter.resolve();
    }
  }
}
