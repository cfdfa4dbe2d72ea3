/**
 * One submitted report and the state it is in. The pipeline moves it; events
 * show it through a read-only {@link PipelineItem} view.
 * @internal
 */
import type { Report, WholeReportBody } from '../chunk/index.js';
import type { ReportUpload } from '../transport/index.js';
import type { PipelineItem, SpillReason } from './events.js';

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

export class Item {
  readonly id: string;
  readonly tenantId: string;
  /** Tenant and id: what makes an item unique (ids are per tenant, as on the server). */
  readonly key: string;
  readonly jobId: string | undefined;
  readonly priority: number;
  readonly submittedAt: number;
  /** Submission order: items are live in the pipeline's map in this order. */
  readonly seq: number;
  /** Order of the latest entry into the upload queue (FIFO within a priority when the queue is rebuilt). */
  enqueueSeq = 0;
  attempts = 0;
  bodyBytes: number | undefined = undefined;
  state: ItemState = 'encoding';
  /** The report, until the encoder has turned it into `body` (then dropped to free memory). */
  report: Report | undefined;
  /** The encoded body, once measured. */
  body: WholeReportBody | undefined = undefined;
  /** What the uploader is given, built once. */
  upload: ReportUpload | undefined = undefined;
  /** The caller's signal. */
  readonly signal: AbortSignal | undefined;
  /** Aborts the attempt in flight. */
  attempt: AbortController | undefined = undefined;
  /** The retry's timer. */
  timer: NodeJS.Timeout | undefined = undefined;
  /** Why it is being spilled, and whether the outbox call has begun. */
  spillReason: SpillReason | undefined = undefined;
  spillStarted = false;
  #view: PipelineItem | undefined;

  constructor(id: string, tenantId: string, jobId: string | undefined, priority: number, seq: number, report: Report, signal: AbortSignal | undefined) {
    this.id = id;
    this.tenantId = tenantId;
    this.key = `${tenantId}/${id}`;
    this.jobId = jobId;
    this.priority = priority;
    this.seq = seq;
    this.report = report;
    this.signal = signal;
    this.submittedAt = Date.now();
  }

  /** The read-only view events carry (made on first use). */
  get view(): PipelineItem {
    return (this.#view ??= new ItemView(this));
  }

  /** Keeps the encoded body and lets go of the report. */
  encoded(body: WholeReportBody): void {
    this.body = body;
    this.bodyBytes = body.body.byteLength;
    this.upload = { reportId: this.id, body: body.body, encoding: body.encoding, sha256: body.sha256, rawBytes: body.rawBytes };
    this.report = undefined;
  }
}

/** What listeners see of an {@link Item}: live, read-only. */
class ItemView implements PipelineItem {
  readonly #item: Item;
  constructor(item: Item) {
    this.#item = item;
  }
  get id(): string {
    return this.#item.id;
  }
  get tenantId(): string {
    return this.#item.tenantId;
  }
  get jobId(): string | undefined {
    return this.#item.jobId;
  }
  get priority(): number {
    return this.#item.priority;
  }
  get attempts(): number {
    return this.#item.attempts;
  }
  get submittedAt(): number {
    return this.#item.submittedAt;
  }
  get bodyBytes(): number | undefined {
    return this.#item.bodyBytes;
  }
  /** A plain snapshot, for logs. */
  toJSON(): Record<string, unknown> {
    const { id, tenantId, jobId, priority, attempts, submittedAt, bodyBytes } = this;
    return { id, tenantId, jobId, priority, attempts, submittedAt, bodyBytes };
  }
  /** `console.log` shows the snapshot. */
  [Symbol.for('nodejs.util.inspect.custom')](): Record<string, unknown> {
    return this.toJSON();
  }
}
