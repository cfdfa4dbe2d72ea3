/**
 * Synthetic scanner output for the chunk benchmark (`bench/chunk.bench.ts`):
 * findings of ~350 bytes of JSON, each referring to one asset. Like real scan
 * output, findings come grouped by the asset they were found on (~50 per
 * asset), with a few cross-references to another asset. Deterministic per seed.
 */

const WORDS = (
  'user input request handler buffer token session query value path file stream parser config secret key cipher random header ' +
  'cookie redirect template render command shell process socket timeout cache record field object array index length offset ' +
  'encode decode escape sanitize validate trust origin script style image upload download archive entry symlink permission owner group mode'
).split(' ');
const DIRS = 'src lib app api internal pkg cmd server client web core services handlers models views controllers middleware auth db storage net crypto'.split(' ');
const EXTS = ['ts', 'js', 'py', 'go', 'java', 'rb', 'php', 'cs'];
const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'];
const KINDS = ['sqli', 'xss', 'path-traversal', 'ssrf', 'weak-crypto', 'hardcoded-secret', 'open-redirect', 'cmd-injection', 'deserialization', 'xxe'];
const RULES = Array.from({ length: 80 }, (_, i) => `${pick1(KINDS, i % KINDS.length)}-${String((i * 7919) % 1000).padStart(3, '0')}`);
const CWES = [22, 78, 79, 89, 94, 200, 287, 327, 502, 611, 798, 918];
const OSES = ['ubuntu-22.04', 'ubuntu-24.04', 'debian-12', 'rhel-9.4', 'alpine-3.20', 'windows-server-2022'];
const TEAMS = ['payments', 'identity', 'search', 'platform', 'growth', 'data', 'mobile', 'infra'];

/** Findings per asset, on average. */
export const FINDINGS_PER_ASSET = 50;
/** Share of findings that refer to some other (earlier) asset than the one of their group. */
const CROSS_REFERENCE = 0.05;

/** mulberry32. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick1<T>(list: readonly T[], i: number): T {
  const v = list[i];
  if (v === undefined) throw new RangeError(`index ${i} out of range`);
  return v;
}

/** Makes findings and assets from one seeded random stream. */
export class Synth {
  readonly #rand: () => number;
  readonly #files: string[];
  readonly #seed: number;

  constructor(seed: number) {
    this.#seed = seed;
    this.#rand = prng(seed);
    this.#files = Array.from(
      { length: 400 },
      () => `${Array.from({ length: 1 + this.#int(3) }, () => this.#pick(DIRS)).join('/')}/${this.#pick(WORDS)}_${this.#pick(WORDS)}.${this.#pick(EXTS)}`,
    );
  }

  /** Asset `n`: ~230 bytes of JSON. */
  asset(n: number): Record<string, unknown> {
    return {
      id: assetId(n),
      kind: 'host',
      hostname: `${this.#pick(WORDS)}-${String(n).padStart(5, '0')}.prod.example.internal`,
      ip: `10.${this.#int(256)}.${this.#int(256)}.${1 + this.#int(254)}`,
      os: this.#pick(OSES),
      owner: `team-${this.#pick(TEAMS)}`,
      tags: [this.#pick(WORDS), this.#pick(WORDS)],
      lastSeen: '2025-06-01T12:00:00.000Z',
    };
  }

  /** Finding `i`, on asset `asset` (or, now and then, on one of the assets before it): ~350 bytes of JSON. */
  finding(i: number, asset: number): Record<string, unknown> {
    const line = 1 + this.#int(4000);
    const on = asset > 0 && this.#rand() < CROSS_REFERENCE ? this.#int(asset) : asset;
    return {
      id: `F-${this.#seed}-${String(i).padStart(7, '0')}`,
      ruleId: this.#pick(RULES),
      severity: this.#pick(SEVERITIES),
      confidence: this.#pick([0.3, 0.5, 0.7, 0.9]),
      location: { file: this.#pick(this.#files), line, column: 1 + this.#int(120), endLine: line + this.#int(12) },
      message: `${this.#words(2 + this.#int(4))} in ${this.#pick(WORDS)}_${this.#hex(3)}`,
      snippet: `${this.#pick(WORDS)}.${this.#pick(WORDS)}(${this.#pick(WORDS)}, "${this.#pick(WORDS)}")`,
      fingerprint: this.#hex(12),
      cwe: `CWE-${this.#pick(CWES)}`,
      tags: Array.from({ length: 1 + this.#int(2) }, () => this.#pick(WORDS)),
      assetId: assetId(on),
    };
  }

  #int(max: number): number {
    return Math.floor(this.#rand() * max);
  }

  #pick<T>(list: readonly T[]): T {
    return pick1(list, this.#int(list.length));
  }

  #words(n: number): string {
    let s = this.#pick(WORDS);
    for (let k = 1; k < n; k++) s += ` ${this.#pick(WORDS)}`;
    return s;
  }

  #hex(digits: number): string {
    let s = '';
    for (let k = 0; k < digits; k++) s += this.#int(16).toString(16);
    return s;
  }
}

export function assetId(n: number): string {
  return `asset-${String(n).padStart(5, '0')}`;
}

/** Metadata of a synthetic report. */
export const METADATA = Object.freeze({ scanner: 'outpost-bench', version: '1.0.0', startedAt: '2025-06-01T12:00:00.000Z', target: 'fleet-prod' });

/** A report of `findings` findings over `assets` assets, findings grouped by asset. */
export function makeReport(seed: number, findings: number, assets: number): { metadata: unknown; findings: Record<string, unknown>[]; assets: Record<string, unknown>[] } {
  const synth = new Synth(seed);
  const assetList = Array.from({ length: assets }, (_, n) => synth.asset(n));
  const findingList = Array.from({ length: findings }, (_, i) => synth.finding(i, Math.floor((i * assets) / findings)));
  return { metadata: METADATA, findings: findingList, assets: assetList };
}

/**
 * The same report pre-split as the outbox splits it when the finding count
 * is what closes chunks: `perChunk` findings each, with the assets they refer
 * to (first reference first), metadata in chunk 0, and the assets no finding
 * refers to after the findings, in the last chunk.
 */
export function preSplit(report: { metadata: unknown; findings: readonly Record<string, unknown>[]; assets: readonly Record<string, unknown>[] }, perChunk: number): Record<string, unknown>[] {
  const byId = new Map<unknown, Record<string, unknown>>();
  for (const a of report.assets) if (!byId.has(a['id'])) byId.set(a['id'], a);
  const referenced = new Set<unknown>();
  const chunks: Record<string, unknown>[] = [];
  for (let start = 0; start < report.findings.length; start += perChunk) {
    const findings = report.findings.slice(start, start + perChunk);
    const ids = new Set<unknown>();
    const assets: Record<string, unknown>[] = [];
    for (const f of findings) {
      const id = f['assetId'];
      const a = byId.get(id);
      if (a === undefined || ids.has(id)) continue;
      ids.add(id);
      referenced.add(id);
      assets.push(a);
    }
    chunks.push(start === 0 ? { metadata: report.metadata, findings, assets } : { findings, assets });
  }
  const rest = [...byId.entries()].filter(([id]) => !referenced.has(id)).map(([, a]) => a);
  const last = chunks.at(-1);
  if (rest.length > 0 && last !== undefined) (last['assets'] as Record<string, unknown>[]).push(...rest);
  return chunks;
}

/** One item of a streamed report. */
export type Item = { readonly finding: unknown } | { readonly asset: unknown };

/**
 * A streamed report of `findings` findings: each asset, then its ~50
 * findings (a few referring to an earlier asset), made on the fly.
 */
export async function* streamItems(seed: number, findings: number): AsyncGenerator<Item> {
  const synth = new Synth(seed);
  let asset = -1;
  for (let i = 0; i < findings; i++) {
    const group = Math.floor(i / FINDINGS_PER_ASSET);
    if (group !== asset) {
      asset = group;
      yield { asset: synth.asset(asset) };
    }
    yield { finding: synth.finding(i, asset) };
  }
}
