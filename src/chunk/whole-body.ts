/**
 * Builds a report's whole body in the outbox's canonical form, item by item:
 * `{<other fields>,"findings":[…],"assets":[…]}`. It hashes as it goes (the
 * body's sha-256 and the split-independent content digest), so a caller can
 * yield between items, and it remembers which bodies it made.
 * @internal
 */
import { createHash, type Hash } from 'node:crypto';
import { compressForWire } from '../internal/wire-compress.js';
import type { EncodedBody } from '../transport/index.js';
import { ContentDigest } from './splitter.js';

/**
 * A report encoded as one body, exactly as the outbox sends a report it does
 * not split: the same bytes, so a server that already has it answers
 * "duplicate" whichever side sent it first.
 */
export interface WholeReportBody extends EncodedBody {
  /** The report's content digest (independent of how it is split), hex; the outbox's duplicate check uses it. */
  readonly contentDigest: string;
}

/** What a body was made from, for the bodies this module made. */
export interface WholeBodyOrigin {
  readonly findings: number;
  readonly assets: number;
}

const made = new WeakMap<WholeReportBody, WholeBodyOrigin>();

/** The findings and assets a body was made from, or `undefined` when it was not made by a {@link WholeBodyBuilder}. */
export function originOf(body: WholeReportBody): WholeBodyOrigin | undefined {
  return typeof body === 'object' && body !== null ? made.get(body) : undefined;
}

/** Bytes of the JSON frame around the head and items: `{` `"findings":[` `],"assets":[` `]}`. */
export const WHOLE_FRAME_BYTES = 27;

export class WholeBodyBuilder {
  readonly #head: string;
  readonly #findings: string[] = [];
  readonly #assets: string[] = [];
  readonly #sha = createHash('sha256');
  readonly #digest = new ContentDigest();
  /** UTF-8 bytes of the body so far (frame included). */
  bytes: number;

  constructor(head: string) {
    this.#head = head;
    this.bytes = Buffer.byteLength(head) + WHOLE_FRAME_BYTES;
    this.#sha.update(`{${head}"findings":[`);
    this.#digest.head(head);
  }

  /** Adds a finding's JSON (all findings before any asset). */
  finding(json: string): void {
    add(this.#sha, this.#findings, json);
    this.#digest.finding(json);
    this.bytes += Buffer.byteLength(json) + (this.#findings.length > 1 ? 1 : 0);
  }

  /** Adds an asset's JSON. */
  asset(json: string): void {
    if (this.#assets.length === 0) this.#sha.update('],"assets":[');
    add(this.#sha, this.#assets, json);
    this.#digest.asset(json);
    this.bytes += Buffer.byteLength(json) + (this.#assets.length > 1 ? 1 : 0);
  }

  /** Compresses the body (on the thread pool) and returns it. Call once. */
  async finish(compressionLevel: number): Promise<WholeReportBody> {
    if (this.#assets.length === 0) this.#sha.update('],"assets":[');
    this.#sha.update(']}');
    const raw = Buffer.from(`{${this.#head}"findings":[${this.#findings.join(',')}],"assets":[${this.#assets.join(',')}]}`, 'utf8');
    const sha256 = this.#sha.digest('hex');
    const wire = await compressForWire(raw, compressionLevel);
    const body: WholeReportBody = { body: wire.body, encoding: wire.encoding, sha256, rawBytes: raw.length, contentDigest: this.#digest.digest() };
    made.set(body, { findings: this.#findings.length, assets: this.#assets.length });
    return Object.freeze(body);
  }
}

function add(sha: Hash, list: string[], json: string): void {
  if (list.length > 0) sha.update(',');
  sha.update(json);
  list.push(json);
}
