/**
 * What `submit()` checks on the caller's path: cheap shape and argument
 * checks only (serialisation problems surface later, as `'invalid'`).
 * @internal
 */
import { randomUUID } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import { isValidId } from '../internal/protocol.js';
import type { Report } from '../chunk/index.js';

/** Per-call options of {@link UploadPipeline.submit}. */
export interface PipelineSubmitOptions {
  /** Tenant of the report: 1–256 characters of `[A-Za-z0-9_-]`. @default the pipeline's `tenantId` */
  readonly tenantId?: string | undefined;
  /** Report id (same rules), sent as the report id so the server de-duplicates; must not be live in this pipeline for the same tenant. @default a random UUID */
  readonly reportId?: string | undefined;
  /** The job that produced the report, carried in events. At most 256 characters. */
  readonly jobId?: string | undefined;
  /** Upload priority, an integer: higher goes first, equal priorities in submission order. @default 0 */
  readonly priority?: number | undefined;
  /** Aborting it before the report is acknowledged or spilled gives it up: `failed` with reason `'aborted'`. */
  readonly signal?: AbortSignal | undefined;
}

/** A submission's checked arguments. */
export interface Submission {
  readonly tenantId: string;
  readonly id: string;
  readonly jobId: string | undefined;
  readonly priority: number;
  readonly signal: AbortSignal | undefined;
}

/**
 * Checks `report` and `options`; `defaultTenantId` was validated with the options.
 * @throws {@link InvalidArgumentError}; `signal.reason` when it is already aborted
 */
export function checkSubmission(report: unknown, options: PipelineSubmitOptions, defaultTenantId: string | undefined): Submission {
  if (typeof report !== 'object' || report === null || Array.isArray(report) || ArrayBuffer.isView(report)) {
    throw new InvalidArgumentError(`A report must be an object with \`findings\` and \`assets\` arrays, got ${report === null ? 'null' : Array.isArray(report) ? 'an array' : typeof report}`);
  }
  for (const field of ['findings', 'assets'] as const) {
    const value = (report as Report)[field];
    if (value !== undefined && !Array.isArray(value)) throw new InvalidArgumentError(`The report's \`${field}\` must be an array, got ${value === null ? 'null' : typeof value}`);
  }
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('Submit options must be an object');
  const tenantId = options.tenantId ?? defaultTenantId;
  if (tenantId === undefined) throw new InvalidArgumentError('`tenantId` is required: pass it to submit() or give the pipeline a default `tenantId`');
  if (tenantId !== defaultTenantId && !isValidId(tenantId)) throw new InvalidArgumentError(`\`tenantId\` must be 1–256 characters of [A-Za-z0-9_-], got ${JSON.stringify(tenantId)}`);
  const id = options.reportId ?? randomUUID();
  if (options.reportId !== undefined && !isValidId(id)) throw new InvalidArgumentError(`\`reportId\` must be 1–256 characters of [A-Za-z0-9_-], got ${JSON.stringify(id)}`);
  const jobId = options.jobId;
  if (jobId !== undefined && (typeof jobId !== 'string' || jobId.length > 256)) {
    throw new InvalidArgumentError(`\`jobId\` must be a string of at most 256 characters, got ${typeof jobId === 'string' ? `${jobId.length} characters` : typeof jobId}`);
  }
  const priority = options.priority ?? 0;
  if (!Number.isSafeInteger(priority)) throw new InvalidArgumentError(`\`priority\` must be an integer, got ${String(priority)}`);
  const signal = options.signal;
  signal?.throwIfAborted();
  return { tenantId, id, jobId, priority, signal };
}
