/**
 * `encodeWholeReport()`: a report as one body in the outbox's canonical form,
 * for senders that upload whole reports themselves (the upload pipeline).
 */
import { InvalidArgumentError } from '../errors.js';
import * as v from '../internal/validate.js';
import { encodeWhole, type Report, type WholeReportBody } from './encode.js';

/**
 * Serialises and compresses `report` as one body, byte for byte as a
 * {@link ChunkManager} sends a report it does not split: the report's other
 * fields, then `findings` and `assets`. Compression runs on libuv's thread pool.
 *
 * @param options.compressionLevel - zstd level, 1–22 (default 3)
 * @throws {@link InvalidArgumentError} when the report or one of its items cannot be serialised
 * @example
 * ```ts
 * const body = await encodeWholeReport({ metadata, findings, assets });
 * await uploader.uploadReport({ reportId: 'scan-42', ...body });
 * ```
 */
export async function encodeWholeReport(report: Report, options: { readonly compressionLevel?: number } = {}): Promise<WholeReportBody> {
  const level = v.integer('compressionLevel', options.compressionLevel ?? 3, 1, 22);
  return (await encodeWhole(report, undefined, level)) as WholeReportBody;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** @internal Checks that `body` is a whole report as {@link encodeWhole} makes it, small enough to be sent whole. */
export function checkWholeBody(body: WholeReportBody, maxChunkSizeBytes: number): void {
  const b = body as Partial<WholeReportBody> | null;
  const bad = (what: string): never => {
    throw new InvalidArgumentError(`An encoded report needs ${what} (use encodeWholeReport())`);
  };
  if (typeof b !== 'object' || b === null) bad('to be an object');
  if (!(b?.body instanceof Uint8Array) || b.body.byteLength === 0) bad('a non-empty `body` (Uint8Array)');
  if (b?.encoding !== 'zstd' && b?.encoding !== 'identity') bad("`encoding` 'zstd' or 'identity'");
  if (typeof b?.sha256 !== 'string' || !HEX64.test(b.sha256)) bad('`sha256` (64 hex characters)');
  if (typeof b?.contentDigest !== 'string' || !HEX64.test(b.contentDigest)) bad('`contentDigest` (64 hex characters)');
  const raw = b?.rawBytes;
  if (!Number.isSafeInteger(raw) || (raw as number) < 2) bad('`rawBytes` (an integer of at least 2)');
  if ((raw as number) > maxChunkSizeBytes) {
    throw new InvalidArgumentError(`An encoded report of ${String(raw)} bytes is over this outbox's \`maxChunkSizeBytes\` (${maxChunkSizeBytes}): submit the report itself so it is split`);
  }
}
