/**
 * Parsed chunks kept between upload and delivery. Every chunk is parsed on
 * arrival (to validate it); when its report completes soon after, delivery
 * reuses those objects instead of decompressing and parsing every chunk
 * again. Bounded by the chunks' uncompressed bytes; least recently stored
 * goes first, and a miss just falls back to the store.
 */
import type { IngestedReport } from './options.js';

const key = (tenantId: string, reportId: string, index: number): string => `${tenantId}\u0000${reportId}\u0000${index}`;

/** A byte-bounded, insertion-ordered cache of parsed chunks. */
export class ParsedChunkCache {
  readonly #entries = new Map<string, { readonly value: IngestedReport; readonly bytes: number }>();
  #bytes = 0;

  /** @param maxBytes - budget, in uncompressed bytes of the chunks held */
  constructor(readonly maxBytes: number) {}

  /** Bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Keeps a parsed chunk; evicts the oldest entries to stay within budget. */
  set(tenantId: string, reportId: string, index: number, value: IngestedReport, bytes: number): void {
    if (bytes > this.maxBytes) return;
    const k = key(tenantId, reportId, index);
    this.#delete(k);
    this.#entries.set(k, { value, bytes });
    this.#bytes += bytes;
    for (const [oldest] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#delete(oldest);
    }
  }

  /** Every chunk of the report in index order, or `undefined` unless all `total` are held. */
  take(tenantId: string, reportId: string, total: number): IngestedReport[] | undefined {
    const parts: IngestedReport[] = [];
    for (let i = 0; i < total; i++) {
      const entry = this.#entries.get(key(tenantId, reportId, i));
      if (entry === undefined) return undefined;
      parts.push(entry.value);
    }
    return parts;
  }

  /** Forgets the report's chunks. */
  drop(tenantId: string, reportId: string, total: number): void {
    for (let i = 0; i < total; i++) this.#delete(key(tenantId, reportId, i));
  }

  #delete(k: string): void {
    const entry = this.#entries.get(k);
    if (entry === undefined) return;
    this.#entries.delete(k);
    this.#bytes -= entry.bytes;
  }
}
