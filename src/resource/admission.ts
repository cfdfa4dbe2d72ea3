/**
 * Slots: who may run now. Counters and a wait queue only — no clock, no
 * file, no syscall — so `tryAcquire()` and `release()` cost a few
 * comparisons. Waiters are served by priority, first come first served
 * within a priority, and are woken by a release, a resume, a resize, a
 * new memory reading or a new head of the queue; nothing polls.
 */
import { JobTooLargeError } from '../errors.js';
import type { MemoryScope } from './reading.js';

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
  /** How many reads had started when it was admitted: reads from this one on may not show its memory. */
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
  /** Fraction of each memory limit that declared jobs must fit under. */
  memoryThreshold: number;
  active = 0;
  rejected = 0;
  pending = 0;
  /** Most slots held at once since {@link takePeak} was last called. */
  peak = 0;
  reservedBytes = 0;
  #throttled = false;
  /** Reads started so far; a slot records it when admitted. */
  #epoch = 0;
  /** The epoch of the read behind the memory figures in use (that read cannot show slots admitted from it on). */
  #measuredEpoch = 0;
  /** Declared bytes of held slots admitted since the read behind the figures in use started. */
  #freshBytes = 0;
  /** Declared bytes of held slots admitted since the latest read started. */
  #sinceReadBytes = 0;
  /** Declared bytes that still fit over the latest measurement, at its tightest level; `Infinity` while no limit is known. */
  #roomBytes = Number.POSITIVE_INFINITY;
  /** The most declared bytes held at once: threshold × the tightest limit; `Infinity` while no limit is known. */
  #budgetBytes = Number.POSITIVE_INFINITY;
  /** Non-empty buckets, highest priority first. */
  #buckets: Bucket[] = [];

  constructor(max: number, min: number, memoryThreshold: number) {
    this.max = max;
    this.min = min;
    this.memoryThreshold = memoryThreshold;
  }

  /** The most memory declared jobs may hold at once, in bytes; `undefined` while no limit is known. */
  get budgetBytes(): number | undefined {
    return this.#budgetBytes === Number.POSITIVE_INFINITY ? undefined : this.#budgetBytes;
  }

  /**
   * A slot now, or `undefined` (counted as a rejection). Never jumps ahead of waiters.
   * @throws {@link JobTooLargeError} when `memoryBytes` can never fit
   */
  tryAcquire(priority: number, memoryBytes: number): Slot | undefined {
    if (memoryBytes > this.#budgetBytes) throw new JobTooLargeError(memoryBytes, this.#budgetBytes);
    if (this.pending === 0 && this.#admits(memoryBytes)) return this.#grant(priority, memoryBytes);
    this.rejected++;
    return undefined;
  }

  /** A slot now or, in turn, later; rejects with `signal.reason` when it aborts first, with {@link JobTooLargeError} when it can never fit. */
  acquire(priority: number, memoryBytes: number, signal: AbortSignal | undefined): Promise<Slot> {
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    if (memoryBytes > this.#budgetBytes) return Promise.reject(new JobTooLargeError(memoryBytes, this.#budgetBytes));
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
      // A new head (higher priority than the one that was blocked, by its declared memory) may fit now.
      if (this.#buckets[0]?.head === waiter) this.dispatch();
    });
  }

  /** Whether admission is limited to `min`. */
  set throttled(value: boolean) {
    this.#throttled = value;
  }

  get throttled(): boolean {
    return this.#throttled;
  }

  /** A read is starting: what is admitted from now on may not be in it. */
  readStarted(): void {
    this.#epoch++;
    this.#sinceReadBytes = 0;
  }

  /**
   * The memory levels the latest read measured (`undefined`: unknown, the
   * last known figures stay in force). Declared memory must fit at every
   * level: under `memoryThreshold` × its limit in total, and over its
   * measurement counting the jobs admitted since the read started. Waiters
   * that can never fit under a smaller budget are rejected.
   */
  setMemory(scopes: readonly MemoryScope[] | undefined): void {
    if (scopes === undefined || scopes.length === 0) return;
    let room = Number.POSITIVE_INFINITY;
    let budget = Number.POSITIVE_INFINITY;
    for (const { usedBytes, limitBytes } of scopes) {
      const cap = this.memoryThreshold * limitBytes;
      room = Math.min(room, cap - usedBytes);
      budget = Math.min(budget, cap);
    }
    const shrank = budget < this.#budgetBytes;
    this.#roomBytes = room;
    this.#budgetBytes = budget;
    this.#measuredEpoch = this.#epoch;
    this.#freshBytes = this.#sinceReadBytes;
    if (shrank && this.pending > 0) this.#rejectTooLarge();
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
      if (slot.epoch >= this.#measuredEpoch) this.#freshBytes -= slot.memoryBytes;
      if (slot.epoch === this.#epoch) this.#sinceReadBytes -= slot.memoryBytes;
    }
    if (this.pending > 0) this.dispatch();
  }

  #rejectTooLarge(): void {
    for (const bucket of [...this.#buckets]) {
      for (let waiter = bucket.head; waiter !== undefined; ) {
        const next: Waiter | undefined = waiter.next;
        if (waiter.memoryBytes > this.#budgetBytes) {
          this.#unlink(waiter);
          if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener('abort', waiter.onAbort);
          waiter.reject(new JobTooLargeError(waiter.memoryBytes, this.#budgetBytes));
        }
        waiter = next;
      }
    }
  }

  /**
   * Whether a job declaring `bytes` may start now. The `min` slots are
   * exempt from the throttle, never from the memory arithmetic: a declared
   * job that does not fit would risk an OOM kill of the whole group.
   */
  #admits(bytes: number): boolean {
    if (this.active >= (this.#throttled ? this.min : Math.max(this.min, this.max))) return false;
    return bytes === 0 || (this.reservedBytes + bytes <= this.#budgetBytes && this.#freshBytes + bytes <= this.#roomBytes);
  }

  #grant(priority: number, memoryBytes: number): Slot {
    if (++this.active > this.peak) this.peak = this.active;
    if (memoryBytes > 0) {
      this.reservedBytes += memoryBytes;
      this.#freshBytes += memoryBytes;
      this.#sinceReadBytes += memoryBytes;
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
