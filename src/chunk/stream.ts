/**
 * Streaming submissions: findings and assets arrive one by one, chunks are
 * built, compressed and written as *staged* rows as they fill, so memory holds
 * only a few chunks. Assets are staged too, so a later finding's chunk can
 * carry the assets it refers to. The report becomes visible to the uploader
 * in one transaction at the end (see {@link ChunkStore.finalize}); a crash
 * before that leaves only staged rows, which the next open deletes.
 * @internal
 */
import { InvalidArgumentError } from '../errors.js';
import { CompressWindow, referencedKeys, type SplitSettings } from './encode.js';
import { assetKeyOf, ChunkBuilder, ContentDigest, headOf, stringifyItem, type BuiltChunk } from './splitter.js';
import type { ChunkStore, ReportHeader } from './store.js';

/** One item of a streamed report: a finding or an asset. */
export type StreamItem = StreamFinding | StreamAsset;

/** A finding in a stream. */
export interface StreamFinding {
  /** The finding, any JSON value (usually an object with an `assetId`). */
  readonly finding: unknown;
  /** Absent on a finding. */
  readonly asset?: undefined;
}

/** An asset in a stream. */
export interface StreamAsset {
  /** The asset, usually an object with an `id`. */
  readonly asset: unknown;
  /** Absent on an asset. */
  readonly finding?: undefined;
}

/** Sizes of one stored chunk, for events. */
export interface ChunkSizes {
  readonly index: number;
  readonly rawBytes: number;
  readonly storedBytes: number;
}

/** What a finished stream staged. */
export interface StagedReport {
  readonly kind: 'whole' | 'chunked';
  readonly total: number;
  readonly digest: string;
  readonly rawBytes: number;
  readonly storedBytes: number;
  readonly chunks: readonly ChunkSizes[];
}

/**
 * Iterates `items`, rejecting with `signal.reason` as soon as the signal
 * aborts — even while the source is stalled between items — and closing the
 * source's iterator then.
 */
async function* abortable<T>(items: AsyncIterable<T> | Iterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const iterator: AsyncIterator<T> | Iterator<T> =
    Symbol.asyncIterator in items ? (items as AsyncIterable<T>)[Symbol.asyncIterator]() : (items as Iterable<T>)[Symbol.iterator]();
  // One listener for the whole stream; it rejects only the wait in progress, so nothing is retained
  // across items (racing each item against one long-lived promise would keep every item alive).
  let rejectWait: ((reason: unknown) => void) | undefined;
  const onAbort = (): void => rejectWait?.(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  let finished = false;
  try {
    for (;;) {
      signal.throwIfAborted();
      const next = iterator.next();
      const result =
        next instanceof Promise || (typeof next === 'object' && next !== null && typeof (next as { then?: unknown }).then === 'function')
          ? await new Promise<IteratorResult<T>>((resolve, reject) => {
              rejectWait = reject;
              Promise.resolve(next).then(resolve, reject);
            })
          : (next as IteratorResult<T>);
      rejectWait = undefined;
      if (result.done === true) {
        finished = true;
        return;
      }
      yield result.value;
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (!finished) {
      // Tell the source to stop; a stalled source may never answer, so do not wait for it.
      void Promise.resolve()
        .then(() => iterator.return?.())
        .catch(() => undefined);
    }
  }
}

/** Reads `items` to the end only to compute the content digest (a resubmission of a stored report). */
export async function digestStream(metadata: unknown, items: AsyncIterable<StreamItem> | Iterable<StreamItem>, signal: AbortSignal): Promise<string> {
  const digest = new ContentDigest();
  digest.head(headOf(metadata === undefined ? {} : { metadata }));
  let position = 0;
  for await (const item of abortable(items, signal)) {
    checkItem(item, position++);
    if ('finding' in item) digest.finding(stringifyItem(item.finding, 'Finding'));
    else digest.asset(stringifyItem(item.asset, 'Asset'));
  }
  return digest.digest();
}

function checkItem(item: unknown, position: number): asserts item is StreamItem {
  if (typeof item !== 'object' || item === null || ('finding' in item) === ('asset' in item)) {
    throw new InvalidArgumentError(`Stream item ${position} must be { finding } or { asset }, got ${item === null ? 'null' : typeof item === 'object' ? `keys ${Object.keys(item).join(', ') || '(none)'}` : typeof item}`);
  }
}

/** Hooks the manager gives a stream. */
export interface StageContext {
  readonly store: ChunkStore;
  readonly key: number;
  readonly header: ReportHeader;
  readonly metadata: unknown;
  readonly settings: SplitSettings;
  readonly signal: AbortSignal;
  readonly now: () => number;
  /** Makes room for `bytes` more, or throws `StorageFullError`. */
  readonly ensureRoom: (bytes: number) => Promise<void>;
}

/** Reads `items` to the end and stages the report's chunks. */
export async function stageStream(ctx: StageContext, items: AsyncIterable<StreamItem> | Iterable<StreamItem>): Promise<StagedReport> {
  const { store, key, header, settings, signal } = ctx;
  const head = headOf(ctx.metadata === undefined ? {} : { metadata: ctx.metadata });
  const digest = new ContentDigest();
  digest.head(head);
  let pendingAssets: [string, string][] = [];
  let pendingByKey = new Map<string, string>();
  const staged: ChunkSizes[] = [];
  let rawBytes = 0;
  let storedBytes = 0;
  const window = new CompressWindow(settings.compressionLevel, async (chunk) => {
    await ctx.ensureRoom(chunk.body.byteLength);
    signal.throwIfAborted();
    store.stage(key, header.tenantId, pendingAssets, chunk, header.priority, ctx.now());
    pendingAssets = [];
    pendingByKey = new Map();
    rawBytes += chunk.rawBytes;
    storedBytes += chunk.body.byteLength;
    // Keep what events need, not the body.
    staged.push({ index: chunk.index, rawBytes: chunk.rawBytes, storedBytes: chunk.body.byteLength });
  });
  const builder = new ChunkBuilder(settings, head, (k) => pendingByKey.get(k) ?? store.s.stageAsset.get(key, k)?.json);
  const push = async (built: BuiltChunk | undefined): Promise<void> => {
    if (built !== undefined) await window.push(built);
  };

  let findings = 0;
  let assets = 0;
  let position = 0;
  for await (const item of abortable(items, signal)) {
    checkItem(item, position);
    if ('finding' in item) {
      const json = stringifyItem(item.finding, `Finding ${findings}`);
      digest.finding(json);
      await push(builder.addFinding(json, referencedKeys(settings, item.finding), findings));
      findings++;
    } else {
      const json = stringifyItem(item.asset, `Asset ${assets}`);
      digest.asset(json);
      const k = assetKeyOf(item.asset);
      if (k !== undefined && !pendingByKey.has(k) && store.s.stageAsset.get(key, k) === undefined) {
        pendingAssets.push([k, json]);
        pendingByKey.set(k, json);
        await push(builder.addAsset(k, json, assets));
      } else if (k === undefined) {
        await push(builder.addAsset(undefined, json, assets));
      }
      // A later asset with an id already seen is dropped, as the server would drop it.
      assets++;
    }
    position++;
  }
  await push(builder.finish());
  await window.drain();
  const whole =
    staged.length === 1 && findings < settings.minFindingsForChunking && assets < settings.minAssetsForChunking && rawBytes < settings.minSizeForChunkingBytes;
  return { kind: whole ? 'whole' : 'chunked', total: staged.length, digest: digest.digest(), rawBytes, storedBytes, chunks: staged };
}
