/**
 * Builds a report's whole body in the outbox's canonical form,
 * `{<other fields>,"findings":[…],"assets":[…]}`, from pieces of items
 * already serialised (one item, or several joined with commas), and
 * remembers which bodies it made.
 * @internal
 */
import { createHash } from 'node:crypto';
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

const COMMA = Buffer.from(',');
const OPEN_FINDINGS = Buffer.from('"findings":[');
const OPEN_ASSETS = Buffer.from('],"assets":[');
const CLOSE = Buffer.from(']}');

type Piece = string | Uint8Array;

function byteLength(piece: Piece): number {
  return typeof piece === 'string' ? Buffer.byteLength(piece) : piece.byteLength;
}

export class WholeBodyBuilder {
  readonly #head: string;
  readonly #pieces: { findings: Piece[]; assets: Piece[] } = { findings: [], assets: [] };
  readonly #counts = { findings: 0, assets: 0 };
  readonly #bytes = { findings: 0, assets: 0 };
  readonly #headBytes: number;

  constructor(head: string) {
    this.#head = head;
    this.#headBytes = Buffer.byteLength(head);
  }

  /** UTF-8 bytes of the body so far, frame included. */
  get bytes(): number {
    return this.#headBytes + WHOLE_FRAME_BYTES + this.#bytes.findings + this.#bytes.assets;
  }

  /** Adds `count` items' JSON, joined with commas, to `list` (all findings before any asset). */
  add(list: 'findings' | 'assets', piece: Piece, count = 1): void {
    if (count === 0) return;
    this.#bytes[list] += byteLength(piece) + (this.#counts[list] > 0 ? 1 : 0);
    this.#counts[list] += count;
    this.#pieces[list].push(piece);
  }

  /** Lays the body out, hashes it, compresses it (on the thread pool) and returns it. Call once. */
  async finish(compressionLevel: number): Promise<WholeReportBody> {
    const parts: Uint8Array[] = [Buffer.from(`{${this.#head}`), OPEN_FINDINGS];
    const findingsAt = this.#headBytes + 1 + OPEN_FINDINGS.length;
    for (const list of ['findings', 'assets'] as const) {
      if (list === 'assets') parts.push(OPEN_ASSETS);
      this.#pieces[list].forEach((piece, i) => {
        if (i > 0) parts.push(COMMA);
        parts.push(typeof piece === 'string' ? Buffer.from(piece) : piece);
      });
    }
    parts.push(CLOSE);
    const raw = Buffer.concat(parts, this.bytes);
    const assetsAt = findingsAt + this.#bytes.findings + OPEN_ASSETS.length;
    const digest = new ContentDigest();
    digest.head(this.#head);
    if (this.#counts.findings > 0) digest.finding(raw.subarray(findingsAt, findingsAt + this.#bytes.findings));
    if (this.#counts.assets > 0) digest.asset(raw.subarray(assetsAt, assetsAt + this.#bytes.assets));
    const sha256 = createHash('sha256').update(raw).digest('hex');
    const wire = await compressForWire(raw, compressionLevel);
    const body: WholeReportBody = { body: wire.body, encoding: wire.encoding, sha256, rawBytes: raw.length, contentDigest: digest.digest() };
    made.set(body, { findings: this.#counts.findings, assets: this.#counts.assets });
    return Object.freeze(body);
  }
}
