/**
 * `AuditLogger`: the agent's audit trail. Options, lifecycle, flushing,
 * statistics and events; the logging methods come from
 * {@link AuditContextLogger}.
 */
import { IllegalStateError } from '../errors.js';
import { AuditContextLogger } from './context.js';
import { AuditCore, type AuditLoggerState } from './core.js';
import type { AuditLoggerEvents, AuditStats } from './events.js';
import { resolveAuditLoggerOptions, type AuditLoggerOptions, type ResolvedAuditLoggerOptions } from './options.js';
import { installShutdownHandlers, resolveShutdownOptions, type ShutdownHandlerOptions } from './shutdown.js';

/** Options of {@link AuditLogger.flush}. */
export interface AuditFlushOptions {
  /** Also wait until every queued batch was shipped (or given up). @default false */
  readonly remote?: boolean | undefined;
  /** Aborts the wait for shipping; the promise rejects with `signal.reason`. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * The audit trail: every event as one JSON line, in call order, in files
 * rotated by size and day (0600 in a 0700 directory), deleted after
 * `maxAgeDays`, optionally shipped to a remote endpoint. Logging never throws
 * and never waits; write failures are counted, reported (`write-failed`, stderr)
 * and retried until the file is writable again; a deleted file is recreated.
 * `close()`, `process.exit()` and an uncaught exception lose nothing; SIGTERM
 * and SIGINT lose nothing with {@link AuditLogger.installShutdownHandlers}.
 * The process's `exit` listener is registered when the logger is created:
 * `close()` every logger you create. See `docs/audit.md`.
 *
 * @example
 * ```ts
 * await using audit = new AuditLogger({ agentId: 'agent-001', tenantId: 'acme', logFile: '/var/lib/agent/audit.log' });
 * await audit.start();
 * audit.installShutdownHandlers();
 * audit.info('agent_start', 'Agent started', { version: '1.2.0' });
 * audit.jobStarted('job-42', 'scan', { target: '/srv/app' });
 * audit.jobFailed('job-42', new Error('semgrep exited with 2'));   // written at once
 * ```
 */
export class AuditLogger extends AuditContextLogger {
  /** The resolved options. */
  readonly options: ResolvedAuditLoggerOptions;
  readonly #core: AuditCore;

  /** @throws {@link InvalidOptionError} when an option is missing, unknown or out of range */
  constructor(options: AuditLoggerOptions) {
    const core = new AuditCore(resolveAuditLoggerOptions(options));
    super(core, {});
    this.#core = core;
    this.options = core.options;
  }

  /** `'idle'` before `start()`, then `'running'`, `'closing'`, `'closed'`. */
  get state(): AuditLoggerState {
    return this.#core.state;
  }

  /** The file being written, e.g. `/var/lib/agent/audit.2025-01-15.3.log`; `undefined` before `start()`. */
  get currentFile(): string | undefined {
    return this.#core.file;
  }

  /**
   * Opens today's file (creating the directory 0700 and the file 0600), writes
   * what was logged before, deletes files older than `maxAgeDays`, and starts
   * the timers (all unref'd) and shipping. Idempotent while running. Events
   * logged before `start()` are held in memory and written by it.
   * @throws {@link AuditError} `OUTPOST_AUDIT_OPEN_FAILED` when the file cannot be created or opened (the logger stays idle; `start()` may be called again)
   * @throws {@link IllegalStateError} after `close()`
   */
  start(): Promise<void> {
    return this.#core.start();
  }

  /**
   * Writes the buffered events now, after checking that the active file is
   * still in place (recreating it if it was deleted). Resolves `true` when
   * every event logged so far is in the file, `false` when the file is
   * failing (the events are held and retried). With `remote: true`, also
   * waits for shipping. While `close()` runs, waits for it and resolves
   * `true` unless events could not be written.
   * @throws {@link IllegalStateError} before `start()` or after `close()`
   */
  flush(options: AuditFlushOptions = {}): Promise<boolean> {
    return this.#core.flush(options);
  }

  /**
   * Writes what is buffered, keeps shipping what is queued for up to
   * `remoteCloseTimeoutMs`, closes the file and removes the exit and signal
   * handlers. Idempotent; leaves no timer, socket or file handle behind.
   * Events logged afterwards are dropped (counted, with one process warning).
   */
  close(): Promise<void> {
    return this.#core.close();
  }

  /** Same as {@link AuditLogger.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Counters: logged, written, pending, dropped, write errors, rotations, deletions, shipping. */
  stats(): AuditStats {
    return this.#core.stats();
  }

  /**
   * Deletes rotated files whose last write is older than `maxAgeDays` now
   * (it also runs at start and hourly). Resolves with the deleted paths.
   * Failures are reported as `error` events (`OUTPOST_AUDIT_RETENTION_FAILED`).
   * @throws {@link IllegalStateError} unless running
   */
  deleteExpiredFiles(): Promise<readonly string[]> {
    return this.#core.deleteExpiredFiles();
  }

  /**
   * Opt-in: on SIGTERM or SIGINT, writes everything logged so far at once;
   * then, unless the application listens to that signal too, closes the
   * logger (within `timeoutMs`) and ends the process with the same signal.
   * Every logger of the process shares one listener per signal, so several
   * loggers with handlers still end the process (all of them closed first).
   * `close()` removes the handlers; so does the function returned.
   * @throws {@link InvalidOptionError} for unknown or uncatchable signals
   * @throws {@link IllegalStateError} once closing
   */
  installShutdownHandlers(options: ShutdownHandlerOptions = {}): () => void {
    const resolved = resolveShutdownOptions(options);
    const state = this.#core.state;
    if (state === 'closing' || state === 'closed') throw new IllegalStateError('install shutdown handlers', state);
    const uninstall = installShutdownHandlers(this.#core, resolved);
    this.#core.adoptShutdownHandlers(uninstall);
    return uninstall;
  }

  /** Subscribes to an event. */
  on<K extends keyof AuditLoggerEvents>(event: K, listener: (...args: AuditLoggerEvents[K]) => void): this {
    this.#core.emitter.on(event, listener);
    return this;
  }

  /** Subscribes to the next occurrence of an event. */
  once<K extends keyof AuditLoggerEvents>(event: K, listener: (...args: AuditLoggerEvents[K]) => void): this {
    this.#core.emitter.once(event, listener);
    return this;
  }

  /** Unsubscribes a listener. */
  off<K extends keyof AuditLoggerEvents>(event: K, listener: (...args: AuditLoggerEvents[K]) => void): this {
    this.#core.emitter.off(event, listener);
    return this;
  }
}
