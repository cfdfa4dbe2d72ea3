import { createHash } from 'node:crypto';
import { decompress } from '@mongodb-js/zstd';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, InvalidOptionError } from '../../src/errors.js';
import { scanZstdFrames } from '../../src/internal/zstd-frame.js';
import { encodeBody } from '../../src/transport/index.js';
import { startIngest } from '../helpers/ingest.js';

describe('encodeBody', () => {
  it('serialises, hashes the JSON and compresses it into a frame that declares its size', async () => {
    const value = { findings: Array.from({ length: 1000 }, (_, i) => ({ id: i, rule: 'x' })) };
    const json = Buffer.from(JSON.stringify(value));
    const body = await encodeBody(value);
    expect(body.encoding).toBe('zstd');
    expect(body.rawBytes).toBe(json.length);
    expect(body.sha256).toBe(createHash('sha256').update(json).digest('hex'));
    expect(body.body.length).toBeLessThan(json.length);
    const scan = scanZstdFrames(body.body);
    expect(scan.ok && scan.declaredContentBytes).toBe(json.length);
    expect((await decompress(Buffer.from(body.body))).equals(json)).toBe(true);
  });

  it('sends a body that zstd would shrink more than 100:1 as identity, which an ingest server accepts', async () => {
    const value = { findings: [{ id: 1, detail: 'a'.repeat(1_000_000) }] };
    const json = Buffer.from(JSON.stringify(value));
    const body = await encodeBody(value);
    expect(body.encoding).toBe('identity');
    expect(Buffer.from(body.body).equals(json)).toBe(true);
    expect(body.sha256).toBe(createHash('sha256').update(json).digest('hex'));
    const ingest = await startIngest();
    try {
      const result = await ingest.client().uploadReport({ reportId: 'compressible', ...body });
      expect(result.status).toBe(201);
    } finally {
      await ingest.close();
    }
  });

  it('compresses harder at a higher compressionLevel (the level reaches zstd)', async () => {
    const value = { findings: Array.from({ length: 5000 }, (_, i) => ({ id: i, rule: `R${i % 37}`, path: `/src/${(i * 7919) % 1000}.ts`, line: (i * 31) % 997 })) };
    const fast = await encodeBody(value, { compressionLevel: 1 });
    const strong = await encodeBody(value, { compressionLevel: 19 });
    expect(strong.body.length).toBeLessThan(fast.body.length * 0.95);
    expect(strong.sha256).toBe(fast.sha256);
    expect((await decompress(Buffer.from(strong.body))).length).toBe(strong.rawBytes);
  });

  it('takes bytes as JSON already and can skip compression', async () => {
    const body = await encodeBody(Buffer.from('{"a":1}'), { encoding: 'identity' });
    expect(Buffer.from(body.body).toString()).toBe('{"a":1}');
    expect(body.encoding).toBe('identity');
  });

  it('rejects values that are not JSON and bad levels', async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    await expect(encodeBody(cyclic)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(encodeBody(undefined)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(encodeBody({}, { compressionLevel: 30 })).rejects.toBeInstanceOf(InvalidOptionError);
  });
});

describe('encodeBody identity fallback', () => {
  it('keeps zstd for a body over 10 MiB however well it compresses (identity would be refused for its size)', async () => {
    const body = await encodeBody({ detail: 'a'.repeat(11 * 1024 * 1024) });
    expect(body.encoding).toBe('zstd');
    expect(body.body.length).toBeLessThan(1024 * 1024);
  });
});
