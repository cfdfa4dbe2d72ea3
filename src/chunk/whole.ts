/**
 * Whole-report bodies for senders that upload reports themselves (the upload
 * pipeline): `encodeWholeReport()`, the outbox's split rule applied while
 * serialising, and the check `submitEncodedReport()` makes.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { InvalidArgumentError } from '../errors.js';
import * as v from '../internal/validate.js';
import { checkReport, chunkedByCount, wholeSizeLimit, type Report, type SplitSettings } from './encode.js';
import { headOf, stringifyItem } from './splitter.js';
import { originOf, WholeBodyBuilder, type WholeReportBody } from './whole-body.js';

/** JSON serialised between two yields to the event loop, so a huge report never holds it for long. */
const YIELD_EVERY_BYTES = 512 * 1024;

/**
 * Serialises and compresses `report` as one body, byte for byte as a
 * {@link ChunkManager} sends a report it does not split: the report's other
 * fields, then `findings` and `assets`. Serialisation yields to the event
 * loop every 512 KiB of JSON; compression runs on libuv's thread pool.
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

/**
 * Encodes `report` whole. With `settings`, resolves `undefined` as soon as
 * those settings are known to split it (by its counts, or once its JSON
 * reaches the size limit), having serialised no more than that limit.
 * @internal
 */
export async function encodeWhole(report: Report, settings: SplitSettings | undefined, compressionLevel: number): Promise<WholeReportBody | undefined> {
  checkReport(report);
  const findings = report.findings ?? [];
  const assets = report.assets ?? [];
  if (settings !== undefined && chunkedByCount(findings.length, assets.length, settings)) return undefined;
  const limit = settings === undefined ? Number.POSITIVE_INFINITY : wholeSizeLimit(settings);
  const builder = new WholeBodyBuilder(headOf(report));
  let nextYield = builder.bytes + YIELD_EVERY_BYTES;
  for (const [list, what] of [[findings, 'Finding'], [assets, 'Asset']] as const) {
    for (let i = 0; i < list.length; i++) {
      const json = stringifyItem(list[i], `${what} ${i}`);
      if (what === 'Finding') builder.finding(json);
      else builder.asset(json);
      if (builder.bytes >= limit) return undefined;
      if (builder.bytes >= nextYield) {
        nextYield = builder.bytes + YIELD_EVERY_BYTES;
        await yieldToLoop();
      }
    }
  }
  return builder.finish(compressionLevel);
}

/**
 * Checks that `body` was made by {@link encodeWholeReport} (or
 * `ChunkManager.encodeWholeReport()`) in this process, unchanged, and that
 * an outbox with `settings` would send it whole.
 * @internal
 */
export function checkWholeBody(body: WholeReportBody, settings: SplitSettings): void {
  const origin = originOf(body);
  if (origin === undefined) throw new InvalidArgumentError('submitEncodedReport() takes only a body made by encodeWholeReport() in this process');
  if (chunkedByCount(origin.findings, origin.assets, settings) || body.rawBytes >= wholeSizeLimit(settings)) {
    throw new InvalidArgumentError(`This outbox splits a report of ${origin.findings} findings, ${origin.assets} assets and ${body.rawBytes} bytes into chunks: submit the report itself with submitReport()`);
  }
}
