/**
 * RFC 9530 `Repr-Digest` with sha-256: `sha-256=:<base64>:`.
 * @internal
 */
import { createHash } from 'node:crypto';

/** SHA-256 of `data`, as raw bytes. */
export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** `sha-256=:<base64>:` for a 32-byte digest. */
export function formatReprDigest(digest: Uint8Array): string {
  return `sha-256=:${Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('base64')}:`;
}

const MEMBER = /^([a-z][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/]*={0,2}):$/;

/**
 * Extracts the sha-256 member of a `Repr-Digest` dictionary. Returns the 32
 * digest bytes, or `undefined` when the header is malformed or has no sha-256
 * member. Other algorithms are ignored, as RFC 9530 allows.
 */
export function parseReprDigest(header: string | undefined): Buffer | undefined {
  if (header === undefined || header.length > 4096) return undefined;
  let found: Buffer | undefined;
  for (const raw of header.split(',')) {
    const match = MEMBER.exec(raw.trim());
    if (match === null) return undefined;
    if (match[1] !== 'sha-256') continue;
    const bytes = Buffer.from(match[2] ?? '', 'base64');
    if (bytes.length !== 32 || bytes.toString('base64') !== match[2]) return undefined;
    found = bytes;
  }
  return found;
}
