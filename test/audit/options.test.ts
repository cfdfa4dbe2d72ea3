import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuditLogger, auditLoggerDefaults, resolveAuditLoggerOptions, type AuditLoggerOptions } from '../../src/audit/index.js';
import { InvalidOptionError } from '../../src/errors.js';
import { RetryPolicy } from '../../src/transport/index.js';

const base: AuditLoggerOptions = { agentId: 'agent-1' };
const bad = (options: Record<string, unknown>): (() => unknown) => () => resolveAuditLoggerOptions({ ...base, ...options } as AuditLoggerOptions);

describe('AuditLogger options', () => {
  it('fills every default, resolves logFile to an absolute path, and freezes the result', () => {
    const o = resolveAuditLoggerOptions(base);
    expect(o).toMatchObject({
      agentId: 'agent-1',
      tenantId: undefined,
      logFile: join(homedir(), '.outpost', 'audit.log'),
      maxSizeMB: 100,
      maxAgeDays: 30,
      bufferSize: 100,
      flushIntervalMs: 5_000,
      remoteEndpoint: undefined,
      remoteHeaders: {},
      remoteQueueBatches: 100,
      remoteTimeoutMs: 10_000,
      remoteCloseTimeoutMs: 5_000,
      redactKeys: ['authorization', 'token', 'password', 'apiKey', 'secret'],
      verbose: false,
    });
    expect(o.remoteRetryPolicy).toBeInstanceOf(RetryPolicy);
    expect(o.remoteRetryPolicy.options).toMatchObject({ retryDelayMs: 1_000, maxRetryDelayMs: 60_000, jitter: 'full' });
    expect(Object.isFrozen(o)).toBe(true);
    expect(Object.isFrozen(auditLoggerDefaults)).toBe(true);
    expect(resolveAuditLoggerOptions({ ...base, logFile: 'logs/audit.log' }).logFile).toBe(resolve('logs/audit.log'));
  });

  it('accepts the documented ranges and forms', () => {
    const policy = new RetryPolicy({ retryDelayMs: 1 });
    const o = resolveAuditLoggerOptions({
      agentId: 'a',
      tenantId: 't',
      logFile: '/var/lib/agent/audit.trail.jsonl',
      maxSizeMB: 0.001,
      maxAgeDays: 0,
      bufferSize: 1,
      flushIntervalMs: 1,
      remoteEndpoint: new URL('https://collector.example.com/v1/audit?x=1'),
      remoteHeaders: { Authorization: 'Bearer x' },
      remoteQueueBatches: 1,
      remoteTimeoutMs: 1,
      remoteCloseTimeoutMs: 0,
      remoteRetryPolicy: policy,
      redactKeys: [],
      verbose: true,
    });
    expect(o.remoteEndpoint?.href).toBe('https://collector.example.com/v1/audit?x=1');
    expect(o.remoteHeaders).toEqual({ authorization: 'Bearer x' });
    expect(o.remoteRetryPolicy).toBe(policy);
    expect(resolveAuditLoggerOptions({ ...base, logFile: '/x/audit', remoteEndpoint: 'http://127.0.0.1:9/a', remoteRetryPolicy: { retryDelayMs: 7 } }).remoteRetryPolicy.options.retryDelayMs).toBe(7);
  });

  it('accepts maxSizeMB of exactly 1 KiB (1/1024 MiB), the smallest size it documents', () => {
    expect(resolveAuditLoggerOptions({ ...base, maxSizeMB: 1 / 1024 }).maxSizeMB).toBe(1 / 1024);
    expect(bad({ maxSizeMB: 1 / 1024 - 1e-9 })).toThrow(/`maxSizeMB`/);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['agentId missing', { agentId: undefined }, /`agentId` to be a non-empty string, got undefined/],
    ['agentId empty', { agentId: '' }, /`agentId` to be a non-empty string, got "" \(string\)/],
    ['tenantId empty', { tenantId: '' }, /`tenantId` to be a non-empty string/],
    ['tenantId number', { tenantId: 5 }, /`tenantId` to be a non-empty string, got 5 \(number\)/],
    ['logFile empty', { logFile: '' }, /`logFile` to be a non-empty string/],
    ['logFile a directory', { logFile: '/var/log/' }, /`logFile` to be a file path/],
    ['logFile odd name', { logFile: '/var/log/audit?.log' }, /`logFile` to be a file path/],
    ['logFile one-letter extension', { logFile: '/var/log/audit.x' }, /extension of 2\+ characters/],
    ['logFile colon in the directory', { logFile: '/var/a:b/audit.log' }, /`logFile` to be a path without/],
    ['maxSizeMB zero', { maxSizeMB: 0 }, /`maxSizeMB` to be a number of MiB from 1\/1024 = 0\.0009765625 \(1 KiB\) to 1048576 \(1 TiB\), got 0 \(number\)/],
    ['maxSizeMB too small', { maxSizeMB: 0.0005 }, /`maxSizeMB`/],
    ['maxSizeMB too large', { maxSizeMB: 2e6 }, /`maxSizeMB`/],
    ['maxSizeMB a string', { maxSizeMB: '10' }, /`maxSizeMB`.*got "10" \(string\)/],
    ['maxAgeDays negative', { maxAgeDays: -1 }, /`maxAgeDays` to be a number from 0 to 36500, got -1/],
    ['maxAgeDays NaN', { maxAgeDays: Number.NaN }, /`maxAgeDays`/],
    ['bufferSize zero', { bufferSize: 0 }, /`bufferSize` to be an integer from 1 to 100000, got 0/],
    ['bufferSize fractional', { bufferSize: 1.5 }, /`bufferSize`/],
    ['flushIntervalMs zero', { flushIntervalMs: 0 }, /`flushIntervalMs` to be an integer from 1 to 2147483647, got 0/],
    ['flushIntervalMs beyond a timer', { flushIntervalMs: 2 ** 31 }, /`flushIntervalMs`/],
    ['remoteEndpoint not a URL', { remoteEndpoint: 'collector' }, /`remoteEndpoint` to be an absolute http\(s\) URL/],
    ['remoteEndpoint ftp', { remoteEndpoint: 'ftp://x/y' }, /`remoteEndpoint` to be an http: or https: URL/],
    ['remoteEndpoint with credentials', { remoteEndpoint: 'https://u:p@x/y' }, /without credentials \(put them in `remoteHeaders`\)/],
    ['remoteEndpoint with a fragment', { remoteEndpoint: 'https://x/y#z' }, /without a fragment/],
    ['remoteHeaders an array', { remoteEndpoint: 'https://x', remoteHeaders: [] }, /`remoteHeaders` to be an object of header names/],
    ['remoteHeaders bad name', { remoteEndpoint: 'https://x', remoteHeaders: { 'a b': 'x' } }, /header names made of token characters/],
    ['remoteHeaders reserved', { remoteEndpoint: 'https://x', remoteHeaders: { 'Content-Type': 'x' } }, /the logger sets those/],
    ['remoteHeaders names that differ only in case', { remoteEndpoint: 'https://x', remoteHeaders: { Authorization: 'Bearer a', authorization: 'Bearer b' } }, /header names that differ in more than case \(`Authorization` is given too\), got "authorization"/],
    ['remoteHeaders number value', { remoteEndpoint: 'https://x', remoteHeaders: { a: 5 } }, /`remoteHeaders\.a` to be a string without CR, LF or NUL/],
    ['remoteQueueBatches zero', { remoteEndpoint: 'https://x', remoteQueueBatches: 0 }, /`remoteQueueBatches` to be an integer from 1/],
    ['remoteTimeoutMs zero', { remoteEndpoint: 'https://x', remoteTimeoutMs: 0 }, /`remoteTimeoutMs` to be an integer from 1/],
    ['remoteCloseTimeoutMs negative', { remoteEndpoint: 'https://x', remoteCloseTimeoutMs: -1 }, /`remoteCloseTimeoutMs` to be an integer from 0/],
    ['remoteRetryPolicy a string', { remoteEndpoint: 'https://x', remoteRetryPolicy: 'fast' }, /`remoteRetryPolicy` to be a RetryPolicy or its options/],
    ['remoteRetryPolicy bad options', { remoteEndpoint: 'https://x', remoteRetryPolicy: { retryDelayMs: -1 } }, /`retryDelayMs`/],
    ['redactKeys a string', { redactKeys: 'token' }, /`redactKeys` to be an array of key names/],
    ['redactKeys with an empty name', { redactKeys: ['token', ''] }, /`redactKeys`/],
    ['redactKeys punctuation only', { redactKeys: ['-_'] }, /`redactKeys`/],
    ['verbose a string', { verbose: 'yes' }, /`verbose` to be a boolean/],
    ['an unknown option', { maxSizeMb: 10 }, /Unknown option `maxSizeMb` for AuditLogger/],
  ])('rejects %s', (_name, options, message) => {
    expect(bad(options)).toThrow(InvalidOptionError);
    expect(bad(options)).toThrow(message);
  });

  it.each(['remoteHeaders', 'remoteQueueBatches', 'remoteTimeoutMs', 'remoteCloseTimeoutMs', 'remoteRetryPolicy'])('rejects %s without remoteEndpoint, naming both', (key) => {
    const value = key === 'remoteHeaders' ? { a: 'b' } : key === 'remoteRetryPolicy' ? {} : 5;
    expect(bad({ [key]: value })).toThrow(new RegExp(`\`${key}\` is set but \`remoteEndpoint\` is not`));
  });

  it('never echoes a header value (usually a credential) in an error', () => {
    expect(bad({ remoteEndpoint: 'https://x', remoteHeaders: { authorization: 'Bearer s3cr3t\n' } })).toThrow(/remoteHeaders\.authorization/);
    expect(bad({ remoteEndpoint: 'https://x', remoteHeaders: { authorization: 'Bearer s3cr3t\n' } })).not.toThrow(/s3cr3t/);
  });

  it('rejects options that are not an object', () => {
    expect(() => new AuditLogger(null as unknown as AuditLoggerOptions)).toThrow(/must be an object with at least `agentId`/);
  });
});

describe('installShutdownHandlers options', () => {
  it.each<[string, Record<string, unknown>, RegExp]>([
    ['SIGKILL', { signals: ['SIGKILL'] }, /catchable signal names/],
    ['an unknown signal', { signals: ['SIGNOPE'] }, /catchable signal names/],
    ['no signal', { signals: [] }, /non-empty array/],
    ['a negative timeout', { timeoutMs: -1 }, /`timeoutMs` to be an integer from 0/],
    ['an unknown option', { signal: 'SIGTERM' }, /Unknown option `signal` for installShutdownHandlers/],
  ])('rejects %s', (_name, options, message) => {
    const logger = new AuditLogger({ agentId: 'a', logFile: '/nonexistent/audit.log' });
    const before = process.listenerCount('SIGTERM');
    expect(() => logger.installShutdownHandlers(options)).toThrow(message);
    expect(process.listenerCount('SIGTERM')).toBe(before);
  });
});
