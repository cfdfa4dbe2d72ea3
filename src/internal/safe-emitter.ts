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
 * `process.emitWarning(ListenerError)`; an `'error'` without listeners becomes
 * a process warning instead of an uncaught exception.
 */
export class SafeEmitter<E extends Record<keyof E, unknown[]> & ErrorEvents> {
  readonly events = new EventEmitter<E>();
  readonly #where: string;

  /** @param where - names the emitter in warnings, e.g. `ingest` */
  constructor(where: string) {
    this.#where = where;
  }

  /** Emits `event`; never throws. */
  emit<K extends keyof E & string>(event: K, ...args: E[K]): void {
    try {
      (this.events.emit as (name: string, ...values: unknown[]) => boolean).call(this.events, event, ...args);
    } catch (err) {
      process.emitWarning(new ListenerError(`${this.#where} '${event}'`, err));
    }
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
