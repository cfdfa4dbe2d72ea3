/**
 * Remote shipping: each batch taken from the buffer is also queued, exactly
 * as it is written to the file (JSON lines), and POSTed by one background
 * loop with undici, retried on the shared {@link RetryPolicy}. The backoff
 * belongs to the shipper, not to a batch: after a failed POST no batch is sent
 * before the delay (or `Retry-After`) is over, even when the one that failed
 * was dropped meanwhile; only a 2xx resets it. The queue is bounded: when it
 * is full the oldest batch is dropped (the one being sent included) and
 * counted. Queuing never waits, so shipping never slows logging down.
 */
import { Pool } from 'undici';
import { UploadHttpError, type UploadError } from '../errors.js';
import { sleep } from '../internal/abort.js';
import { VERSION } from '../internal/version.js';
import { isRetryableStatus, parseRetryAfter, toUploadError, type RetryPolicy } from '../transport/index.js';

/** Why batches were dropped without reaching the endpoint. */
export type ShipDropReason = 'queue-full' | 'rejected' | 'closed';

/** What the shipper reports to its owner. */
export interface RemoteHooks {
  /** A batch was acknowledged (2xx). */
  shipped(events: number, bytes: number, attempts: number): void;
  /** A POST failed; nothing is sent for `delayMs`. `retry` counts the consecutive failures. */
  retry(error: UploadError, retry: number, delayMs: number, events: number): void;
  /** Batches were given up. */
  dropped(batches: number, events: number, reason: ShipDropReason, error: UploadError | undefined): void;
}

/** Settings of a {@link RemoteShipper}. */
export interface RemoteShipperOptions {
  readonly url: URL;
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly maxQueueBatches: number;
  readonly policy: RetryPolicy;
  readonly hooks: RemoteHooks;
}

interface Batch {
  readonly body: string;
  readonly events: number;
  /** POSTs of this batch so far. */
  attempts: number;
}

/** Counters of a {@link RemoteShipper}. */
export interface RemoteCounters {
  queuedBatches: number;
  queuedEvents: number;
  shippedBatches: number;
  shippedEvents: number;
  droppedBatches: number;
  droppedEvents: number;
  retries: number;
}

/** The bounded queue and its sending loop. */
export class RemoteShipper {
  readonly #o: RemoteShipperOptions;
  readonly #path: string;
  readonly #headers: Record<string, string>;
  readonly #queue: Batch[] = [];
  readonly #stop = new AbortController();
  readonly #counters: RemoteCounters = { queuedBatches: 0, queuedEvents: 0, shippedBatches: 0, shippedEvents: 0, droppedBatches: 0, droppedEvents: 0, retries: 0 };
  #pool: Pool | undefined;
  #loop: Promise<void> | undefined;
  /** The batch being sent, and how to give it up. */
  #head: { readonly batch: Batch; readonly abort: AbortController } | undefined;
  /** Failed POSTs since the last 2xx. */
  #failures = 0;
  /** No POST before this time (ms since the epoch): the backoff of the last failure. */
  #notBefore = 0;
  #closed = false;
  #idleWaiters: (() => void)[] = [];

  /** @param options - endpoint, limits, policy and hooks (already validated) */
  constructor(options: RemoteShipperOptions) {
    this.#o = options;
    this.#path = options.url.pathname + options.url.search;
    this.#headers = { 'content-type': 'application/x-ndjson', 'user-agent': `outpost-sdk/${VERSION}`, ...options.headers };
  }

  /** Counters, with the queue as it is now. */
  counters(): Readonly<RemoteCounters> {
    let events = 0;
    for (const b of this.#queue) events += b.events;
    return { ...this.#counters, queuedBatches: this.#queue.length, queuedEvents: events };
  }

  /** Queues a batch (one JSON line per event); drops the oldest when the queue is full. Never waits. */
  enqueue(body: string, events: number): void {
    if (this.#closed) {
      this.#dropped(1, events, 'closed', undefined);
      return;
    }
    this.#queue.push({ body, events, attempts: 0 });
    if (this.#queue.length > this.#o.maxQueueBatches) {
      const oldest = this.#queue.shift() as Batch;
      if (this.#head?.batch === oldest) this.#head.abort.abort();
      this.#dropped(1, oldest.events, 'queue-full', undefined);
    }
    // Started on a microtask, so that the log call that queued the batch does not pay for the request.
    this.#loop ??= Promise.resolve().then(() => this.#run());
  }

  /** Resolves when nothing is queued or being sent; rejects with `signal.reason` when `signal` aborts first. */
  whenIdle(signal?: AbortSignal): Promise<void> {
    if (this.#loop === undefined) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#idleWaiters = this.#idleWaiters.filter((w) => w !== done);
        reject(signal?.reason);
      };
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.#idleWaiters.push(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Stops accepting batches, keeps shipping what is queued for up to
   * `timeoutMs`, then gives the rest up (`'closed'`) and closes the connection.
   */
  async close(timeoutMs: number): Promise<void> {
    this.#closed = true;
    if (this.#loop !== undefined && timeoutMs > 0) {
      // A ref'd timer: a script that awaits close() must not exit before it resolves.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.#idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.#stop.abort();
    await this.#loop;
    const left = this.#queue.splice(0);
    if (left.length > 0) this.#dropped(left.length, left.reduce((n, b) => n + b.events, 0), 'closed', undefined);
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.destroy();
  }

  async #run(): Promise<void> {
    const stop = this.#stop.signal;
    try {
      while (this.#queue.length > 0 && !stop.aborted) {
        const waitMs = this.#notBefore - Date.now();
        if (waitMs > 0) {
          // Batches dropped meanwhile do not shorten the wait: the endpoint asked for it, not the batch.
          try {
            await sleep(waitMs, stop, { unref: true });
          } catch {
            return;
          }
          continue;
        }
        await this.#send(this.#queue[0] as Batch);
      }
    } finally {
      this.#head = undefined;
      this.#loop = undefined;
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** One POST of `batch`: acknowledged, refused for good, or failed (the backoff then starts); dropped or stopped meanwhile. */
  async #send(batch: Batch): Promise<void> {
    const abort = new AbortController();
    this.#head = { batch, abort };
    const signal = AbortSignal.any([abort.signal, this.#stop.signal]);
    const { policy, hooks } = this.#o;
    batch.attempts++;
    try {
      await this.#post(batch, signal);
      this.#remove(batch);
      this.#failures = 0;
      this.#notBefore = 0;
      this.#counters.shippedBatches++;
      this.#counters.shippedEvents += batch.events;
      hooks.shipped(batch.events, Buffer.byteLength(batch.body), batch.attempts);
    } catch (err) {
      if (signal.aborted) return; // dropped for room, or stopping: the caller accounts for it
      const error = toUploadError(err);
      if (!policy.isRetryable(error)) {
        this.#remove(batch);
        this.#dropped(1, batch.events, 'rejected', error);
        return;
      }
      this.#failures++;
      const delayMs = policy.delayMs(this.#failures, error);
      this.#notBefore = Date.now() + delayMs;
      this.#counters.retries++;
      hooks.retry(error, this.#failures, delayMs, batch.events);
    } finally {
      this.#head = undefined;
    }
  }

  async #post(batch: Batch, signal: AbortSignal): Promise<void> {
    const { url, timeoutMs } = this.#o;
    this.#pool ??= new Pool(url.origin, { connections: 1, pipelining: 1, connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const res = await this.#pool.request({ path: this.#path, method: 'POST', headers: this.#headers, body: batch.body, signal });
    await res.body.dump();
    if (res.statusCode >= 200 && res.statusCode < 300) return;
    const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
    throw new UploadHttpError(res.statusCode, { retryable: isRetryableStatus(res.statusCode), ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
  }

  #remove(batch: Batch): void {
    if (this.#queue[0] === batch) this.#queue.shift();
  }

  #dropped(batches: number, events: number, reason: ShipDropReason, error: UploadError | undefined): void {
    this.#counters.droppedBatches += batches;
    this.#counters.droppedEvents += events;
    this.#o.hooks.dropped(batches, events, reason, error);
  }
}
