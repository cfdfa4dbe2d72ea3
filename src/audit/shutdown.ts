/**
 * Opt-in signal handling (the library installs none by itself). Without it,
 * SIGTERM and SIGINT end Node at once and the buffered events are lost; with
 * it, they are written first.
 */
import { constants } from 'node:os';
import * as v from '../internal/validate.js';

/** Options of `AuditLogger.installShutdownHandlers()`. */
export interface ShutdownHandlerOptions {
  /** Signals to handle. @default ['SIGTERM', 'SIGINT'] */
  readonly signals?: readonly NodeJS.Signals[] | undefined;
  /** Longest wait for `close()` (shipping what is queued) before the process ends anyway, in ms. @default 5000 (5 s) */
  readonly timeoutMs?: number | undefined;
}

/** Defaults of {@link ShutdownHandlerOptions}. */
export const shutdownHandlerDefaults = Object.freeze({
  /** SIGTERM (service managers, `kill`) and SIGINT (Ctrl-C). */
  signals: Object.freeze(['SIGTERM', 'SIGINT']) as readonly NodeJS.Signals[],
  /** 5 s. */
  timeoutMs: 5_000,
});

/** What the handlers act on. @internal */
export interface ShutdownTarget {
  /** Writes everything logged so far, synchronously. */
  flushNow(): unknown;
  /** Closes the logger. */
  close(): Promise<void>;
}

const UNCATCHABLE = new Set(['SIGKILL', 'SIGSTOP']);

/** Validates {@link ShutdownHandlerOptions}. @internal */
export function resolveShutdownOptions(options: ShutdownHandlerOptions): { readonly signals: readonly NodeJS.Signals[]; readonly timeoutMs: number } {
  if (typeof options !== 'object' || options === null) v.fail('options', 'an object', options);
  v.knownKeys('installShutdownHandlers', options, ['signals', 'timeoutMs']);
  const signals: unknown = options.signals ?? shutdownHandlerDefaults.signals;
  if (!Array.isArray(signals) || signals.length === 0 || !signals.every((s) => typeof s === 'string' && s in constants.signals && !UNCATCHABLE.has(s))) {
    v.fail('signals', 'a non-empty array of catchable signal names such as SIGTERM (not SIGKILL or SIGSTOP)', signals);
  }
  return { signals: [...new Set(signals as NodeJS.Signals[])], timeoutMs: v.timerMs('timeoutMs', options.timeoutMs ?? shutdownHandlerDefaults.timeoutMs, 0) };
}

/** Marks the process listeners of this library (of any copy of it loaded in the process). */
const OURS = Symbol.for('outpost-sdk.audit.shutdown-listener');

interface Registration {
  readonly target: ShutdownTarget;
  readonly timeoutMs: number;
}

/** The one process listener of a signal, shared by every logger that installed handlers for it. */
interface SignalHandling {
  readonly listener: () => void;
  readonly registrations: Set<Registration>;
  /** The process is being ended by this signal: closing the loggers, then raising it again. */
  ending: boolean;
}

const handlings = new Map<NodeJS.Signals, SignalHandling>();

function isOurs(listener: unknown): boolean {
  return typeof listener === 'function' && (listener as unknown as Record<symbol, unknown>)[OURS] === true;
}

/**
 * Installs the handlers; returns the function that removes them. Every logger
 * shares one process listener per signal (so that two loggers do not take
 * each other for the application). On a signal: every logger writes what it
 * holds at once; then, if the only listeners of that signal are the
 * library's, every logger is closed (each within its `timeoutMs`) and the
 * signal is raised again, so the process ends as the signal would have ended
 * it. When the application listens too, it decides when to exit (the exit
 * handler writes whatever is logged until then).
 * @internal
 */
export function installShutdownHandlers(target: ShutdownTarget, options: { readonly signals: readonly NodeJS.Signals[]; readonly timeoutMs: number }): () => void {
  const registered: [NodeJS.Signals, Registration][] = [];
  for (const signal of options.signals) {
    let handling = handlings.get(signal);
    if (handling === undefined) {
      handling = createHandling(signal);
      handlings.set(signal, handling);
      process.on(signal, handling.listener);
    }
    const registration: Registration = { target, timeoutMs: options.timeoutMs };
    handling.registrations.add(registration);
    registered.push([signal, registration]);
  }
  return () => {
    for (const [signal, registration] of registered.splice(0)) {
      const handling = handlings.get(signal);
      if (handling === undefined || !handling.registrations.delete(registration)) continue;
      // While the process is ending, the listener stays: a second signal must not kill it mid-close.
      if (handling.registrations.size === 0 && !handling.ending) {
        process.off(signal, handling.listener);
        handlings.delete(signal);
      }
    }
  };
}

function createHandling(signal: NodeJS.Signals): SignalHandling {
  const listener = (): void => {
    const registrations = [...handling.registrations];
    for (const { target } of registrations) {
      try {
        target.flushNow();
      } catch {
        // flushNow never throws; a signal handler must not either
      }
    }
    if (handling.ending || !process.listeners(signal).every(isOurs)) return;
    handling.ending = true;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      process.off(signal, listener);
      if (handlings.get(signal) === handling) handlings.delete(signal);
      process.kill(process.pid, signal);
    };
    // Not unref'd: the process is ending, and must end by the signal, not by an empty event loop.
    const timer = setTimeout(finish, Math.max(0, ...registrations.map((r) => r.timeoutMs)));
    void Promise.allSettled(registrations.map(({ target }) => target.close())).then(finish);
  };
  Object.defineProperty(listener, OURS, { value: true });
  const handling: SignalHandling = { listener, registrations: new Set(), ending: false };
  return handling;
}
