/**
 * zstd through the native binding of `@mongodb-js/zstd`. Its JavaScript
 * wrapper (1.2.2) drops the `level` argument, so levels would silently be
 * ignored; the binding itself honours them. Both calls run on libuv's thread
 * pool, off the event loop.
 * @internal
 */
import { createRequire } from 'node:module';

interface Binding {
  compress(data: Buffer, level?: number): Promise<Buffer>;
  decompress(data: Buffer): Promise<Buffer>;
}

const binding = createRequire(import.meta.url)('@mongodb-js/zstd/bindings.js') as Binding;

function wrap(err: unknown): Error {
  return new Error(`zstd: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/** Compresses `data` into one zstd frame at `level` (1–22). */
export async function zstdCompress(data: Buffer, level: number): Promise<Buffer> {
  try {
    return await binding.compress(data, level);
  } catch (err) {
    throw wrap(err);
  }
}

/** Decompresses every frame in `data`. Check the frame headers first: see `scanZstdFrames`. */
export async function zstdDecompress(data: Buffer): Promise<Buffer> {
  try {
    return await binding.decompress(data);
  } catch (err) {
    throw wrap(err);
  }
}
