/**
 * The active file deleted (or its directory), or moved away, under a running
 * logger: real files, real unlink/rename. Writes to a deleted file succeed
 * and vanish with it, so the logger must notice, recreate the file (0600 in a
 * 0700 directory), write again what went to the deleted one, and say so.
 */
import { existsSync, readFileSync, renameSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditLogger, AuditWriteFailedEvent, AuditWriteRecoveredEvent } from '../../src/audit/index.js';
import { tempDir } from '../helpers/ingest.js';
import { expectContiguous, readRecords, startLogger } from './helpers.js';

let tmp: ReturnType<typeof tempDir>;
let logger: AuditLogger | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await logger?.close();
  logger = undefined;
  vi.restoreAllMocks();
  tmp?.cleanup();
});

interface Watch {
  failed: AuditWriteFailedEvent[];
  recovered: AuditWriteRecoveredEvent[];
  stderr: string[];
}

function watch(l: AuditLogger): Watch {
  const w: Watch = { failed: [], recovered: [], stderr: [] };
  l.on('write-failed', (e) => w.failed.push(e));
  l.on('write-recovered', (e) => w.recovered.push(e));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    w.stderr.push(String(chunk));
    return true;
  });
  return w;
}

const mode = (path: string): number => statSync(path).mode & 0o777;

describe('an active file that vanishes', () => {
  it('recreates a deleted file 0600 on flush(), writes again what went to the deleted one, and reports it', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { bufferSize: 10 });
    const w = watch(logger);
    logger.info('agent_start', 'before');
    await logger.flush();
    const active = logger.currentFile as string;
    unlinkSync(active); // an operator, a tmp cleaner, an external logrotate
    for (let i = 0; i < 25; i++) logger.info('scan_started', `after ${i}`);
    logger.error('scan_failed', 'important'); // written at once — to the deleted file
    await expect(logger.flush()).resolves.toBe(true);
    expect(existsSync(active)).toBe(true);
    expect(mode(active)).toBe(0o600);
    expect(w.failed).toHaveLength(1);
    expect(w.failed[0]?.error).toMatchObject({ code: 'OUTPOST_AUDIT_WRITE_FAILED', cause: expect.objectContaining({ code: 'ENOENT' }) });
    expect(w.recovered).toEqual([{ file: active, failedAttempts: 1, downtimeMs: expect.any(Number), droppedEvents: 0 }]);
    expect(w.stderr.join('')).toMatch(/was deleted/);
    logger.info('scan_started', 'later');
    await logger.close();
    const records = readRecords([active]);
    // Everything written since the last check (the one of the first flush) is written again: nothing is lost, in order.
    expect(records.map((r) => r.message.slice(0, 12))).toEqual(['before', ...Array.from({ length: 25 }, (_, i) => `after ${i}`), 'important', 'The audit fi', 'later']);
    expect(records[27]).toMatchObject({ severity: 'WARN', type: 'agent_error', details: { reason: 'audit_file_vanished', how: 'deleted', rewritten_events: 27 } });
    expectContiguous(records);
    expect(logger.stats()).toMatchObject({ droppedEvents: 0, pendingEvents: 0 });
  });

  it('recreates a deleted directory 0700 with the file', async () => {
    tmp = tempDir();
    const dir = join(tmp.dir, 'audit');
    logger = await startLogger(dir, { bufferSize: 5 });
    watch(logger);
    logger.info('agent_start', 'before');
    await logger.flush();
    const active = logger.currentFile as string;
    rmSync(dir, { recursive: true, force: true });
    for (let i = 0; i < 7; i++) logger.info('scan_started', `after ${i}`);
    await expect(logger.flush()).resolves.toBe(true);
    expect(mode(dirname(active))).toBe(0o700);
    expect(mode(active)).toBe(0o600);
    await logger.close();
    const records = readRecords([active]);
    expect(records.filter((r) => r.type !== 'agent_error').map((r) => r.message)).toEqual(['before', ...Array.from({ length: 7 }, (_, i) => `after ${i}`)]);
    expectContiguous(records);
  });

  it('checks by itself when a batch is written, at most once per second (fake Date)', async () => {
    tmp = tempDir();
    vi.useFakeTimers({ toFake: ['Date'] });
    logger = await startLogger(tmp.dir, { bufferSize: 1 });
    watch(logger);
    const active = logger.currentFile as string;
    logger.info('agent_start', 'before');
    unlinkSync(active);
    logger.info('scan_started', 'a');
    vi.advanceTimersByTime(999);
    logger.info('scan_started', 'b');
    expect(existsSync(active)).toBe(false); // no check yet: a stat per batch would cost every call
    vi.advanceTimersByTime(1);
    logger.info('scan_started', 'c');
    const records = readRecords([active]);
    expect(records.map((r) => r.message.slice(0, 12))).toEqual(['before', 'a', 'b', 'c', 'The audit fi']);
    expectContiguous(records);
  });

  it('does not write again what went to a file moved away (it is still there): goes on at the path', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { bufferSize: 1 });
    const w = watch(logger);
    const active = logger.currentFile as string;
    logger.info('agent_start', 'before');
    renameSync(active, `${active}.moved`);
    logger.info('scan_started', 'a');
    await expect(logger.flush()).resolves.toBe(true);
    logger.info('scan_started', 'b');
    await logger.close();
    expect(readRecords([`${active}.moved`]).map((r) => r.message)).toEqual(['before', 'a']);
    const records = readRecords([active]);
    expect(records.map((r) => r.message.slice(0, 12))).toEqual(['The audit fi', 'b']);
    expect(records[0]?.details).toMatchObject({ reason: 'audit_file_vanished', how: 'replaced', rewritten_events: 0 });
    expect(w.recovered).toHaveLength(1);
    expect(readFileSync(active, 'utf8')).not.toContain('"before"');
  });
});
