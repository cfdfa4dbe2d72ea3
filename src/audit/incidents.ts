/**
 * How the audit logger tells what went wrong, without ever throwing into a
 * log call: a counter in `stats()`, a typed event, a line on stderr, and —
 * where the trail itself should say so — a WARN `agent_error` event in the
 * file (recovery after failed writes or a file found deleted, batches that
 * never reached the remote endpoint).
 * @internal
 */
import { AuditError, IllegalStateError, type UploadError } from '../errors.js';
import type { AuditDetails } from './event-types.js';
import type { AuditDroppedEvent, AuditEmitter } from './events.js';
import type { RemoteHooks, ShipDropReason } from './remote.js';
import type { AuditFileHooks } from './audit-file.js';

/** Shortest time between two local notices about remote drops. */
export const NOTICE_INTERVAL_MS = 60_000;
/** Retry period of a failing file. */
export const WRITE_RETRY_MS = 1_000;

/** What the incidents need from the logger. */
export interface IncidentHost {
  readonly emitter: AuditEmitter;
  /** Path of the active file (or the configured one before start). */
  path(): string;
  /** Events in memory waiting for the file. */
  pendingEvents(): number;
  /** Failed attempts since the last successful write. */
  failedAttempts(): number;
  /** Records a WARN `agent_error` event in the trail itself. */
  notice(message: string, details: AuditDetails): void;
}

/** Writes one line on stderr; never throws. */
export function warnStderr(line: string): void {
  try {
    process.stderr.write(`outpost audit: ${line}\n`);
  } catch {
    // stderr closed: nothing else to tell
  }
}

/** Counters and reports of everything that goes wrong. */
export class Incidents {
  /** Failed write attempts. */
  writeErrors = 0;
  /** Events that never reached the file. */
  droppedEvents = 0;
  readonly #host: IncidentHost;
  #failingSince = 0;
  #memoryDropped = 0;
  #warnedAfterClose = false;
  readonly #shipDrops = { batches: 0, events: 0, reason: 'queue-full' as ShipDropReason, lastNoticeAt: Number.NEGATIVE_INFINITY };
  #unshippedAtClose = 0;

  /** @param host - the logger's side */
  constructor(host: IncidentHost) {
    this.#host = host;
  }

  /** Reports of the audit file. */
  readonly fileHooks: AuditFileHooks = {
    writeFailed: (error, first) => {
      this.writeErrors++;
      const file = this.#host.path();
      if (first) {
        this.#failingSince = Date.now();
        warnStderr(`cannot write ${file}: ${error.message}; holding the events in memory and retrying every ${WRITE_RETRY_MS / 1000} s`);
      }
      const { emitter } = this.#host;
      if (!emitter.has('write-failed')) return;
      const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
      emitter.emit('write-failed', {
        error: new AuditError('OUTPOST_AUDIT_WRITE_FAILED', `Cannot write the audit file ${file}: ${code}`, { cause: error, file }),
        file,
        failedAttempts: this.#host.failedAttempts(),
        heldEvents: this.#host.pendingEvents(),
      });
    },
    recovered: (failedAttempts, vanished) => {
      const file = this.#host.path();
      const downtimeMs = Date.now() - this.#failingSince;
      const dropped = this.#memoryDropped;
      this.#memoryDropped = 0;
      warnStderr(`writing ${file} works again after ${failedAttempts} failed attempt(s)${dropped > 0 ? `; ${dropped} event(s) were dropped meanwhile` : ''}`);
      this.#host.emitter.emit('write-recovered', { file, failedAttempts, downtimeMs, droppedEvents: dropped });
      const outcome = dropped > 0 ? `${dropped} event(s) were dropped (memory limit)` : 'no event was lost';
      if (vanished !== undefined) {
        const what = vanished.how === 'deleted' ? 'was deleted (or its directory)' : 'was moved away or replaced';
        const rewritten = vanished.rewrittenEvents > 0 ? `; the ${vanished.rewrittenEvents} event(s) written to it since the last check were written again` : '';
        this.#host.notice(`The audit file ${file} ${what} and was recreated${rewritten}; ${outcome}`, {
          reason: 'audit_file_vanished',
          how: vanished.how,
          rewritten_events: vanished.rewrittenEvents,
          failed_attempts: failedAttempts,
          downtime_ms: downtimeMs,
          dropped_events: dropped,
        });
        return;
      }
      this.#host.notice(`Audit log writes failed ${failedAttempts} time(s) over ${downtimeMs} ms; ${outcome}`, {
        reason: 'audit_write_failed',
        failed_attempts: failedAttempts,
        downtime_ms: downtimeMs,
        dropped_events: dropped,
      });
    },
    rotated: (from, to) => this.#host.emitter.emit('rotated', { from, to }),
    rotateFailed: (error) => {
      const file = this.#host.path();
      warnStderr(`rotating ${file} failed: ${error.message}; writing goes on in the current file`);
      this.#host.emitter.error(new AuditError('OUTPOST_AUDIT_ROTATE_FAILED', `Rotating the audit file ${file} failed: ${error.message}`, { cause: error, file }));
    },
  };

  /** Reports of remote shipping. */
  readonly remoteHooks: RemoteHooks = {
    shipped: (events, bytes, attempts) => {
      this.#host.emitter.emit('shipped', { events, bytes, attempts });
      if (this.#shipDrops.batches > 0) this.#noticeShipDrops(true);
    },
    retry: (error: UploadError, retry, delayMs, events) => this.#host.emitter.emit('ship-retry', { error, retry, delayMs, events }),
    dropped: (batches, events, reason, error) => {
      this.#host.emitter.emit('ship-dropped', { batches, events, reason, error });
      if (reason === 'closed') {
        this.#unshippedAtClose += events;
        return;
      }
      this.#shipDrops.batches += batches;
      this.#shipDrops.events += events;
      this.#shipDrops.reason = reason;
      this.#noticeShipDrops(false);
    },
  };

  /** After shipping stopped: tells in the file what was dropped and not told yet, and what was left unshipped. */
  shippingClosed(): void {
    this.#noticeShipDrops(true);
    const events = this.#unshippedAtClose;
    this.#unshippedAtClose = 0;
    if (events > 0) {
      this.#host.notice(`Remote audit shipping stopped at close with ${events} event(s) not shipped; they remain in the local file`, {
        reason: 'audit_remote_unshipped',
        dropped_events: events,
      });
    }
  }

  /** An event was not kept: the memory limit for a file that cannot be written was reached. */
  memoryLimit(limitChars: number): void {
    if (this.#memoryDropped === 0) warnStderr(`about ${Math.round(limitChars / 1_048_576)} MB of audit events are waiting for the file; new events are dropped until it is writable`);
    this.#memoryDropped++;
    this.drop(1, 'memory-limit');
  }

  /** An event was logged after `close()`. */
  afterClose(): void {
    if (!this.#warnedAfterClose) {
      this.#warnedAfterClose = true;
      process.emitWarning(new IllegalStateError('log an audit event (it was dropped)', 'closed'));
    }
    this.drop(1, 'after-close');
  }

  /** Events never reached the file. */
  drop(events: number, reason: AuditDroppedEvent['reason']): void {
    this.droppedEvents += events;
    this.#host.emitter.emit('dropped', { events, reason });
  }

  /** Tells in the file that batches did not reach the endpoint: at once, then at most once per minute, and when shipping works again. */
  #noticeShipDrops(force: boolean): void {
    const d = this.#shipDrops;
    if (d.batches === 0 || (!force && Date.now() - d.lastNoticeAt < NOTICE_INTERVAL_MS)) return;
    const why = d.reason === 'rejected' ? 'the endpoint refused it' : 'the queue was full';
    const message = `Remote audit shipping dropped ${d.batches} batch(es), ${d.events} event(s) (the last because ${why}); they remain in the local file`;
    const details = { reason: 'audit_remote_dropped', dropped_batches: d.batches, dropped_events: d.events, drop_reason: d.reason };
    d.batches = 0;
    d.events = 0;
    d.lastNoticeAt = Date.now();
    this.#host.notice(message, details);
  }
}
