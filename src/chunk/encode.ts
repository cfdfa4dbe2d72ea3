/**
 * From a report to compressed chunk bodies: decides whether a report is
 * chunked, splits it, and compresses chunks on libuv's thread pool a few at a
 * time, handing them on in index order.
 * @internal
 */
import { InvalidArgumentError } from '../errors.js';
import { MAX_CHUNKS_PER_REPORT } from '../internal/protocol.js';
import { encodeBody } from '../transport/index.js';
import { WHOLE_FRAME_BYTES, WholeBodyBuilder, type WholeReportBody } from './whole-body.js';
import { assetKey, assetKeyOf, ChunkBuilder, ContentDigest, headOf, stringifyItem, tooManyChunks, type BuiltChunk, type ChunkLimits } from './splitter.js';
import type { ChunkInsert } from './store.js';

/** A report: optional `metadata` (and any other fields, which ride in chunk 0), `findings` and `assets` arrays. */
export interface Report {
  /** Tool and scan metadata; sent in chunk 0. */
  readonly metadata?: unknown;
  /** The findings. */
  readonly findings?: readonly unknown[];
  /** The assets; each chunk carries the ones its findings refer to (see `findingAssetIds`). */
  readonly assets?: readonly unknown[];
  /** Other fields are sent in chunk 0 as they are. */
  readonly [field: string]: unknown;
}

/** What splitting needs from the options. */
export interface SplitSettings extends ChunkLimits {
  readonly minFindingsForChunking: number;
  readonly minAssetsForChunking: number;
  readonly minSizeForChunkingBytes: number;
  readonly compressionLevel: number;
  readonly findingAssetIds: (finding: unknown) => Iterable<string | number>;
}

/** A report ready to store. */
export interface EncodedReport {
  readonly kind: 'whole' | 'chunked';
  readonly chunks: ChunkInsert[];
  readonly digest: string;
  readonly rawBytes: number;
}

/** Chunks compressed at once: enough to keep the thread pool busy, few enough to bound memory. */
export const COMPRESS_AHEAD = 4;

/** Checks the report's shape. */
export function checkReport(report: unknown): asserts report is Report {
  if (typeof report !== 'object' || report === null || Array.isArray(report)) {
    throw new InvalidArgumentError(`A report must be an object with \`findings\` and \`assets\` arrays, got ${Array.isArray(report) ? 'an array' : report === null ? 'null' : typeof report}`);
  }
  for (const field of ['findings', 'assets'] as const) {
    const value = (report as Report)[field];
    if (value !== undefined && !Array.isArray(value)) throw new InvalidArgumentError(`The report's \`${field}\` must be an array, got ${value === null ? 'null' : typeof value}`);
  }
}

/** Keys of the assets a finding refers to. */
export function referencedKeys(settings: SplitSettings, finding: unknown): string[] {
  const keys: string[] = [];
  for (const id of settings.findingAssetIds(finding)) {
    const key = assetKey(id);
    if (key !== undefined) keys.push(key);
  }
  return keys;
}

/**
 * Compresses built chunks, at most {@link COMPRESS_AHEAD} at a time, and hands
 * them to `sink` in index order. `push()` waits when the window is full, which
 * is what bounds a stream's memory and yields the event loop.
 */
export class CompressWindow {
  readonly #level: number;
  readonly #sink: (chunk: ChunkInsert) => void | Promise<void>;
  readonly #window: Promise<ChunkInsert>[] = [];

  constructor(level: number, sink: (chunk: ChunkInsert) => void | Promise<void>) {
    this.#level = level;
    this.#sink = sink;
  }

  /** Starts compressing `built`; waits for the oldest when the window is full. */
  async push(built: BuiltChunk): Promise<void> {
    const job = encodeBody(built.json, { compressionLevel: this.#level }).then(
      (e): ChunkInsert => ({ index: built.index, sha256: e.sha256, rawBytes: e.rawBytes, encoding: e.encoding, body: e.body }),
    );
    job.catch(() => undefined);
    this.#window.push(job);
    if (this.#window.length >= COMPRESS_AHEAD) await this.#sink(await (this.#window.shift() as Promise<ChunkInsert>));
  }

  /** Waits for every chunk still compressing and hands them on. */
  async drain(): Promise<void> {
    while (this.#window.length > 0) await this.#sink(await (this.#window.shift() as Promise<ChunkInsert>));
  }
}

/** Whether `report` is chunked under `settings` (measures its JSON only when the counts do not decide). */
export function needsChunking(report: Report, settings: SplitSettings): boolean {
  checkReport(report);
  return decide(report, settings).chunked;
}

/** Whether the counts alone make a report chunked. */
export function chunkedByCount(findings: number, assets: number, settings: SplitSettings): boolean {
  return findings >= settings.minFindingsForChunking || assets >= settings.minAssetsForChunking;
}

/** JSON bytes from which a report is chunked: `minSizeForChunkingBytes`, or past `maxChunkSizeBytes`. */
export function wholeSizeLimit(settings: SplitSettings): number {
  return Math.min(settings.minSizeForChunkingBytes, settings.maxChunkSizeBytes + 1);
}

interface Decision {
  readonly chunked: boolean;
  /** Serialised findings and assets, when the report is sent whole. */
  readonly findings?: string[];
  readonly assets?: string[];
  readonly head: string;
}

function decide(report: Report, settings: SplitSettings): Decision {
  const findings = report.findings ?? [];
  const assets = report.assets ?? [];
  const head = headOf(report);
  if (chunkedByCount(findings.length, assets.length, settings)) return { chunked: true, head };
  // Few items: measure by serialising them, but stop as soon as the report is known to be chunked, so
  // this never serialises more than `maxChunkSizeBytes` on the event loop; the chunked path then
  // serialises chunk by chunk.
  const limit = wholeSizeLimit(settings);
  let bytes = Buffer.byteLength(head) + WHOLE_FRAME_BYTES;
  const f: string[] = [];
  const a: string[] = [];
  for (const [list, out, what] of [[findings, f, 'Finding'], [assets, a, 'Asset']] as const) {
    for (let i = 0; i < list.length; i++) {
      const json = stringifyItem(list[i], `${what} ${i}`);
      bytes += Buffer.byteLength(json) + (i > 0 ? 1 : 0);
      if (bytes >= limit) return { chunked: true, head };
      out.push(json);
    }
  }
  return { chunked: false, findings: f, assets: a, head };
}

/** A whole body as the one-chunk report the store takes. */
export function wholeReport(whole: WholeReportBody): EncodedReport {
  const chunk: ChunkInsert = { index: 0, sha256: whole.sha256, rawBytes: whole.rawBytes, encoding: whole.encoding, body: whole.body };
  return { kind: 'whole', chunks: [chunk], digest: whole.contentDigest, rawBytes: whole.rawBytes };
}

async function wholeBody(decision: Decision, compressionLevel: number): Promise<WholeReportBody> {
  const builder = new WholeBodyBuilder(decision.head);
  const f = decision.findings ?? [];
  const a = decision.assets ?? [];
  builder.add('findings', f.join(','), f.length);
  builder.add('assets', a.join(','), a.length);
  return builder.finish(compressionLevel);
}

/**
 * Serialises, splits and compresses a report. Findings are serialised as
 * their chunk is built and compression runs off the event loop, so a large
 * report never holds the loop for more than a few chunks' worth of work.
 * @throws {@link ChunkError} when an item cannot fit in a chunk or the report needs more than 10 000 chunks
 */
export async function encodeReport(report: Report, settings: SplitSettings, signal: AbortSignal | undefined): Promise<EncodedReport> {
  checkReport(report);
  const decision = decide(report, settings);
  const findings = report.findings ?? [];
  const assets = report.assets ?? [];
  if (!decision.chunked) return wholeReport(await wholeBody(decision, settings.compressionLevel));
  const digest = new ContentDigest();
  digest.head(decision.head);
  const chunks: ChunkInsert[] = [];
  let rawBytes = 0;
  const window = new CompressWindow(settings.compressionLevel, (c) => {
    chunks.push(c);
    rawBytes += c.rawBytes;
  });

  // Assets by key (first occurrence wins, as on the server); serialised once, when first needed.
  const assetIndex = new Map<string, number>();
  assets.forEach((asset, i) => {
    const key = assetKeyOf(asset);
    if (key !== undefined && !assetIndex.has(key)) assetIndex.set(key, i);
  });
  const assetJson = new Array<string | undefined>(assets.length);
  const jsonOfAsset = (i: number): string => (assetJson[i] ??= stringifyItem(assets[i], `Asset ${i}`));
  const lookup = (key: string): string | undefined => {
    const i = assetIndex.get(key);
    return i === undefined ? undefined : jsonOfAsset(i);
  };
  const emitted = new Set<string>();
  const push = async (built: BuiltChunk): Promise<void> => {
    signal?.throwIfAborted();
    for (const key of built.assetKeys) emitted.add(key);
    await window.push(built);
  };

  // Findings, a chunk at a time. The fast path serialises a chunk's findings with one JSON.stringify of
  // the slice; a chunk over maxChunkSizeBytes (or holding an item JSON cannot represent) is rebuilt item
  // by item with the ChunkBuilder, which cuts exactly where the limits say and names a refused item.
  let index = 0;
  let i = 0;
  while (i < findings.length) {
    const fast = fastChunk(findings, i, index === 0 ? decision.head : '', settings, assetIndex, jsonOfAsset);
    if (fast !== undefined) {
      digest.finding(fast.findingsJson);
      await push({ index, json: fast.json, findings: fast.end - i, assets: fast.assetKeys.length, assetKeys: fast.assetKeys });
      index++;
      if (index > MAX_CHUNKS_PER_REPORT) throw tooManyChunks();
      i = fast.end;
      continue;
    }
    const builder = new ChunkBuilder(settings, decision.head, lookup, index);
    let closed: BuiltChunk | undefined;
    let j = i;
    for (; j < findings.length && closed === undefined; j++) {
      const json = stringifyItem(findings[j], `Finding ${j}`);
      closed = builder.addFinding(json, referencedKeys(settings, findings[j]), j);
      if (closed === undefined) digest.finding(json);
    }
    // `closed` ends before finding j − 1, which went into the next chunk: take it up again there.
    if (closed === undefined) closed = builder.finish() as BuiltChunk;
    else j--;
    await push(closed);
    index = closed.index + 1;
    i = j;
  }

  const builder = new ChunkBuilder(settings, decision.head, lookup, index);
  for (let i = 0; i < assets.length; i++) {
    const key = assetKeyOf(assets[i]);
    const json = jsonOfAsset(i);
    digest.asset(json);
    if (key !== undefined && assetIndex.get(key) !== i) continue; // a later duplicate id: the server keeps the first
    if (key !== undefined && emitted.has(key)) continue;
    const closed = builder.addAsset(key, json, i);
    if (closed !== undefined) await push(closed);
  }
  const last = builder.finish();
  if (last !== undefined) await push(last);
  await window.drain();
  return { kind: 'chunked', chunks, digest: digest.digest(), rawBytes };
}


/** A chunk built by the fast path. */
interface FastChunk {
  readonly json: Buffer;
  /** The findings' JSON joined with commas, as a view into `json` (for the content digest). */
  readonly findingsJson: Uint8Array;
  readonly end: number;
  readonly assetKeys: string[];
}

/**
 * Builds the chunk starting at finding `start` in one go: as many findings as
 * `maxFindingsPerChunk` and `maxAssetsPerChunk` allow, serialised with one
 * `JSON.stringify`. `undefined` when that chunk would be over
 * `maxChunkSizeBytes` or holds an item JSON cannot represent as itself
 * (the caller then builds it item by item).
 */
function fastChunk(
  findings: readonly unknown[],
  start: number,
  head: string,
  settings: SplitSettings,
  assetIndex: ReadonlyMap<string, number>,
  jsonOfAsset: (i: number) => string,
): FastChunk | undefined {
  const keys: string[] = [];
  const seen = new Set<string>();
  let end = start;
  for (; end < findings.length && end - start < settings.maxFindingsPerChunk; end++) {
    const f = findings[end];
    if (f === undefined || typeof f === 'function' || typeof f === 'symbol') return undefined;
    const before = keys.length;
    for (const id of settings.findingAssetIds(f)) {
      const key = assetKey(id);
      if (key === undefined || seen.has(key) || !assetIndex.has(key)) continue;
      seen.add(key);
      keys.push(key);
    }
    if (keys.length > settings.maxAssetsPerChunk) {
      // This finding's assets do not fit beside the others: end the chunk before it.
      for (let k = before; k < keys.length; k++) seen.delete(keys[k] as string);
      keys.length = before;
      if (end === start) return undefined;
      break;
    }
  }
  let findingsJson: string; // the JSON array, brackets included: no substring to flatten
  try {
    findingsJson = JSON.stringify(findings.slice(start, end));
  } catch {
    return undefined; // the item-by-item path names the item that cannot be serialised
  }
  const assetsJson = keys.map((key) => jsonOfAsset(assetIndex.get(key) as number)).join(',');
  const text = `{${head}"findings":${findingsJson},"assets":[${assetsJson}]}`;
  // UTF-8 is never shorter than the UTF-16 length (JSON escapes lone surrogates), so this cheap test is safe.
  if (text.length > settings.maxChunkSizeBytes) return undefined;
  const json = Buffer.from(text, 'utf8');
  if (json.length > settings.maxChunkSizeBytes) return undefined;
  // Hash the findings as the bytes already encoded, not the string again.
  const from = Buffer.byteLength(`{${head}"findings":[`);
  const to = json.length - Buffer.byteLength(`],"assets":[${assetsJson}]}`);
  return { json, findingsJson: json.subarray(from, to), end, assetKeys: keys };
}
