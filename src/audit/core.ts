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
import { LineSerializer } from './line.js';
import type { ResolvedAuditLoggerOptions } from './options.js';
import { RemoteShipper } from './remote.js';
import { deleteExpiredFiles } from './retention.js';
import { AuditFile } from './rotation.js';
import { formatVerbose } from './verbose.js';

/** Lifecycle state of an {@link AuditLogger}. */
export type AuditLoggerState = 'idle' | 'running' | 'closing' | 'closed';

/** Characters held in memory (buffer + failed writes) while the file cannot take them, at most: about 32 MB. */
export const MAX_HELD_CHARS = 32 * 1024 * 1024;
/** Period of the age retention. */
export const RETENTION_INTERVAL_MS = 3_600_000;
const DAY_MS = 86_400_000;

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
  #retryTimer: NodeJS.Timeout | undefined;
  #retentionTimer: NodeJS.Timeout | undefined;
  #retentionRun: Promise<readonly string[]> | undefined;
  #deletedFiles = 0;
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
  }

  get state(): AuditLoggerState {
    return this.#state;
  }

  get file(): string | undefined {
    return this.#file?.path;
  }

  /** Records one event. Never throws. */
  record(severity: AuditSeverity, type: AuditEventType, message: string, details: AuditDetails | undefined, jobId: string | undefined, reportId: string | undefined, durationMs: number | undefined): void {
    if (!this.#accepting) return this.#incidents.afterClose();
    const seq = ++this.#seq;
    const file = this.#file;
    // The buffer drains by itself unless there is no file yet or it is failing: only then can memory grow.
    if ((file === undefined || file.failing) && this.#buffer.chars + (file?.heldChars ?? 0) >= MAX_HELD_CHARS) return this.#incidents.memoryLimit(MAX_HELD_CHARS);
    const duration = typeof durationMs === 'number' && Number.isFinite(durationMs) ? durationMs : undefined;
    const written = this.#line.write(seq, severity, type, message, details, jobId, reportId, duration);
    if (this.options.verbose) this.#verbose(severity, type, message, jobId, reportId, duration, written as AuditDetails | undefined);
    const state = this.#state;
    if (state !== 'running') {
      if (state === 'closing' && !this.#flushing) this.flushNow();
      return;
    }
    if ((file as AuditFile).failing) this.#armRetry();
    else if (severity === 'ERROR' || severity === 'CRITICAL' || IMMEDIATE_EVENT_TYPES.has(type) || this.#buffer.count >= this.options.bufferSize) {
      if (!this.#flushing) this.flushNow();
      else this.#buffer.arm(); // logged from inside a write (a notice, a listener): the next batch takes it
    } else this.#buffer.arm();
  }

  /**
   * Writes the buffer to the file now (and queues it for shipping). Returns
   * whether every event logged so far is in the file. Synchronous: the exit
   * handler relies on it.
   */
  flushNow(): boolean {
    const file = this.#file;
    if (file === undefined || !this.#accepting) return false;
    if (this.#buffer.count === 0 && !file.failing) return true;
    this.#flushing = true;
    try {
      const { text, count } = this.#buffer.take();
      if (count > 0) this.#remote?.enqueue(text, count);
      const ok = file.write(text, count);
      if (!ok) this.#armRetry();
      return ok;
    } finally {
      this.#flushing = false;
    }
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
    let ok = this.flushNow();
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
    this.#retentionRun ??= this.#retention().finally(() => {
      this.#retentionRun = undefined;
    });
    return this.#retentionRun;
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
      deletedFiles: this.#deletedFiles,
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
    process.on('exit', this.#onExit);
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
    if (o.maxAgeDays > 0) {
      this.#retentionTimer = setInterval(() => void this.deleteExpiredFiles().catch(() => undefined), RETENTION_INTERVAL_MS);
      this.#retentionTimer.unref();
      await this.deleteExpiredFiles();
    }
  }

  async #close(): Promise<void> {
    await this.#starting?.catch(() => undefined);
    this.#state = 'closing';
    this.#uninstallShutdown?.();
    this.#uninstallShutdown = undefined;
    this.#buffer.disarm();
    clearTimeout(this.#retryTimer);
    clearInterval(this.#retentionTimer);
    this.#retryTimer = this.#retentionTimer = undefined;
    this.flushNow();
    await this.#retentionRun?.catch(() => undefined);
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
    if (lost > 0) {
      warnStderr(`${lost} audit event(s) could not be written to ${file?.path ?? this.options.logFile} and are lost`);
      this.#incidents.drop(lost, 'unwritable');
    }
    process.off('exit', this.#onExit);
    this.#state = 'closed';
  }

  /** On `process.exit()`, an uncaught exception, or the end of the event loop: writes what is buffered, synchronously. */
  readonly #onExit = (): void => {
    try {
      // A recovery notice logged during the first pass is written by the second.
      for (let pass = 0; pass < 2 && (this.#buffer.count > 0 || this.#file?.failing === true); pass++) this.flushNow();
      if (this.#file?.failing === true) warnStderr(`exiting with ${this.stats().pendingEvents} audit event(s) that could not be written`);
    } catch {
      // never throw from an exit handler
    }
  };

  async #retention(): Promise<readonly string[]> {
    const { logFile, maxAgeDays } = this.options;
    if (maxAgeDays <= 0) return [];
    let result;
    try {
      result = await deleteExpiredFiles(logFile, (path) => path === this.#file?.path, maxAgeDays * DAY_MS, Date.now());
    } catch (err) {
      this.emitter.error(new AuditError('OUTPOST_AUDIT_RETENTION_FAILED', `Cannot list the audit directory of ${logFile}: ${(err as Error).message}`, { cause: err, file: logFile }));
      return [];
    }
    if (result.deleted.length > 0) {
      this.#deletedFiles += result.deleted.length;
      this.emitter.emit('files-deleted', { files: result.deleted });
    }
    const first = result.failed[0];
    if (first !== undefined) {
      const message = `Cannot delete ${result.failed.length} expired audit file(s), the first ${first.path}: ${first.error.message}`;
      this.emitter.error(new AuditError('OUTPOST_AUDIT_RETENTION_FAILED', message, { cause: first.error, file: first.path }));
    }
    return result.deleted;
  }

  #armRetry(): void {
    if (this.#retryTimer !== undefined || this.#state !== 'running') return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.flushNow();
    }, WRITE_RETRY_MS);
    this.#retryTimer.unref();
  }

  #verbose(severity: AuditSeverity, type: string, message: string, jobId: string | undefined, reportId: string | undefined, durationMs: number | undefined, details: AuditDetails | undefined): void {
    try {
      process.stderr.write(formatVerbose(this.#line.timestamp, severity, type, String(message), jobId, reportId, durationMs, details));
    } catch {
      // stderr closed
    }
  }
}
