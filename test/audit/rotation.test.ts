import fs, { chmodSync, existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditFilesDeletedEvent, AuditLogger, AuditRotatedEvent } from '../../src/audit/index.js';
import type { OutpostError } from '../../src/errors.js';
import { tempDir } from '../helpers/ingest.js';
import { auditFiles, expectContiguous, localDate, readDir, readRecords, startLogger } from './helpers.js';

let tmp: ReturnType<typeof tempDir>;
let logger: AuditLogger | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await logger?.close();
  logger = undefined;
  tmp?.cleanup();
});

const DAY = 86_400_000;
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const mode = (path: string): number => statSync(path).mode & 0o777;

/** Creates `name` in `dir` last modified `days` ago. */
function oldFile(dir: string, name: string, days: number, content = '{}\n'): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  const t = (Date.now() - days * DAY) / 1000;
  utimesSync(path, t, t);
  return path;
}

describe('rotation', () => {
  it('rotates at maxSizeMB into numbered files, losing and duplicating no line (seq is contiguous across files)', async () => {
    tmp = tempDir();
    const maxBytes = 16 * 1024;
    logger = await startLogger(tmp.dir, { maxSizeMB: maxBytes / 1024 / 1024, bufferSize: 10 });
    const rotated: AuditRotatedEvent[] = [];
    logger.on('rotated', (e) => rotated.push(e));
    const first = logger.currentFile as string;
    expect(basename(first)).toBe(`audit.${localDate()}.1.log`);
    const total = 3_000;
    let biggestBatch = 0;
    let batchStart = statSync(first).size;
    for (let i = 0; i < total; i++) {
      logger.info('chunk_uploaded', `event ${i}`, { i, pad: 'x'.repeat(i % 97) });
      if (i % 10 === 9) {
        const size = statSync(logger.currentFile as string).size;
        biggestBatch = Math.max(biggestBatch, size - batchStart);
        await tick(); // rotation happens between ticks, as in a daemon
        batchStart = statSync(logger.currentFile as string).size;
      }
    }
    await logger.close();
    const files = auditFiles(tmp.dir);
    expect(files.length).toBeGreaterThanOrEqual(20);
    expect(files[0]).toBe(first);
    expect(rotated.map((e) => e.to)).toEqual(files.slice(1));
    expect(rotated.map((e) => e.from)).toEqual(files.slice(0, -1));
    const records = readRecords(files);
    expect(records).toHaveLength(total);
    expectContiguous(records);
    expect(records.map((r) => r.message)).toEqual(Array.from({ length: total }, (_, i) => `event ${i}`));
    for (const file of files) {
      // Approximate: a file ends with the batch that crossed the limit.
      expect(statSync(file).size).toBeLessThan(maxBytes + biggestBatch);
      expect(mode(file)).toBe(0o600);
    }
    for (const file of files.slice(0, -1)) expect(statSync(file).size).toBeGreaterThanOrEqual(maxBytes);
    expect(logger.stats().rotations).toBe(files.length - 1);
  });

  it('creates a missing directory 0700 and the files 0600, and tightens an existing file readable by others', async () => {
    tmp = tempDir();
    const dir = join(tmp.dir, 'nested', 'audit');
    logger = await startLogger(dir);
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(tmp.dir, 'nested'))).toBe(0o700);
    expect(mode(logger.currentFile as string)).toBe(0o600);
    await logger.close();
    const existing = join(tmp.dir, `audit.${localDate()}.1.log`);
    writeFileSync(existing, '', { mode: 0o644 });
    chmodSync(existing, 0o644);
    logger = await startLogger(tmp.dir);
    expect(logger.currentFile).toBe(existing);
    expect(mode(existing)).toBe(0o600);
  });

  it('continues a run in the day’s highest-numbered file after a restart, appending', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { maxSizeMB: 2 / 1024, bufferSize: 5 });
    for (let i = 0; i < 60; i++) {
      logger.info('scan_started', `run1 ${i}`);
      if (i % 5 === 4) await tick();
    }
    await logger.close();
    const before = auditFiles(tmp.dir);
    expect(before.length).toBeGreaterThan(1);
    logger = await startLogger(tmp.dir, { maxSizeMB: 2 / 1024 });
    expect(logger.currentFile).toBe(before.at(-1));
    logger.info('scan_started', 'run2 0');
    await logger.close();
    const records = readDir(tmp.dir);
    expect(records.map((r) => r.message)).toEqual([...Array.from({ length: 60 }, (_, i) => `run1 ${i}`), 'run2 0']);
    expectContiguous(records.slice(0, 60));
    expect(records[60]?.seq).toBe(1);
  });
});

describe('a rotation that fails', () => {
  it('keeps writing, and naming as current, the file it has; reports it once; retention keeps that file; the next rotation moves on', async () => {
    tmp = tempDir();
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    logger = await startLogger(tmp.dir, { bufferSize: 1, maxSizeMB: 1 / 1024, maxAgeDays: 1 });
    const errors: OutpostError[] = [];
    logger.on('error', (e) => errors.push(e));
    const rotated: AuditRotatedEvent[] = [];
    logger.on('rotated', (e) => rotated.push(e));
    const first = logger.currentFile as string;
    const blocked = join(tmp.dir, `audit.${localDate()}.2.log`);
    mkdirSync(blocked); // the next file cannot be opened (EISDIR; EMFILE and EACCES alike)
    for (let i = 0; i < 20; i++) logger.info('scan_started', `x${i} ${'x'.repeat(100)}`);
    await tick();
    await tick();
    expect(errors.map((e) => [e.code, (e.cause as NodeJS.ErrnoException).code])).toEqual([['OUTPOST_AUDIT_ROTATE_FAILED', 'EISDIR']]);
    expect(logger.currentFile).toBe(first);
    expect(logger.stats().file).toBe(first);
    // Quiet for a while: the active file's last write is old. Retention must still see it as active.
    const old = (Date.now() - 10 * DAY) / 1000;
    utimesSync(first, old, old);
    await expect(logger.deleteExpiredFiles()).resolves.toEqual([]);
    expect(existsSync(first)).toBe(true);
    logger.error('scan_failed', 'after the failed rotation');
    expect(readRecords([first]).at(-1)?.message).toBe('after the failed rotation');
    // The next write past the limit rotates again, to the next name.
    await tick();
    await tick();
    const third = join(tmp.dir, `audit.${localDate()}.3.log`);
    expect(rotated).toEqual([{ from: first, to: third }]);
    expect(logger.currentFile).toBe(third);
    logger.info('scan_started', 'in the third file');
    await logger.close();
    expect(errors).toHaveLength(1);
    const records = readRecords([first, third]);
    expectContiguous(records);
    expect(records.at(-1)?.message).toBe('in the third file');
  });

  it('closes the descriptor of the file it leaves once, not once more per failed attempt (no stray close of a reused descriptor)', async () => {
    tmp = tempDir();
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const closed: number[] = [];
    const close = fs.close;
    vi.spyOn(fs, 'close').mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      closed.push(fd);
      close(fd, cb);
    }) as typeof fs.close);
    logger = await startLogger(tmp.dir, { bufferSize: 1, maxSizeMB: 1 / 1024 });
    const errors: OutpostError[] = [];
    logger.on('error', (e) => errors.push(e));
    const rotated: AuditRotatedEvent[] = [];
    logger.on('rotated', (e) => rotated.push(e));
    const blocked = join(tmp.dir, `audit.${localDate()}.2.log`);
    mkdirSync(blocked);
    for (let i = 0; i < 15; i++) logger.info('scan_started', 'x'.repeat(100));
    await tick();
    await tick();
    rmdirSync(blocked);
    for (let i = 0; i < 15; i++) logger.info('scan_started', 'y'.repeat(100));
    await tick();
    await tick();
    await tick();
    expect(rotated).toHaveLength(1);
    expect(errors.map((e) => e.code)).toEqual(['OUTPOST_AUDIT_ROTATE_FAILED']);
    expect(closed).toHaveLength(new Set(closed).size);
  });
});

describe('a partial last line', () => {
  it('is ended before a new run appends, so that it does not swallow the run’s first line', async () => {
    tmp = tempDir();
    const file = join(tmp.dir, `audit.${localDate()}.1.log`);
    // What a run that died in the middle of a write (a full disk, a kill) leaves.
    writeFileSync(file, '{"severity":"INFO","seq":1,"message":"whole"}\n{"severity":"INFO","seq":2,"mess', { mode: 0o600 });
    logger = await startLogger(tmp.dir);
    expect(logger.currentFile).toBe(file);
    logger.info('agent_start', 'first of run 2');
    await logger.close();
    const lines = readFileSync(file, 'utf8').split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[1]).toBe('{"severity":"INFO","seq":2,"mess');
    expect(JSON.parse(lines[2] as string)).toMatchObject({ seq: 1, message: 'first of run 2' });
    expect(lines[3]).toBe('');
  });
});

describe('age retention', () => {
  it('deletes rotated files older than maxAgeDays at start, earlier runs’ included, and leaves everything not named as the logger names its files', async () => {
    tmp = tempDir();
    const d = tmp.dir;
    const expired = [oldFile(d, 'audit.2020-01-01.3.log', 40), oldFile(d, 'audit.2020-01-02.1.log', 31), oldFile(d, 'audit.2020-01-03.12.log', 45)];
    const kept = [
      oldFile(d, 'audit.2020-01-05.1.log', 29),
      // Names the logger never gives its files: not its own, so never deleted.
      oldFile(d, 'audit.7.log', 400),
      oldFile(d, 'audit.2020-13-01.1.log', 400),
      oldFile(d, 'audit.2020-01-01.0.log', 400),
      oldFile(d, 'audit.2020-01-01.01.log', 400),
      oldFile(d, 'audit.x.2020-01-01.1.log', 400),
      oldFile(d, 'notes.txt', 400),
      oldFile(d, 'other.2020-01-01.1.log', 400),
      oldFile(d, 'audit.2020-01-01.1.json', 400),
      oldFile(d, 'audit.log', 400),
    ];
    const target = oldFile(tmp.dir, 'target.txt', 400);
    symlinkSync(target, join(d, 'audit.2020-01-03.1.log'));
    mkdirSync(join(d, 'audit.2020-01-04.1.log'));
    const { AuditLogger } = await import('../../src/audit/index.js');
    logger = new AuditLogger({ agentId: 'a', logFile: join(d, 'audit.log'), maxAgeDays: 30 });
    const events: AuditFilesDeletedEvent[] = [];
    logger.on('files-deleted', (e) => events.push(e));
    await logger.start();
    expect(events).toEqual([{ files: expect.arrayContaining(expired) }]);
    expect(events[0]?.files).toHaveLength(expired.length);
    for (const f of expired) expect(existsSync(f), f).toBe(false);
    for (const f of kept) expect(existsSync(f), f).toBe(true);
    expect(existsSync(join(d, 'audit.2020-01-03.1.log'))).toBe(true);
    expect(existsSync(join(d, 'audit.2020-01-04.1.log'))).toBe(true);
    expect(logger.stats().deletedFiles).toBe(3);
  });

  it('never deletes the active file, however old its last write', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { maxAgeDays: 1 });
    const active = logger.currentFile as string;
    const old = (Date.now() - 10 * DAY) / 1000;
    utimesSync(active, old, old);
    const rotatedAway = oldFile(tmp.dir, 'audit.2020-02-02.1.log', 10);
    await expect(logger.deleteExpiredFiles()).resolves.toEqual([rotatedAway]);
    expect(existsSync(active)).toBe(true);
    logger.info('agent_start', 'still writing');
    await logger.close();
    expect(readFileSync(active, 'utf8')).toContain('still writing');
  });

  it('runs again every hour (fake timers)', async () => {
    tmp = tempDir();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    logger = await startLogger(tmp.dir, { maxAgeDays: 30 });
    const later = oldFile(tmp.dir, 'audit.2020-03-03.2.log', 31);
    const events: AuditFilesDeletedEvent[] = [];
    logger.on('files-deleted', (e) => events.push(e));
    vi.advanceTimersByTime(3_599_999);
    await tick();
    expect(events).toHaveLength(0);
    vi.advanceTimersByTime(1);
    await vi.waitFor(() => expect(events).toHaveLength(1), { interval: 1, timeout: 10_000 });
    expect(events[0]?.files).toEqual([later]);
    expect(existsSync(later)).toBe(false);
  });

  it('keeps every file with maxAgeDays: 0', async () => {
    tmp = tempDir();
    const ancient = oldFile(tmp.dir, 'audit.2001-01-01.1.log', 9_000);
    logger = await startLogger(tmp.dir, { maxAgeDays: 0 });
    await expect(logger.deleteExpiredFiles()).resolves.toEqual([]);
    expect(existsSync(ancient)).toBe(true);
  });

  it('reports a directory it cannot list as an error event, and keeps logging', async () => {
    tmp = tempDir();
    const dir = join(tmp.dir, 'logs');
    logger = await startLogger(dir, { maxAgeDays: 30, bufferSize: 1 });
    const errors: OutpostError[] = [];
    logger.on('error', (e) => errors.push(e));
    rmSync(dir, { recursive: true, force: true });
    await expect(logger.deleteExpiredFiles()).resolves.toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'OUTPOST_AUDIT_RETENTION_FAILED', cause: expect.objectContaining({ code: 'ENOENT' }) });
    expect(() => logger?.info('agent_start', 'after')).not.toThrow();
  });
});
