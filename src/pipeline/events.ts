/**
 * What the pipeline tells its user: the item view, the event map and the stats.
 */
import type { SubmitReceipt } from '../chunk/index.js';
import type { UploadError, UploadResult } from '../transport/index.js';

/** A submitted report as events show it: a live, read-only view (the report itself is not kept once encoded). */
export interface PipelineItem {
  /** The id `submit()` returned; also the report id on the wire, so the server de-duplicates retries. */
  readonly id: string;
  /** Tenant of the report. */
  readonly tenantId: string;
  /** The job that produced it, when `submit()` was told. */
  readonly jobId: string | undefined;
  /** Upload priority: higher goes first. */
  readonly priority: number;
  /** Upload attempts started so far. */
  readonly attempts: number;
  /** When it was submitted, in ms since the epoch. */
  readonly submittedAt: number;
  /** Bytes of its encoded (compressed) body, once the background encoder has measured it. */
  readonly bodyBytes: number | undefined;
  /** A plain snapshot of the fields above (what `JSON.stringify` and `console.log` show). */
  toJSON(): Record<string, unknown>;
}

/**
 * Why a report went to the outbox:
 * - `'queue-full'`: `submit()` found the queue at `queueSize` or `maxQueueBytes`, or the encoder measured the report and it would take the queue past `maxQueueBytes`;
 * - `'large'`: the outbox would split it into chunks, so the outbox sends it;
 * - `'retries-exhausted'`: `retryAttempts` retries of a retryable failure were used;
 * - `'unauthorized'`: the server answered 401 or 403; the outbox keeps retrying until the credentials are fixed;
 * - `'uploader-error'`: the uploader failed with an error that is not an upload failure (it is closed, its token source threw, it broke its contract by not resolving to an `UploadResult`);
 * - `'stopped'`: the pipeline stopped before it was sent.
 */
export type SpillReason = 'queue-full' | 'large' | 'retries-exhausted' | 'unauthorized' | 'uploader-error' | 'stopped';

/**
 * Why a report failed (it is not uploaded and not in any outbox):
 * - `'rejected'`: the server refused it for good (a 4xx other than 408/429), or, without an outbox, the uploader threw an error that is not an upload failure;
 * - `'retries-exhausted'`: retries ran out and there is no outbox;
 * - `'unauthorized'`: 401 or 403 and there is no outbox;
 * - `'stopped'`: the pipeline stopped before it was sent and there is no outbox;
 * - `'aborted'`: the `signal` given to `submit()` aborted first;
 * - `'invalid'`: the report cannot be encoded (it cannot be serialised to JSON), or the outbox cannot store it at all (an item too large for a chunk, too many chunks);
 * - `'spill-failed'`: the outbox refused it (full disk, storage cap, closed, another report under the same id); the error says why.
 */
export type FailReason = 'rejected' | 'retries-exhausted' | 'unauthorized' | 'stopped' | 'aborted' | 'invalid' | 'spill-failed';

/**
 * Events of an {@link UploadPipeline}. Every submitted id ends in exactly one
 * of `completed`, `failed` or `spilled`. There is no `error` event: every
 * failure belongs to a report and is reported on it.
 */
export interface UploadPipelineEvents {
  /** `submit()` accepted a report (emitted inside `submit()`). */
  submitted: [item: PipelineItem];
  /** An upload attempt began; `attempt` counts from 1. */
  started: [item: PipelineItem, attempt: number];
  /** An attempt failed and will be retried after `delayMs`; `retry` counts from 1. */
  retry: [item: PipelineItem, error: UploadError, retry: number, delayMs: number];
  /** The server acknowledged the report (`result.duplicate` when it had it already). Terminal. */
  completed: [item: PipelineItem, result: UploadResult];
  /** The report was given up. Terminal. */
  failed: [item: PipelineItem, error: Error, reason: FailReason];
  /** The report is durably in the outbox, which uploads it from now on. Terminal. */
  spilled: [item: PipelineItem, reason: SpillReason, receipt: SubmitReceipt];
}

/**
 * Counters of an {@link UploadPipeline}. At every moment
 * `submitted = queued + inProgress + retrying + completed + failed + spilled`.
 */
export interface PipelineStats {
  /** Reports accepted by `submit()`. */
  readonly submitted: number;
  /** Waiting for a worker (including those the background encoder has not reached yet). */
  readonly queued: number;
  /** Being uploaded or being written to the outbox (`uploading + spilling`). */
  readonly inProgress: number;
  /** Waiting for a retry's delay; they hold no worker. */
  readonly retrying: number;
  /** Acknowledged by the server. */
  readonly completed: number;
  /** Given up (`failed` event). */
  readonly failed: number;
  /** Handed to the outbox (`spilled` event). */
  readonly spilled: number;
  /** Compressed bytes held by reports queued, uploading or waiting for a retry. */
  readonly queuedBytes: number;
  /** Uploads in flight now: never more than `workers`. Part of `inProgress`. */
  readonly uploading: number;
  /** Reports being written to the outbox now. Part of `inProgress`. */
  readonly spilling: number;
  /** Reports the background encoder has not measured yet. Part of `queued`. */
  readonly encoding: number;
}
