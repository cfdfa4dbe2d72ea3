/**
 * Reassembly: chunks in index order → one report.
 */
import { IngestError } from '../errors.js';
import type { IngestedReport } from './options.js';

/**
 * Parses a body as a protocol v1 report or chunk: a JSON object whose
 * `findings` and `assets`, when present, are arrays.
 *
 * @throws {@link IngestError} `OUTPOST_INGEST_INVALID_JSON`
 */
export function parsePayload(raw: Buffer): IngestedReport {
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new IngestError('OUTPOST_INGEST_INVALID_JSON', 'Body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new IngestError('OUTPOST_INGEST_INVALID_JSON', 'Body must be a JSON object');
  }
  const o = value as IngestedReport;
  for (const key of ['findings', 'assets'] as const) {
    if (o[key] !== undefined && !Array.isArray(o[key])) throw new IngestError('OUTPOST_INGEST_INVALID_JSON', `\`${key}\` must be an array`);
  }
  return o;
}

function assetKey(asset: unknown): string | undefined {
  if (typeof asset !== 'object' || asset === null) return undefined;
  const id = (asset as { id?: unknown }).id;
  return typeof id === 'string' || typeof id === 'number' ? `${typeof id}:${id}` : undefined;
}

/**
 * Merges parsed chunks (in index order) into one report: every field of
 * chunk 0 (metadata rides there), `findings` concatenated in order, `assets`
 * concatenated with repeats of the same `id` kept once (each chunk carries the
 * assets its findings reference, so one asset may travel in several chunks).
 */
export function assembleReport(chunks: readonly IngestedReport[]): IngestedReport {
  const first = chunks[0] ?? {};
  const findings: unknown[] = [];
  const assets: unknown[] = [];
  const seen = new Set<string>();
  for (const chunk of chunks) {
    for (const f of (chunk['findings'] as unknown[] | undefined) ?? []) findings.push(f);
    for (const a of (chunk['assets'] as unknown[] | undefined) ?? []) {
      const key = assetKey(a);
      if (key !== undefined) {
        if (seen.has(key)) continue;
        seen.add(key);
      }
      assets.push(a);
    }
  }
  return { ...first, findings, assets };
}
