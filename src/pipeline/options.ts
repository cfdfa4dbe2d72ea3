/**
 * Options of the {@link UploadPipeline}: declared, defaulted and validated here, once.
 */
import { InvalidOptionError } from '../errors.js';
import * as v from '../internal/validate.js';
import { isValidId } from '../internal/protocol.js';
import { uploaderSource } from '../internal/uploader-source.js';
import { ChunkManager, type SubmitReceipt, type UploaderSource } from '../chunk/index.js';
import { RetryPolicy, type RetryPolicyOptions, type Uploader, type UploadResult } from '../transport/index.js';
import type { FailReason, PipelineItem, SpillReason } from './events.js';

/** Options of {@link UploadPipeline}. */
export interface PipelineOptions {
  /** Sends the reports: one {@link Uploader}, or a function returning the uploader of a tenant (asked once per tenant). Required. */
  readonly uploader: UploaderSource;
  /**
   * The durable outbox. With one, nothing is lost: a report the queue cannot
   * take, one whose retries ran out, one refused with 401/403, one whose
   * uploader failed in a way that is not an upload failure, one the pipeline
   * stops with, and one the outbox would split into chunks all go to it
   * (event `spilled`, see {@link SpillReason}). Start it before the pipeline
   * and close it after.
   * @default none: those reports fail (`failed` event) or `submit()` throws {@link QueueFullError}
   */
  readonly outbox?: ChunkManager | undefined;
  /** Tenant of reports submitted without one. @default none: `submit()` then needs `tenantId` */
  readonly tenantId?: string | undefined;
  /** Most reports held in memory (queued, uploading or waiting for a retry). @default 1000 */
  readonly queueSize?: number;
  /**
   * Most bytes held in memory by those reports, counted as their compressed
   * bodies. `submit()` accepts while the total is under it; the encoder then
   * measures each report: with an `outbox`, one that would take the total
   * past it goes to the outbox; without one, the encoder waits for room (the
   * total can pass the bound by the few bodies being encoded when it was
   * reached), and reports not yet measured stay counted by `queueSize`.
   * @default 67108864 (64 MiB)
   */
  readonly maxQueueBytes?: number;
  /** Uploads in flight at once. @default 3 */
  readonly workers?: number;
  /** Retries of a retryable failure after the first attempt (so `retryAttempts + 1` attempts). @default 3 */
  readonly retryAttempts?: number;
  /** Ceiling of the first retry's delay; doubles per retry, full jitter, capped by `maxRetryDelayMs`. @default 5000 (5 s) */
  readonly retryDelayMs?: number;
  /** Cap on the backoff ceiling. @default 60000 (1 min) */
  readonly maxRetryDelayMs?: number;
  /** Backoff as a {@link RetryPolicy} or its options; replaces `retryDelayMs` and `maxRetryDelayMs` (give one or the other). */
  readonly retryPolicy?: RetryPolicy | RetryPolicyOptions | undefined;
  /** Deadline of one upload attempt, in ms; the request itself is aborted when it passes. @default 120000 (2 min) */
  readonly uploadTimeoutMs?: number;
  /** How long `stop()` lets uploads in flight finish before it aborts them, in ms. @default 10000 (10 s) */
  readonly stopTimeoutMs?: number;
  /** zstd level of the bodies, 1–22. With an `outbox`, the outbox's level is used (so both send the same bytes) and a different one is refused. @default 3 */
  readonly compressionLevel?: number;
  /** Sugar for `on('submitted', …)`. */
  readonly onSubmitted?: ((item: PipelineItem) => void) | undefined;
  /** Sugar for `on('completed', …)`. */
  readonly onCompleted?: ((item: PipelineItem, result: UploadResult) => void) | undefined;
  /** Sugar for `on('failed', …)`. */
  readonly onFailed?: ((item: PipelineItem, error: Error, reason: FailReason) => void) | undefined;
  /** Sugar for `on('spilled', …)`. */
  readonly onSpilled?: ((item: PipelineItem, reason: SpillReason, receipt: SubmitReceipt) => void) | undefined;
}

/** Defaults of {@link PipelineOptions}. */
export const pipelineDefaults = Object.freeze({
  /** Reports held in memory. */
  queueSize: 1000,
  /** 64 MiB. */
  maxQueueBytes: 64 * 1024 * 1024,
  /** Uploads in flight. */
  workers: 3,
  /** Retries after the first attempt. */
  retryAttempts: 3,
  /** 5 s. */
  retryDelayMs: 5_000,
  /** 1 min. */
  maxRetryDelayMs: 60_000,
  /** 2 min. */
  uploadTimeoutMs: 120_000,
  /** 10 s. */
  stopTimeoutMs: 10_000,
  /** zstd level. */
  compressionLevel: 3,
});

/** Validated options with every default filled in. */
export interface ResolvedPipelineOptions extends Readonly<{ [K in keyof typeof pipelineDefaults]: number }> {
  /** The uploader of a tenant. */
  readonly uploaderFor: (tenantId: string) => Uploader;
  /** The outbox, when there is one. */
  readonly outbox: ChunkManager | undefined;
  /** The default tenant, when there is one. */
  readonly tenantId: string | undefined;
  /** The retry policy. */
  readonly retryPolicy: RetryPolicy;
  /** The callbacks given. */
  readonly onSubmitted: PipelineOptions['onSubmitted'];
  /** The callback given. */
  readonly onCompleted: PipelineOptions['onCompleted'];
  /** The callback given. */
  readonly onFailed: PipelineOptions['onFailed'];
  /** The callback given. */
  readonly onSpilled: PipelineOptions['onSpilled'];
}

const KEYS = [...Object.keys(pipelineDefaults), 'uploader', 'outbox', 'tenantId', 'retryPolicy', 'onSubmitted', 'onCompleted', 'onFailed', 'onSpilled'];

/**
 * Merges `options` over {@link pipelineDefaults} and validates every field.
 * @throws {@link InvalidOptionError} naming the field, what was expected and what came
 */
export function resolvePipelineOptions(options: PipelineOptions): ResolvedPipelineOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('UploadPipeline options must be an object with at least `uploader`');
  v.knownKeys('UploadPipeline', options, KEYS);
  const defined = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<PipelineOptions>;
  const o = { ...pipelineDefaults, ...defined };

  const uploaderFor = uploaderSource(defined.uploader, ['uploadReport']);

  if (defined.outbox !== undefined && !(defined.outbox instanceof ChunkManager)) v.fail('outbox', 'a ChunkManager', defined.outbox);
  if (defined.tenantId !== undefined && !isValidId(defined.tenantId)) v.fail('tenantId', '1–256 characters of [A-Za-z0-9_-]', defined.tenantId);
  v.integer('queueSize', o.queueSize, 1, 10_000_000);
  v.integer('maxQueueBytes', o.maxQueueBytes, 1);
  v.integer('workers', o.workers, 1, 256);
  v.integer('retryAttempts', o.retryAttempts, 0, 1000);
  v.integer('compressionLevel', o.compressionLevel, 1, 22);
  if (defined.outbox !== undefined && defined.compressionLevel !== undefined && defined.compressionLevel !== defined.outbox.options.compressionLevel) {
    throw new InvalidOptionError(`\`compressionLevel\` (${defined.compressionLevel}) differs from the outbox's (${defined.outbox.options.compressionLevel}): with an \`outbox\`, its level is used so both send the same bytes; leave \`compressionLevel\` out`);
  }
  v.timerMs('uploadTimeoutMs', o.uploadTimeoutMs, 1);
  v.timerMs('stopTimeoutMs', o.stopTimeoutMs, 0);
  for (const name of ['onSubmitted', 'onCompleted', 'onFailed', 'onSpilled'] as const) if (defined[name] !== undefined) v.fn(name, defined[name]);

  let retryPolicy: RetryPolicy;
  const policy = defined.retryPolicy as unknown;
  if (policy !== undefined) {
    for (const name of ['retryDelayMs', 'maxRetryDelayMs'] as const) {
      if (defined[name] !== undefined) throw new InvalidOptionError(`Give \`retryPolicy\` or \`${name}\`, not both: \`retryPolicy\` sets the backoff`);
    }
    if (policy instanceof RetryPolicy) retryPolicy = policy;
    else if (typeof policy === 'object' && policy !== null) retryPolicy = new RetryPolicy(policy as RetryPolicyOptions);
    else v.fail('retryPolicy', 'a RetryPolicy or its options', policy);
  } else {
    v.timerMs('retryDelayMs', o.retryDelayMs, 0);
    v.timerMs('maxRetryDelayMs', o.maxRetryDelayMs, 0);
    if (o.maxRetryDelayMs < o.retryDelayMs) v.fail('maxRetryDelayMs', `>= \`retryDelayMs\` (${o.retryDelayMs})`, o.maxRetryDelayMs);
    retryPolicy = new RetryPolicy({ retryDelayMs: o.retryDelayMs, maxRetryDelayMs: o.maxRetryDelayMs, backoffFactor: 2, jitter: 'full' });
  }
  return Object.freeze({
    queueSize: o.queueSize,
    maxQueueBytes: o.maxQueueBytes,
    workers: o.workers,
    retryAttempts: o.retryAttempts,
    retryDelayMs: retryPolicy.options.retryDelayMs,
    maxRetryDelayMs: retryPolicy.options.maxRetryDelayMs,
    uploadTimeoutMs: o.uploadTimeoutMs,
    stopTimeoutMs: o.stopTimeoutMs,
    compressionLevel: defined.outbox?.options.compressionLevel ?? o.compressionLevel,
    uploaderFor,
    outbox: defined.outbox,
    tenantId: defined.tenantId,
    retryPolicy,
    onSubmitted: defined.onSubmitted,
    onCompleted: defined.onCompleted,
    onFailed: defined.onFailed,
    onSpilled: defined.onSpilled,
  });
}
