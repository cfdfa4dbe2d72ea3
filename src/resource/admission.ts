/**
 * Slots: who may run now. Counters and a wait queue only — no clock, no
 * file, no syscall — so `tryAcquire()` and `release()` cost a few
 * comparisons. Waiters are served by priority, first come first served
 * within a priority, and are woken by a release, a resume, a resize or a
 * new memory reading; nothing polls.
 */

/** A held admission. Release it when the job ends; `using slot = ...` does it for you. */
export interface Slot extends Disposable {
  /** The priority it was acquired with. */
  readonly priority: number;
  /** Memory the job declared, in bytes (0 when none). */
  readonly memoryBytes: number;
  /** Whether it was released. */
  readonly released: boolean;
  /** Gives the slot back and wakes the next waiter. Idempotent. */
  release(): void;
}

/** Memory figures the admission of a job that declared `memoryBytes` is checked against. */
export interface MemoryBudget {
  /** The latest measured memory fraction; `undefined` when unknown. */
  readonly fraction: number | undefined;
  /** The limit behind it, in bytes; `undefined` when unknown (declared memory is then not checked). */
  readonly limitBytes: number | undefined;
}

interface Waiter {
  readonly priority: number;
  readonly memoryBytes: number;
  readonly resolve: (slot: Slot) => void;
  readonly reject: (reason: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  prev: Waiter | undefined;
  next: Waiter | undefined;
  bucket: Bucket;
}

interface Bucket {
  readonly priority: number;
  head: Waiter | undefined;
  tail: Waiter | undefined;
}

class AdmissionSlot implements Slot {
  readonly priority: number;
  readonly memoryBytes: number;
  /** The memory epoch it was admitted in: its memory is not yet in a sample while this is the current epoch. */
  readonly epoch: number;
  #owner: Admission | undefined;

  constructor(owner: Admission, priority: number, memoryBytes: number, epoch: number) {
    this.#owner = owner;
    this.priority = priority;
    this.memoryBytes = memoryBytes;
    this.epoch = epoch;
  }

  get released(): boolean {
    return this.#owner === undefined;
  }

  release(): void {
    const owner = this.#owner;
    if (owner === undefined) return;
    this.#owner = undefined;
    owner.free(this);
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

/** Admission state: limits, counters and the wait queue. */
export class Admission {
  /** Jobs admitted at once while not throttled. */
  max: number;
  /** Jobs admitted at once, throttled or not. */
  min: number;
  /** Fraction of the memory limit that declared jobs must fit under. */
  memoryThreshold: number;
  active = 0;
  rejected = 0;
  pending = 0;
  /** Most slots held at once since {@link takePeak} was last called. */
  peak = 0;
  reservedBytes = 0;
  #throttled = false;
  #freshBytes = 0;
  #epoch = 0;
  #budget: MemoryBudget = { fraction: undefined, limitBytes: undefined };
  /** Non-empty buckets, highest priority first. */
  #buckets: Bucket[] = [];

  constructor(max: number, min: number, memoryThreshold: number) {
    this.max = max;
    this.min = min;
    this.memoryThreshold = memoryThreshold;
  }

  /** A slot now, or `undefined` (counted as a rejection). Never jumps ahead of waiters. */
  tryAcquire(priority: number, memoryBytes: number): Slot | undefined {
    if (this.pending === 0 && this.#admits(memoryBytes)) return this.#grant(priority, memoryBytes);
    this.rejected++;
    return undefined;
  }

  /** A slot now or, in turn, later; rejects with `signal.reason` when it aborts first. */
  acquire(priority: number, memoryBytes: number, signal: AbortSignal | undefined): Promise<Slot> {
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    if (this.pending === 0 && this.#admits(memoryBytes)) return Promise.resolve(this.#grant(priority, memoryBytes));
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = { priority, memoryBytes, resolve, reject, signal, onAbort: undefined, prev: undefined, next: undefined, bucket: this.#bucket(priority) };
      const bucket = waiter.bucket;
      waiter.prev = bucket.tail;
      if (bucket.tail === undefined) bucket.head = waiter;
      else bucket.tail.next = waiter;
      bucket.tail = waiter;
      this.pending++;
      if (signal !== undefined) {
        waiter.onAbort = () => {
          this.#unlink(waiter);
          reject(signal.reason);
          // The head may have been what held the others back (declared memory).
          this.dispatch();
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
    });
  }

  /** Whether admission is limited to `min`. */
  set throttled(value: boolean) {
    this.#throttled = value;
  }

  get throttled(): boolean {
    return this.#throttled;
  }

  /** A new memory reading: the memory of every job admitted so far is now in it. */
  setBudget(budget: MemoryBudget): void {
    this.#budget = budget;
    this.#epoch++;
    this.#freshBytes = 0;
  }

  /** Returns the peak since the last call and starts a new period at the current count. */
  takePeak(): number {
    const peak = this.peak;
    this.peak = this.active;
    return peak;
  }

  /** Admits waiters, in order, while the head fits. */
  dispatch(): void {
    for (let bucket = this.#buckets[0]; bucket !== undefined; bucket = this.#buckets[0]) {
      const waiter = bucket.head as Waiter;
      if (!this.#admits(waiter.memoryBytes)) return;
      this.#unlink(waiter);
      if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener('abort', waiter.onAbort);
      waiter.resolve(this.#grant(waiter.priority, waiter.memoryBytes));
    }
  }

  /** Rejects every waiter with `reason` (on close). */
  rejectAll(reason: unknown): void {
    for (let bucket = this.#buckets[0]; bucket !== undefined; bucket = this.#buckets[0]) {
      const waiter = bucket.head as Waiter;
      this.#unlink(waiter);
      if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener('abort', waiter.onAbort);
      waiter.reject(reason);
    }
  }

  /** Called by a slot's `release()`. @internal */
  free(slot: AdmissionSlot): void {
    this.active--;
    if (slot.memoryBytes > 0) {
      this.reservedBytes -= slot.memoryBytes;
      if (slot.epoch === this.#epoch) this.#freshBytes -= slot.memoryBytes;
    }
    if (this.pending > 0) this.dispatch();
  }

  #admits(memoryBytes: number): boolean {
    const active = this.active;
    if (active < this.min) return true;
    if (this.#throttled || active >= this.max) return false;
    return memoryBytes === 0 || this.#fits(memoryBytes);
  }

  /**
   * Whether a job declaring `bytes` fits under the memory threshold. Two
   * projections, the stricter wins: the budget (every held declaration plus
   * this one, as a fraction of the limit), and the measurement (the latest
   * sample plus the declarations admitted since it, which it cannot show yet).
   */
  #fits(bytes: number): boolean {
    const { fraction, limitBytes } = this.#budget;
    if (limitBytes === undefined || limitBytes <= 0) return true;
    const budget = (this.reservedBytes + bytes) / limitBytes;
    const measured = fraction === undefined ? 0 : fraction + (this.#freshBytes + bytes) / limitBytes;
    return Math.max(budget, measured) <= this.memoryThreshold;
  }

  #grant(priority: number, memoryBytes: number): Slot {
    if (++this.active > this.peak) this.peak = this.active;
    if (memoryBytes > 0) {
      this.reservedBytes += memoryBytes;
      this.#freshBytes += memoryBytes;
    }
    return new AdmissionSlot(this, priority, memoryBytes, this.#epoch);
  }

  #bucket(priority: number): Bucket {
    const buckets = this.#buckets;
    let i = 0;
    while (i < buckets.length && (buckets[i] as Bucket).priority > priority) i++;
    const found = buckets[i];
    if (found !== undefined && found.priority === priority) return found;
    const bucket: Bucket = { priority, head: undefined, tail: undefined };
    buckets.splice(i, 0, bucket);
    return bucket;
  }

  #unlink(waiter: Waiter): void {
    const bucket = waiter.bucket;
    if (waiter.prev === undefined) bucket.head = waiter.next;
    else waiter.prev.next = waiter.next;
    if (waiter.next === undefined) bucket.tail = waiter.prev;
    else waiter.next.prev = waiter.prev;
    waiter.prev = waiter.next = undefined;
    this.pending--;
    if (bucket.head === undefined) this.#buckets.splice(this.#buckets.indexOf(bucket), 1);
  }
}
