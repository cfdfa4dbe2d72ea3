/**
 * Parsed chunks kept between upload and delivery. Every chunk is parsed on
 * arrival (to validate it); when its report completes soon after, delivery
 * reuses those objects instead of decompressing and parsing every chunk
 * again. Bounded by a cost per chunk (the handler uses its count of JSON
 * values, which is what the parsed objects weigh); least recently stored
 * goes first, and a miss just falls back to the store.
 */
import type { IngestedReport } from './options.js';

const key = (tenantId: string, reportId: string, index: number): string => `${tenantId}\u0000${reportId}\u0000${index}`;

/** A cost-bounded, insertion-ordered cache of parsed chunks. */
export class ParsedChunkCache {
  readonly #entries = new Map<string, { readonly value: IngestedReport; readonly cost: number }>();
  #cost = 0;

  /** @param maxCost - budget, in the unit of the costs given to `set()` */
  constructor(readonly maxCost: number) {}

  /** Cost held now. */
  get cost(): number {
    return this.#cost;
  }

  /** Keeps a parsed chunk; evicts the oldest entries to stay within budget. */
  set(tenantId: string, reportId: string, index: number, value: IngestedReport, cost: number): void {
    const k = key(tenantId, reportId, index);
    this.#delete(k);
    if (cost > this.maxCost) return;
    this.#entries.set(k, { value, cost });
    this.#cost += cost;
    for (const [oldest] of this.#entries) {
      if (this.#cost <= this.maxCost) break;
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
    this.#cost -= entry.cost;
  }
}
