/**
 * One submitted report and the state it is in. The pipeline moves it; the
 * events show it through {@link PipelineItem}.
 * @internal
 */
import type { Report, WholeReportBody } from '../chunk/index.js';
import type { ReportUpload } from '../transport/index.js';
import type { PipelineItem } from './events.js';

/** Where an item is. The first five are live; the last three are terminal. */
export type ItemState = 'encoding' | 'queued' | 'uploading' | 'retrying' | 'spilling' | 'completed' | 'failed' | 'spilled';

/** States whose encoded body counts in `queuedBytes` (an item is measured when it leaves `encoding`). */
export function holdsBytes(state: ItemState): boolean {
  return state === 'queued' || state === 'uploading' || state === 'retrying';
}

/** Whether `state` is terminal. */
export function isTerminal(state: ItemState): boolean {
  return state === 'completed' || state === 'failed' || state === 'spilled';
}

export class Item implements PipelineItem {
  readonly id: string;
  readonly tenantId: string;
  readonly jobId: string | undefined;
  readonly priority: number;
  readonly submittedAt: number;
  /** Submission order: items are live in the pipeline's map in this order. */
  readonly seq: number;
  attempts = 0;
  bodyBytes: number | undefined = undefined;
  state: ItemState = 'encoding';
  /** The report, until the encoder has turned it into `body` (then dropped to free memory). */
  report: Report | undefined;
  /** The encoded body, once measured. */
  body: WholeReportBody | undefined = undefined;
  /** What the uploader is given, built once. */
  upload: ReportUpload | undefined = undefined;
  /** The caller's signal, and the listener on it. */
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined = undefined;
  /** Aborts the attempt in flight. */
  attempt: AbortController | undefined = undefined;
  /** The retry's timer. */
  timer: NodeJS.Timeout | undefined = undefined;

  constructor(id: string, tenantId: string, jobId: string | undefined, priority: number, seq: number, report: Report, signal: AbortSignal | undefined) {
    this.id = id;
    this.tenantId = tenantId;
    this.jobId = jobId;
    this.priority = priority;
    this.seq = seq;
    this.report = report;
    this.signal = signal;
    this.submittedAt = Date.now();
  }

  /** Keeps the encoded body and lets go of the report. */
  encoded(body: WholeReportBody): void {
    this.body = body;
    this.bodyBytes = body.body.byteLength;
    this.upload = { reportId: this.id, body: body.body, encoding: body.encoding, sha256: body.sha256, rawBytes: body.rawBytes };
    this.report = undefined;
  }
}
