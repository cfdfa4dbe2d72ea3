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
 * reaches the size limit), having serialised at most one slice past that limit.
 * @internal
 */
export async function encodeWhole(report: Report, settings: SplitSettings | undefined, compressionLevel: number): Promise<WholeReportBody | undefined> {
  checkReport(report);
  const findings = report.findings ?? [];
  const assets = report.assets ?? [];
  if (settings !== undefined && chunkedByCount(findings.length, assets.length, settings)) return undefined;
  const limit = settings === undefined ? Number.POSITIVE_INFINITY : wholeSizeLimit(settings);
  const builder = new WholeBodyBuilder(headOf(report));
  const pacer = { sinceYield: 0 };
  if (!(await serialiseInto(builder, 'findings', findings, limit, pacer))) return undefined;
  if (!(await serialiseInto(builder, 'assets', assets, limit, pacer))) return undefined;
  return builder.finish(compressionLevel);
}

/** Target JSON bytes of one slice serialised in one go. */
const SLICE_BYTES = 64 * 1024;
/** Most items in one slice. */
const MAX_SLICE_ITEMS = 512;

/**
 * Serialises `list` into `builder` a slice at a time: one `JSON.stringify` per
 * slice (sized from the items seen so far to about {@link SLICE_BYTES}),
 * item by item only for a slice holding an item an array would not show as
 * itself (so the error names it). Yields to the event loop every
 * {@link YIELD_EVERY_BYTES}. Resolves false once the body reaches `limit`.
 */
async function serialiseInto(builder: WholeBodyBuilder, list: 'findings' | 'assets', items: readonly unknown[], limit: number, pacer: { sinceYield: number }): Promise<boolean> {
  const what = list === 'findings' ? 'Finding' : 'Asset';
  let perSlice = 8;
  for (let start = 0; start < items.length; ) {
    const end = Math.min(items.length, start + perSlice);
    const piece = sliceJson(items, start, end) ?? Buffer.from(itemByItem(items, start, end, what));
    builder.add(list, piece, end - start);
    if (builder.bytes >= limit) return false;
    // Size the next slice from the items seen: about SLICE_BYTES, at most twice this one (items may grow),
    // and no further past `limit` than the items seen suggest.
    const count = end - start;
    const perItem = Math.max(1, piece.byteLength / count);
    perSlice = Math.max(1, Math.min(2 * count, MAX_SLICE_ITEMS, Math.floor(SLICE_BYTES / perItem), Math.ceil((limit - builder.bytes) / perItem)));
    start = end;
    pacer.sinceYield += piece.byteLength;
    if (pacer.sinceYield >= YIELD_EVERY_BYTES) {
      pacer.sinceYield = 0;
      await yieldToLoop();
    }
  }
  return true;
}

/** Items `start..end` as their JSON joined with commas, in one `JSON.stringify`; `undefined` when an item needs the item-by-item path. */
function sliceJson(items: readonly unknown[], start: number, end: number): Buffer | undefined {
  for (let i = start; i < end; i++) {
    const item = items[i];
    const type = typeof item;
    // In an array these would read as `null` (or as their toJSON()), where alone they are refused or differ.
    if (type === 'undefined' || type === 'function' || type === 'symbol') return undefined;
    if (type === 'object' && item !== null && typeof (item as { toJSON?: unknown }).toJSON === 'function') return undefined;
  }
  let json: string;
  try {
    json = JSON.stringify(items.slice(start, end)); // a copy: the caller's array may have its own toJSON
  } catch {
    return undefined; // a cycle or a BigInt: the item-by-item path names the item
  }
  return Buffer.from(json).subarray(1, -1);
}

function itemByItem(items: readonly unknown[], start: number, end: number, what: string): string {
  const parts: string[] = [];
  for (let i = start; i < end; i++) parts.push(stringifyItem(items[i], `${what} ${i}`));
  return parts.join(',');
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
  // As the outbox's own rule: the size is measured item by item, so a report with no items is never split.
  if (chunkedByCount(origin.findings, origin.assets, settings) || (origin.findings + origin.assets > 0 && body.rawBytes >= wholeSizeLimit(settings))) {
    throw new InvalidArgumentError(`This outbox splits a report of ${origin.findings} findings, ${origin.assets} assets and ${body.rawBytes} bytes into chunks: submit the report itself with submitReport()`);
  }
}
