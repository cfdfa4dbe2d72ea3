/**
 * Splitting: packs serialised findings, and the assets each one refers to,
 * into chunk bodies that never exceed the chunk limits. Every item is
 * serialised once; a chunk's JSON is built by joining the pieces, so its exact
 * size is known before it is closed.
 * @internal
 */
import { createHash, type Hash } from 'node:crypto';
import { ChunkError, InvalidArgumentError } from '../errors.js';
import { MAX_CHUNKS_PER_REPORT } from '../internal/protocol.js';

/** Limits a chunk must respect. */
export interface ChunkLimits {
  readonly maxFindingsPerChunk: number;
  readonly maxAssetsPerChunk: number;
  readonly maxChunkSizeBytes: number;
}

/** A closed chunk: its JSON and what it holds. */
export interface BuiltChunk {
  /** 0-based index in the report. */
  readonly index: number;
  /** The chunk's JSON, UTF-8. */
  readonly json: Buffer;
  /** Findings in the chunk. */
  readonly findings: number;
  /** Assets in the chunk. */
  readonly assets: number;
  /** Keys of the assets in the chunk (see {@link assetKey}). */
  readonly assetKeys: readonly string[];
}

/** Resolves an asset key to its JSON, or `undefined` when no such asset is known (yet). */
export type AssetLookup = (key: string) => string | undefined;

/** The error for a report that needs more chunks than protocol v1 allows. */
export function tooManyChunks(): ChunkError {
  return new ChunkError(
    'OUTPOST_CHUNK_TOO_MANY',
    `The report needs more than ${MAX_CHUNKS_PER_REPORT} chunks (protocol v1's limit); raise \`maxFindingsPerChunk\`, \`maxAssetsPerChunk\` or \`maxChunkSizeBytes\`, or split it into several reports`,
  );
}

/** Key of an asset id: `"1"` and `1` are different ids, as on the server. */
export function assetKey(id: unknown): string | undefined {
  if (typeof id === 'string') return `s${id}`;
  if (typeof id === 'number' && Number.isFinite(id)) return `n${id}`;
  return undefined;
}

/** The `id` of an asset object, as a key. */
export function assetKeyOf(asset: unknown): string | undefined {
  return typeof asset === 'object' && asset !== null ? assetKey((asset as { id?: unknown }).id) : undefined;
}

/** Serialises one item; `undefined` results (functions, symbols) and cycles are refused. */
export function stringifyItem(value: unknown, what: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new InvalidArgumentError(`${what} cannot be serialised to JSON`, { cause: err });
  }
  if (json === undefined) throw new InvalidArgumentError(`${what} cannot be serialised to JSON: got ${typeof value}`);
  return json;
}

/**
 * The report's fields other than `findings` and `assets` (such as `metadata`),
 * as the JSON members that open chunk 0: `"metadata":{…},` (empty when none).
 */
export function headOf(fields: Readonly<Record<string, unknown>>): string {
  let head = '';
  for (const [key, value] of Object.entries(fields)) {
    if (key === 'findings' || key === 'assets' || value === undefined) continue;
    head += `${JSON.stringify(key)}:${stringifyItem(value, `Report field \`${key}\``)},`;
  }
  return head;
}

const FRAME = Buffer.byteLength('{"findings":[],"assets":[]}');

/**
 * Digest of a report's content, independent of how it is split or submitted:
 * the same metadata, findings (in order) and assets (in order) give the same
 * digest under any chunk limits, whether they came as arrays or interleaved
 * in a stream.
 */
export class ContentDigest {
  readonly #head: Hash = createHash('sha256');
  readonly #findings: Hash = createHash('sha256');
  readonly #assets: Hash = createHash('sha256');
  #anyFinding = false;
  #anyAsset = false;
  /** Adds the head (chunk 0's extra members). */
  head(json: string): void {
    this.#head.update(json);
  }
  /**
   * Adds findings' JSON: one item, or several already joined with commas.
   * The findings hash is over their comma-joined JSON, so feeding items one by
   * one or a chunk's worth at once gives the same digest.
   */
  finding(json: string | Uint8Array): void {
    if (this.#anyFinding) this.#findings.update(',');
    this.#findings.update(json);
    this.#anyFinding = true;
  }
  /** Adds assets' JSON: one item, or several already joined with commas (as for findings). */
  asset(json: string | Uint8Array): void {
    if (this.#anyAsset) this.#assets.update(',');
    this.#assets.update(json);
    this.#anyAsset = true;
  }
  /** The hex digest; call once. */
  digest(): string {
    return createHash('sha256')
      .update(this.#head.digest())
      .update(this.#findings.digest())
      .update(this.#assets.digest())
      .digest('hex');
  }
}

/**
 * Packs items into chunks in order. Feed findings with {@link addFinding},
 * then the assets no chunk has carried yet with {@link addAsset}, then
 * {@link finish}. Each call returns the chunk it closed, if any.
 */
export class ChunkBuilder {
  readonly #limits: ChunkLimits;
  readonly #head: string;
  readonly #lookup: AssetLookup;
  #index = 0;
  #findings: string[] = [];
  #assets: string[] = [];
  #assetKeys: string[] = [];
  #assetSet = new Set<string>();
  #bytes: number;

  /**
   * @param head - chunk 0's extra members (ignored unless `startIndex` is 0)
   * @param startIndex - index of the first chunk this builder closes
   */
  constructor(limits: ChunkLimits, head: string, lookup: AssetLookup, startIndex = 0) {
    this.#index = startIndex;
    if (startIndex > 0) head = '';
    this.#limits = limits;
    this.#head = head;
    this.#lookup = lookup;
    this.#bytes = FRAME + Buffer.byteLength(head);
    if (this.#bytes > limits.maxChunkSizeBytes) {
      throw new ChunkError(
        'OUTPOST_CHUNK_ITEM_TOO_LARGE',
        `The report's metadata takes ${this.#bytes} bytes in chunk 0, over \`maxChunkSizeBytes\` (${limits.maxChunkSizeBytes})`,
      );
    }
  }

  /** Chunks closed so far. */
  get closed(): number {
    return this.#index;
  }

  /**
   * Adds a finding and the assets it refers to (those {@link AssetLookup}
   * knows). Returns the previous chunk when the finding did not fit in it.
   * @throws {@link ChunkError} `OUTPOST_CHUNK_ITEM_TOO_LARGE` when the finding and its assets cannot fit in an empty chunk
   */
  addFinding(json: string, assetKeys: Iterable<string>, position: number): BuiltChunk | undefined {
    const keys = [...new Set(assetKeys)];
    let closed: BuiltChunk | undefined;
    let plan = this.#plan(json, keys);
    if (plan === undefined) {
      if (this.#isFresh()) this.#tooLarge('Finding', position, json, keys);
      closed = this.#close();
      plan = this.#plan(json, keys);
      if (plan === undefined) this.#tooLarge('Finding', position, json, keys);
    }
    for (const [key, asset] of plan.assets) this.#putAsset(key, asset);
    this.#bytes += (this.#findings.length > 0 ? 1 : 0) + Buffer.byteLength(json);
    this.#findings.push(json);
    return closed;
  }

  /**
   * Adds an asset (one no chunk carried yet). Returns the previous chunk when it did not fit in it.
   * @throws {@link ChunkError} `OUTPOST_CHUNK_ITEM_TOO_LARGE` when the asset alone cannot fit in an empty chunk
   */
  addAsset(key: string | undefined, json: string, position: number): BuiltChunk | undefined {
    if (key !== undefined && this.#assetSet.has(key)) return undefined;
    const size = Buffer.byteLength(json) + (this.#assets.length > 0 ? 1 : 0);
    let closed: BuiltChunk | undefined;
    if (this.#assets.length + 1 > this.#limits.maxAssetsPerChunk || this.#bytes + size > this.#limits.maxChunkSizeBytes) {
      if (this.#isFresh()) this.#tooLarge('Asset', position, json, []);
      closed = this.#close();
      if (this.#bytes + Buffer.byteLength(json) > this.#limits.maxChunkSizeBytes) this.#tooLarge('Asset', position, json, []);
    }
    this.#putAsset(key, json);
    return closed;
  }

  /** Closes the last chunk; a report with no items still gets one (chunk 0, with its metadata). */
  finish(): BuiltChunk | undefined {
    if (this.#index > 0 && this.#findings.length === 0 && this.#assets.length === 0) return undefined;
    return this.#close();
  }

  /** Whether the current chunk holds nothing that closing it would move out of the way (chunk 0's metadata counts). */
  #isFresh(): boolean {
    return this.#findings.length === 0 && this.#assets.length === 0 && (this.#index > 0 || this.#head === '');
  }

  #putAsset(key: string | undefined, json: string): void {
    this.#bytes += (this.#assets.length > 0 ? 1 : 0) + Buffer.byteLength(json);
    this.#assets.push(json);
    if (key !== undefined) {
      this.#assetSet.add(key);
      this.#assetKeys.push(key);
    }
  }

  /** The assets a finding adds to the current chunk, or `undefined` when it does not fit. */
  #plan(json: string, keys: readonly string[]): { assets: [string, string][] } | undefined {
    const { maxFindingsPerChunk, maxAssetsPerChunk, maxChunkSizeBytes } = this.#limits;
    if (this.#findings.length + 1 > maxFindingsPerChunk) return undefined;
    let bytes = this.#bytes + (this.#findings.length > 0 ? 1 : 0) + Buffer.byteLength(json);
    let count = this.#assets.length;
    const assets: [string, string][] = [];
    for (const key of keys) {
      if (this.#assetSet.has(key)) continue;
      const asset = this.#lookup(key);
      if (asset === undefined) continue;
      bytes += (count > 0 ? 1 : 0) + Buffer.byteLength(asset);
      count++;
      assets.push([key, asset]);
    }
    if (count > maxAssetsPerChunk || bytes > maxChunkSizeBytes) return undefined;
    return { assets };
  }

  #tooLarge(what: string, position: number, json: string, keys: readonly string[]): never {
    const assets = keys.map((k) => this.#lookup(k)).filter((a): a is string => a !== undefined);
    const bytes = Buffer.byteLength(json) + assets.reduce((sum, a) => sum + Buffer.byteLength(a) + 1, 0);
    const detail =
      assets.length > this.#limits.maxAssetsPerChunk
        ? `refers to ${assets.length} assets, over \`maxAssetsPerChunk\` (${this.#limits.maxAssetsPerChunk})`
        : `takes ${bytes} bytes${assets.length > 0 ? ` with the ${assets.length} assets it refers to` : ''}, over \`maxChunkSizeBytes\` (${this.#limits.maxChunkSizeBytes}) in an empty chunk`;
    throw new ChunkError('OUTPOST_CHUNK_ITEM_TOO_LARGE', `${what} ${position} ${detail}`);
  }

  #close(): BuiltChunk {
    const head = this.#index === 0 ? this.#head : '';
    const json = Buffer.from(`{${head}"findings":[${this.#findings.join(',')}],"assets":[${this.#assets.join(',')}]}`, 'utf8');
    const chunk: BuiltChunk = { index: this.#index, json, findings: this.#findings.length, assets: this.#assets.length, assetKeys: this.#assetKeys };
    this.#index++;
    if (this.#index > MAX_CHUNKS_PER_REPORT) {
      throw tooManyChunks();
    }
    this.#findings = [];
    this.#assets = [];
    this.#assetKeys = [];
    this.#assetSet = new Set();
    this.#bytes = FRAME;
    return chunk;
  }
}
