import { join } from 'node:path';
import { ChunkManager, type ChunkManagerOptions, type Report } from '../../src/chunk/index.js';
import { UploadHttpError, UploadNetworkError } from '../../src/errors.js';
import type { ChunkUpload, ReportUpload, UploadResult, Uploader } from '../../src/transport/index.js';

/** A report of `findings` findings over `assets` assets; finding i refers to asset i % assets. */
export function makeReport(findings: number, assets: number, pad = 0): Report {
  return {
    metadata: { tool: 'scanner', version: '1.2.3' },
    findings: Array.from({ length: findings }, (_, i) => ({
      id: `F-${i}`,
      rule: 'ssh-root-login',
      severity: i % 5,
      ...(assets > 0 ? { assetId: `A-${i % assets}` } : {}),
      ...(pad > 0 ? { detail: 'x'.repeat(pad) } : {}),
    })),
    assets: Array.from({ length: assets }, (_, i) => ({ id: `A-${i}`, kind: 'host', name: `host-${i}` })),
  };
}

/** One upload the {@link ScriptedUploader} saw. */
export interface SeenUpload {
  readonly kind: 'chunk' | 'report';
  readonly reportId: string;
  readonly index: number;
  readonly total: number;
  readonly sha256: string;
  readonly body: Uint8Array;
  readonly at: number;
}

/**
 * An in-process {@link Uploader} (the seam the outbox uploads through) whose
 * answers a test scripts: `fail` decides per call; by default every call succeeds.
 */
export class ScriptedUploader implements Uploader {
  readonly seen: SeenUpload[] = [];
  fail: (upload: SeenUpload, attempt: number) => Error | undefined = () => undefined;
  /** Delay before answering, in ms (real timers). */
  delayMs = 0;
  #attempts = new Map<string, number>();
  inFlight = 0;
  maxInFlight = 0;

  async uploadChunk(chunk: ChunkUpload, options: { signal?: AbortSignal | undefined } = {}): Promise<UploadResult> {
    return this.#answer({ kind: 'chunk', reportId: chunk.reportId, index: chunk.index, total: chunk.total, sha256: chunk.sha256, body: chunk.body, at: Date.now() }, options.signal);
  }

  async uploadReport(report: ReportUpload, options: { signal?: AbortSignal | undefined } = {}): Promise<UploadResult> {
    return this.#answer({ kind: 'report', reportId: report.reportId, index: 0, total: 1, sha256: report.sha256, body: report.body, at: Date.now() }, options.signal);
  }

  async #answer(upload: SeenUpload, signal: AbortSignal | undefined): Promise<UploadResult> {
    this.seen.push(upload);
    const key = `${upload.reportId}:${upload.index}`;
    const attempt = (this.#attempts.get(key) ?? 0) + 1;
    this.#attempts.set(key, attempt);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, this.delayMs);
          signal?.addEventListener('abort', () => {
            clearTimeout(t);
            reject(signal.reason);
          }, { once: true });
        });
      }
      const err = this.fail(upload, attempt);
      if (err !== undefined) throw err;
      return { status: 201, duplicate: false };
    } finally {
      this.inFlight--;
    }
  }
}

/** A retryable 503 (optionally with Retry-After). */
export function unavailable(retryAfterMs?: number): UploadHttpError {
  return new UploadHttpError(503, { retryable: true, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
}

/** A permanent 400. */
export function badRequest(): UploadHttpError {
  return new UploadHttpError(400, { retryable: false, serverCode: 'OUTPOST_INGEST_INVALID_JSON' });
}

/** A retryable network failure. */
export function reset(): UploadNetworkError {
  return new UploadNetworkError('socket hang up', { retryable: true });
}

/** A manager on a fresh database in `dir`, with fast test defaults; started. */
export async function startManager(dir: string, uploader: Uploader | ((tenantId: string) => Uploader), options: Partial<ChunkManagerOptions> = {}): Promise<ChunkManager> {
  const manager = new ChunkManager({ uploader, databasePath: join(dir, 'chunks.db'), uploadDelayMs: 0, retryPolicy: { retryDelayMs: 10, maxRetryDelayMs: 50 }, ...options });
  manager.on('error', () => undefined);
  await manager.start();
  return manager;
}
