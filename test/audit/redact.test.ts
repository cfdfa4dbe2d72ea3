import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { REDACTED, type AuditLogger } from '../../src/audit/index.js';
import { MAX_DETAILS_DEPTH, compileRedactor, redactPattern } from '../../src/audit/redact.js';
import { tempDir } from '../helpers/ingest.js';
import { auditFiles, readDir, startLogger } from './helpers.js';

let tmp: ReturnType<typeof tempDir>;
let logger: AuditLogger | undefined;
afterEach(async () => {
  await logger?.close();
  logger = undefined;
  tmp?.cleanup();
});

const DEFAULT_KEYS = ['authorization', 'token', 'password', 'apiKey', 'secret'];

describe('redaction', () => {
  it('redacts the default secrets anywhere in details, in any spelling, and nothing else', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    const details = {
      authorization: 'Bearer abc',
      Authorization: 'Bearer abc',
      'x-api-key': 'k1',
      api_key: 'k2',
      APIKEY: 'k3',
      accessToken: 't1',
      refresh_token: 't2',
      client_secret: 's1',
      PASSWORD: 'p1',
      request: { headers: { 'Proxy-Authorization': 'Basic x', accept: 'json' }, body: [{ password: 'p2', user: 'ann' }, 'password'] },
      keep: { id: 7, name: 'scan', tokenizer: undefined, secretive: null },
    };
    logger.info('auth_failed', 'token refused for user ann', details);
    await logger.close();
    const [r] = readDir(tmp.dir);
    expect(r?.details).toEqual({
      authorization: REDACTED,
      Authorization: REDACTED,
      'x-api-key': REDACTED,
      api_key: REDACTED,
      APIKEY: REDACTED,
      accessToken: REDACTED,
      refresh_token: REDACTED,
      client_secret: REDACTED,
      PASSWORD: REDACTED,
      request: { headers: { 'Proxy-Authorization': REDACTED, accept: 'json' }, body: [{ password: REDACTED, user: 'ann' }, 'password'] },
      keep: { id: 7, name: 'scan', secretive: null },
    });
    // The message is not redacted: callers must not put secrets there.
    expect(r?.message).toBe('token refused for user ann');
  });

  it('never changes the caller’s object', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    const details = { nested: { token: 'abc' }, list: [{ secret: 's' }] };
    const copy = structuredClone(details);
    logger.info('auth_failed', 'x', details);
    expect(details).toEqual(copy);
  });

  it('uses the configured keys instead of the defaults, and none with []', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { redactKeys: ['sessionId', 'pin'] });
    logger.info('auth_failed', 'custom', { session_id: 'x', SessionID: 'y', pin: '1234', token: 'kept' });
    await logger.close();
    logger = await startLogger(tmp.dir, { redactKeys: [] });
    logger.info('auth_failed', 'off', { token: 'visible' });
    await logger.close();
    const [custom, off] = readDir(tmp.dir);
    expect(custom?.details).toEqual({ session_id: REDACTED, SessionID: REDACTED, pin: REDACTED, token: 'kept' });
    expect(off?.details).toEqual({ token: 'visible' });
  });

  it('returns the same object when there is nothing to redact (no copy on the hot path)', () => {
    const redact = compileRedactor(DEFAULT_KEYS);
    const details = { a: 1, b: { c: [1, 2, { d: 'x' }] }, when: new Date(0) };
    expect(redact(details)).toBe(details);
    const secret = { a: { b: { token: 'x' } }, other: { big: [1, 2, 3] } };
    const out = redact(secret) as typeof secret;
    expect(out).not.toBe(secret);
    expect(out.other).toBe(secret.other);
  });

  it('writes errors as { name, message, code }, cycles as [Circular], and cuts objects nested too deep', () => {
    const redact = compileRedactor(DEFAULT_KEYS);
    const cyclic: Record<string, unknown> = { name: 'a' };
    cyclic['self'] = cyclic;
    let deep: Record<string, unknown> = { token: 'deepest' };
    for (let i = 0; i < MAX_DETAILS_DEPTH + 5; i++) deep = { next: deep };
    const out = redact({ err: Object.assign(new TypeError('bad'), { code: 'E_BAD' }), cyclic, deep }) as Record<string, unknown>;
    expect(out['err']).toEqual({ name: 'TypeError', message: 'bad', code: 'E_BAD' });
    expect(out['cyclic']).toEqual({ name: 'a', self: '[Circular]' });
    expect(JSON.stringify(out['deep'])).toContain('[Truncated]');
    expect(JSON.stringify(out['deep'])).not.toContain('deepest');
  });

  it('keeps the event when details cannot be read, replacing them', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    const hostile = {
      get boom(): string {
        throw new Error('getter');
      },
    };
    logger.info('agent_error', 'hostile', hostile);
    logger.info('agent_error', 'bigint', { n: 10n });
    logger.info('agent_error', 'not an object', 'text' as unknown as Record<string, unknown>);
    await logger.close();
    const records = readDir(tmp.dir);
    expect(records.map((r) => r.details)).toEqual([{ unserializable: true }, { n: 10 }, { value: 'text' }]);
    expect(records.map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  it('builds a pattern that joins words with -, _, . or nothing', () => {
    const pattern = redactPattern(['apiKey', 'client-id']) as RegExp;
    for (const key of ['apikey', 'api_key', 'API-KEY', 'x.api.key', 'clientId', 'CLIENT_ID']) expect(pattern.test(key), key).toBe(true);
    for (const key of ['api', 'key', 'apiKe', 'client']) expect(pattern.test(key), key).toBe(false);
    expect(redactPattern([])).toBeUndefined();
  });

  it('redacts what toJSON returns (an ORM record serializes through it), at any depth, and hides URL passwords', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    class User {
      readonly #data = { name: 'bob', password: 'hunter2', apiKey: 'AKIA-LEAK', profile: { token: 't-leak' } };
      toJSON(): unknown {
        return this.#data;
      }
    }
    class Wrapper {
      toJSON(): unknown {
        return { inner: new User() };
      }
    }
    const selfish = { name: 'self', secret: 's-leak', toJSON(): unknown { return this; } };
    logger.info('auth_failed', 'records', {
      user: new User(),
      list: [new User()],
      wrapped: new Wrapper(),
      selfish,
      when: new Date(0),
      url: new URL('https://ann:url-leak@collector.example.com/v1?x=1'),
    });
    await logger.close();
    const text = readFileSync(auditFiles(tmp.dir)[0] as string, 'utf8');
    for (const leak of ['hunter2', 'AKIA-LEAK', 't-leak', 's-leak', 'url-leak']) expect(text).not.toContain(leak);
    const user = { name: 'bob', password: REDACTED, apiKey: REDACTED, profile: { token: REDACTED } };
    expect(readDir(tmp.dir)[0]?.details).toEqual({
      user,
      list: [user],
      wrapped: { inner: user },
      selfish: { name: 'self', secret: REDACTED },
      when: '1970-01-01T00:00:00.000Z',
      url: `https://ann:${REDACTED}@collector.example.com/v1?x=1`,
    });
  });

  it('keeps the event when a toJSON throws, and passes Dates and Buffers through untouched (no copy)', async () => {
    const redact = compileRedactor(DEFAULT_KEYS);
    const details = { when: new Date(0), bytes: Buffer.from('ab') };
    expect(redact(details)).toBe(details);
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    const bad = {
      toJSON(): never {
        throw new Error('toJSON');
      },
    };
    expect(() => logger?.info('agent_error', 'throwing toJSON', { bad })).not.toThrow();
    await logger.close();
    expect(readDir(tmp.dir).map((r) => [r.message, r.details])).toEqual([['throwing toJSON', { unserializable: true }]]);
  });
});
