/**
 * The pipeline every logger of one `AuditLogger` shares: a call is stamped
 * and serialized into the buffer, the buffer is written to the file in
 * batches and queued for shipping. Everything on a call's path is
 * synchronous, so the order on disk is the order of calls; the file writes
 * synchronously too, so the exit handler can write the last batch.
 * @internal
 */
import { AuditError, IllegalStateError } from '../errors.js';
import { EventBuffer } from './buffer.js';
import { IMMEDIATE_EVENT_TYPES, type AuditDetails, type AuditEventType, type AuditSeverity } from './event-types.js';
import { AuditEmitter, type AuditStats } from './events.js';
import { Incidents, WRITE_RETRY_MS, warnStderr } from './incidents.js';
import { LineSerializer, idOf, textOf } from './line.js';
import type { ResolvedAuditLoggerOptions } from './options.js';
import { RemoteShipper } from './remote.js';
import { RetentionSchedule } from './retention.js';
import { AuditFile } from './audit-file.js';
import { printVerbose } from './verbose.js';

/** Lifecycle state of an {@link AuditLogger}. */
export type AuditLoggerState = 'idle' | 'running' | 'closing' | 'closed';

/** Characters held in memory (buffer + failed writes) while the file cannot take them, at most: about 32 MB. */
export const MAX_HELD_CHARS = 32 * 1024 * 1024;

/** The shared pipeline behind an {@link AuditLogger} and its context loggers. @internal */
export class AuditCore {
  readonly options: ResolvedAuditLoggerOptions;
  readonly emitter = new AuditEmitter();
  #state: AuditLoggerState = 'idle';
  /** False once the file is being closed: later events are dropped as after-close. */
  #accepting = true;
  readonly #buffer: EventBuffer;
  readonly #line: LineSerializer;
  readonly #incidents: Incidents;
  #seq = 0;
  #file: AuditFile | undefined;
  #remote: RemoteShipper | undefined;
  /** Remote counters, kept once the shipper closed. */
  #remoteStats: AuditStats['remote'];
  #flushing = false;
  /** An event that is due at once (or a full buffer) came while a batch was being written. */
  #dueDuringWrite = false;
  /** An event is being serialized: a log call now (from a toJSON or a getter of its details) is refused. */
  #serializing = false;
  #refused: { count: number; readonly type: string; readonly message: string } | undefined;
  /** The process is exiting: every event is written at once, since no later write will come. */
  #exiting = false;
  /** Events the file still held, lost, when the logger closed. */
  #lostAtClose = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  readonly #retention: RetentionSchedule;
  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #uninstallShutdown: (() => void) | undefined;

  /** @param options - resolved options */
  constructor(options: ResolvedAuditLoggerOptions) {
    this.options = options;
    this.#buffer = new EventBuffer(options.flushIntervalMs, () => this.flushNow());
    this.#line = new LineSerializer(options, this.#buffer);
    this.#incidents = new Incidents({
      emitter: this.emitter,
      path: () => this.#file?.path ?? options.logFile,
      pendingEvents: () => this.#buffer.count + (this.#file?.heldEvents ?? 0),
      failedAttempts: () => this.#file?.failedAttempts ?? 0,
      notice: (message, details) => this.record('WARN', 'agent_error', message, details, undefined, undefined, undefined),
    });
    this.#retention = new RetentionSchedule(options.logFile, options.maxAgeDays, (path) => path === this.#file?.path, this.emitter);
    // From the start, not from start(): events logged before start() are told about on exit, not lost silently.
    process.on('exit', this.#onExit);
  }

  get state(): AuditLoggerState {
    return this.#state;
  }

  get file(): string | undefined {
    return this.#file?.path;
  }

  /**
   * Records one event. Never throws. A message or id that is not a string is
   * written as text; a call made while another event is being serialized
   * (from a `toJSON` or a getter of its details) is refused and reported.
   */
  record(severity: AuditSeverity, type: AuditEventType, message: string, details: AuditDetails | undefined, jobId: string | undefined, reportId: string | undefined, durationMs: number | undefined): void {
    if (!this.#accepting) return this.#incidents.afterClose();
    if (this.#serializing) return this.#refuse(type, message);
    const seq = ++this.#seq;
    const file = this.#file;
    // The buffer drains by itself unless there is no file yet or it is failing: only then can memory grow.
    if ((file === undefined || file.failing) && this.#buffer.chars + (file?.heldChars ?? 0) >= MAX_HELD_CHARS) return this.#incidents.memoryLimit(MAX_HELD_CHARS);
    const duration = typeof durationMs === 'number' && Number.isFinite(durationMs) ? durationMs : undefined;
    const text = typeof message === 'string' ? message : textOf(message);
    const kind = (typeof type === 'string' ? type : textOf(type)) as AuditEventType;
    const job = typeof jobId === 'string' || jobId === undefined ? jobId : idOf(jobId);
    const report = typeof reportId === 'string' || reportId === undefined ? reportId : idOf(reportId);
    let written: unknown;
    this.#serializing = true;
    try {
      written = this.#line.write(seq, severity, kind, text, details, job, report, duration);
    } finally {
      this.#serializing = false;
    }
    if (this.options.verbose) printVerbose(this.#line.timestamp, severity, kind, text, job, report, duration, written as AuditDetails | undefined);
    this.#schedule(severity, kind, file);
    if (this.#refused !== undefined) this.#reportRefused();
  }

  /** Decides when the event just buffered is written. */
  #schedule(severity: AuditSeverity, type: AuditEventType, file: AuditFile | undefined): void {
    const state = this.#state;
    if (this.#exiting) {
      // No later write will come: write now (or tell that it cannot be written).
      if (file === undefined) warnStderr('an audit event logged during exit, before start(), was never written');
      else if (!this.#flushing) this.flushNow();
      return;
    }
    if (state !== 'running') {
      if (state === 'closing' && !this.#flushing) this.flushNow();
      return;
    }
    if ((file as AuditFile).failing) this.#armRetry();
    else if (severity === 'ERROR' || severity === 'CRITICAL' || IMMEDIATE_EVENT_TYPES.has(type) || this.#buffer.count >= this.options.bufferSize) {
      if (!this.#flushing) this.flushNow();
      else this.#dueDuringWrite = true; // logged from inside a write (a notice, a listener): written right after it
    } else this.#buffer.arm();
  }

  /**
   * Writes the buffer to the file now (and queues it for shipping). Returns
   * whether every event logged so far is in the file. Synchronous: the exit
   * handler relies on it. `verify` checks first that the file is still in
   * place (see `vanished.ts`).
   */
  flushNow(verify = false): boolean {
    const file = this.#file;
    if (file === undefined || !this.#accepting) return false;
    if (this.#flushing) {
      this.#dueDuringWrite = true; // a listener flushing from inside a write: the outer write takes it
      return false;
    }
    let ok = this.#writeBatch(file, verify);
    if (this.#dueDuringWrite) {
      // An immediate event logged by a listener during that write (a notice, a drop) goes right after it, once:
      // a listener that logs one on every write then writes at the pace of the buffer timer, not in a loop.
      this.#dueDuringWrite = false;
      ok = this.#writeBatch(file, false);
      if (this.#dueDuringWrite) {
        this.#dueDuringWrite = false;
        if (this.#buffer.count > 0) this.#buffer.arm();
      }
    }
    return ok;
  }

  #writeBatch(file: AuditFile, verify: boolean): boolean {
    if (this.#buffer.count === 0 && !file.failing && !verify) return true;
    this.#flushing = true;
    try {
      const { text, count } = this.#buffer.take();
      if (count > 0) this.#remote?.enqueue(text, count);
      const ok = file.write(text, count, verify);
      if (!ok) this.#armRetry();
      return ok;
    } finally {
      this.#flushing = false;
    }
  }

  /** A log call while an event was being serialized: writing it then would put it on disk before that event, out of `seq` order. */
  #refuse(type: unknown, message: unknown): void {
    if (this.#refused === undefined) this.#refused = { count: 1, type: textOf(type), message: textOf(message) };
    else this.#refused.count++;
  }

  #reportRefused(): void {
    const refused = this.#refused;
    this.#refused = undefined;
    if (refused === undefined) return;
    this.record('WARN', 'validation_error', `${refused.count} audit event(s) logged while another event was being serialized (from a toJSON or a getter in its details) were refused`, {
      reason: 'audit_reentrant_log',
      refused_events: refused.count,
      first_type: refused.type,
      first_message: refused.message.slice(0, 200),
    }, undefined, undefined, undefined);
  }

  /** See `AuditLogger.start`. */
  start(): Promise<void> {
    if (this.#state === 'running') return Promise.resolve();
    if (this.#state !== 'idle' || this.#closing !== undefined) return Promise.reject(new IllegalStateError('start', this.#state === 'idle' ? 'closing' : this.#state));
    this.#starting ??= this.#start().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  /** See `AuditLogger.flush`. */
  async flush(options: { readonly remote?: boolean | undefined; readonly signal?: AbortSignal | undefined }): Promise<boolean> {
    if (this.#state !== 'running' && this.#state !== 'closing') throw new IllegalStateError('flush', this.#state);
    options.signal?.throwIfAborted();
    if (this.#state === 'closing') {
      // close() writes everything (and ships what it can): its outcome is the answer.
      await abortable(this.#closing as Promise<void>, options.signal);
      return this.#lostAtClose === 0;
    }
    let ok = this.flushNow(true);
    // A recovery notice recorded during that write is written by a second one.
    if (ok && this.#buffer.count > 0) ok = this.flushNow();
    if (options.remote === true) await this.#remote?.whenIdle(options.signal);
    return ok && this.#buffer.count === 0;
  }

  /** See `AuditLogger.close`. */
  close(): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    if (this.#closing === undefined) {
      if (this.#state === 'running') this.#state = 'closing'; // else after start() settles
      this.#closing = this.#close();
    }
    return this.#closing;
  }

  /** See `AuditLogger.deleteExpiredFiles`. */
  deleteExpiredFiles(): Promise<readonly string[]> {
    if (this.#state !== 'running') return Promise.reject(new IllegalStateError('delete expired files', this.#state));
    return this.#retention.run();
  }

  /** Remembers how to remove the shutdown handlers, so that `close()` does. */
  adoptShutdownHandlers(uninstall: () => void): void {
    this.#uninstallShutdown?.(); // installed twice: the second set replaces the first
    this.#uninstallShutdown = uninstall;
  }

  /** See `AuditLogger.stats`. */
  stats(): AuditStats {
    const file = this.#file;
    return {
      file: file?.path,
      loggedEvents: this.#seq,
      writtenEvents: file?.writtenEvents ?? 0,
      pendingEvents: this.#buffer.count + (file?.heldEvents ?? 0),
      writeErrors: this.#incidents.writeErrors,
      droppedEvents: this.#incidents.droppedEvents,
      rotations: file?.rotations ?? 0,
      deletedFiles: this.#retention.deletedFiles,
      remote: this.#remote?.counters() ?? this.#remoteStats,
    };
  }

  async #start(): Promise<void> {
    const o = this.options;
    let file: AuditFile;
    try {
      file = await AuditFile.open(o.logFile, o.maxSizeMB, this.#incidents.fileHooks);
    } catch (err) {
      throw new AuditError('OUTPOST_AUDIT_OPEN_FAILED', `Cannot open the audit file for ${o.logFile}: ${(err as Error).message}`, { cause: err, file: o.logFile });
    }
    this.#file = file;
    this.#state = 'running';
    if (o.remoteEndpoint !== undefined) {
      this.#remote = new RemoteShipper({
        url: o.remoteEndpoint,
        headers: o.remoteHeaders,
        timeoutMs: o.remoteTimeoutMs,
        maxQueueBatches: o.remoteQueueBatches,
        policy: o.remoteRetryPolicy,
        hooks: this.#incidents.remoteHooks,
      });
    }
    this.flushNow(); // what was logged before start()
    await this.#retention.start();
  }

  async #close(): Promise<void> {
    await this.#starting?.catch(() => undefined);
    this.#state = 'closing';
    this.#uninstallShutdown?.();
    this.#uninstallShutdown = undefined;
    this.#buffer.disarm();
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.flushNow(true);
    await this.#retention.stop();
    const remote = this.#remote;
    if (remote !== undefined) {
      await remote.close(this.options.remoteCloseTimeoutMs);
      this.#remoteStats = remote.counters();
      this.#remote = undefined;
      this.#incidents.shippingClosed();
    }
    const file = this.#file;
    let lost: number;
    if (file === undefined) lost = this.#buffer.take().count;
    else {
      // Last attempts: the buffer, then the recovery notice a success may have logged.
      for (let pass = 0; pass < 2 && (this.#buffer.count > 0 || file.failing); pass++) this.flushNow();
      this.#accepting = false;
      lost = await file.close();
    }
    this.#accepting = false;
    this.#lostAtClose = lost;
    if (lost > 0) {
      warnStderr(`${lost} audit event(s) could not be written to ${file?.path ?? this.options.logFile} and are lost`);
      this.#incidents.drop(lost, 'unwritable');
    }
    process.off('exit', this.#onExit);
    this.#state = 'closed';
  }

  /** On `process.exit()`, an uncaught exception, or the end of the event loop: writes what is buffered, synchronously. */
  /** Also marks the process as exiting: events logged later (by an application `exit` listener) are written at once. */
  readonly #onExit = (): void => {
    this.#exiting = true;
    try {
      const file = this.#file;
      if (file === undefined) {
        const { count } = this.#buffer.take();
        if (count > 0) {
          warnStderr(`exiting before start(): ${count} audit event(s) logged so far were never written`);
          this.#incidents.drop(count, 'unwritable');
        }
        return;
      }
      // A recovery notice logged during the first pass is written by the second.
      this.flushNow(true);
      if (this.#buffer.count > 0 || file.failing) this.flushNow();
      if (file.failing) {
        warnStderr(`exiting with ${this.stats().pendingEvents} audit event(s) that could not be written`);
        file.discardHeld();
      }
    } catch {
      // never throw from an exit handler
    }
  };

  #armRetry(): void {
    if (this.#retryTimer !== undefined || this.#state !== 'running') return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.flushNow();
    }, WRITE_RETRY_MS);
    this.#retryTimer.unref();
  }
}

/** Settles like `promise`, or rejects with `signal.reason` when `signal` aborts first. */
function abortable(promise: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) return promise;
  signal.throwIfAborted();
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
