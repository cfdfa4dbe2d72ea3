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

/**
 * Installs the handlers; returns the function that removes them. On a signal:
 * everything logged so far is written at once; then, if the handler is the
 * only listener of that signal, the logger is closed (within `timeoutMs`) and
 * the signal is raised again, so the process ends as the signal would have
 * ended it. When the application listens too, it decides when to exit (the
 * exit handler writes whatever is logged until then).
 * @internal
 */
export function installShutdownHandlers(target: ShutdownTarget, options: { readonly signals: readonly NodeJS.Signals[]; readonly timeoutMs: number }): () => void {
  const handlers = new Map<NodeJS.Signals, () => void>();
  const uninstall = (): void => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
    handlers.clear();
  };
  for (const signal of options.signals) {
    const handler = (): void => {
      target.flushNow();
      if (process.listenerCount(signal) > 1) return;
      uninstall();
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        process.kill(process.pid, signal);
      };
      // Not unref'd: the process is ending, and must end by the signal, not by an empty event loop.
      const timer = setTimeout(finish, options.timeoutMs);
      target.close().then(finish, finish);
    };
    handlers.set(signal, handler);
    process.on(signal, handler);
  }
  return uninstall;
}
