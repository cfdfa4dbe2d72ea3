/**
 * A typed event emitter that never lets a listener's throw reach the code
 * that emitted (a response, an upload loop, a timer) or crash the process.
 * @internal
 */
import { EventEmitter } from 'node:events';
import { ListenerError, type OutpostError } from '../errors.js';

/** An event map whose `'error'` carries an {@link OutpostError}. */
export type ErrorEvents = { error: [error: OutpostError] };

/**
 * Emits typed events. A listener that throws is reported with
 * `process.emitWarning(ListenerError)`, and the listeners after it still run;
 * an `'error'` without listeners becomes a process warning instead of an
 * uncaught exception.
 */
export class SafeEmitter<E extends Record<keyof E, unknown[]> & ErrorEvents> {
  readonly events = new EventEmitter<E>();
  readonly #where: string;

  /** @param where - names the emitter in warnings, e.g. `ingest` */
  constructor(where: string) {
    this.#where = where;
  }

  /** Emits `event` to each listener in turn; never throws, and one listener's throw does not skip the others. */
  emit<K extends keyof E & string>(event: K, ...args: E[K]): void {
    const listeners = (this.events as EventEmitter).rawListeners(event) as ((...values: unknown[]) => unknown)[];
    for (const listener of listeners) {
      try {
        listener.apply(this.events, args); // a `once` wrapper removes itself before it calls the listener
      } catch (err) {
        process.emitWarning(new ListenerError(`${this.#where} '${event}'`, err));
      }
    }
  }

  /** Adds a listener. */
  on<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): void {
    (this.events as EventEmitter).on(event, listener as (...args: unknown[]) => void);
  }

  /** Adds a listener for the next occurrence only. */
  once<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): void {
    (this.events as EventEmitter).once(event, listener as (...args: unknown[]) => void);
  }

  /** Removes a listener. */
  off<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): void {
    (this.events as EventEmitter).off(event, listener as (...args: unknown[]) => void);
  }

  /** Whether anyone listens to `event`: lets callers skip building an event nobody reads. */
  has(event: keyof E & string): boolean {
    return (this.events as EventEmitter).listenerCount(event) > 0;
  }

  /** Emits `'error'`, or a process warning when nobody listens. */
  error(err: OutpostError): void {
    if ((this.events as EventEmitter).listenerCount('error') > 0) this.emit('error', ...([err] as unknown as E['error']));
    else process.emitWarning(err);
  }
}
