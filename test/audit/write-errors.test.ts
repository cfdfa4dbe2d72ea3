/**
 * Write failures with real ENOSPC from the kernel: the active file is a
 * symlink to /dev/full (every write fails), or lives on a small tmpfs that
 * is filled up. Logging must not throw; failures are counted, evented and
 * printed; the logger recovers once the file is writable again.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditDroppedEvent, AuditLogger, AuditWriteFailedEvent, AuditWriteRecoveredEvent } from '../../src/audit/index.js';
import { tempDir } from '../helpers/ingest.js';
import { auditFiles, expectContiguous, localDate, readDir, readRecords, startLogger } from './helpers.js';

let tmp: ReturnType<typeof tempDir>;
let logger: AuditLogger | undefined;
let mounted: string | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await logger?.close();
  logger = undefined;
  vi.restoreAllMocks();
  if (mounted !== undefined) execFileSync('umount', [mounted], { stdio: 'ignore' });
  mounted = undefined;
  tmp?.cleanup();
});

interface Watch {
  failed: AuditWriteFailedEvent[];
  recovered: AuditWriteRecoveredEvent[];
  dropped: AuditDroppedEvent[];
  stderr: string[];
}

function watch(l: AuditLogger): Watch {
  const w: Watch = { failed: [], recovered: [], dropped: [], stderr: [] };
  l.on('write-failed', (e) => w.failed.push(e));
  l.on('write-recovered', (e) => w.recovered.push(e));
  l.on('dropped', (e) => w.dropped.push(e));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    w.stderr.push(String(chunk));
    return true;
  });
  return w;
}

/** Starts a logger whose active file is a symlink to /dev/full. */
async function startOnDevFull(ctx: { skip: () => void }, options: Parameters<typeof startLogger>[1] = {}): Promise<{ logger: AuditLogger; link: string } | undefined> {
  if (!existsSync('/dev/full')) {
    console.warn('skipping: no /dev/full on this system');
    ctx.skip();
    return undefined;
  }
  tmp = tempDir();
  const link = join(tmp.dir, `audit.${localDate()}.1.log`);
  symlinkSync('/dev/full', link);
  const l = await startLogger(tmp.dir, { bufferSize: 1000, ...options });
  expect(l.currentFile).toBe(link);
  return { logger: l, link };
}

/** Mounts a tmpfs of `size` in a new temp dir (unmounted after the test); skips the test, saying why, where that is not allowed. */
function mountTmpfs(ctx: { skip: () => void }, size: string): string | undefined {
  tmp = tempDir();
  const mnt = join(tmp.dir, 'mnt');
  mkdirSync(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt], { stdio: 'ignore' });
    mounted = mnt;
    return mnt;
  } catch {
    console.warn('skipping a tmpfs disk-full test: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)');
    ctx.skip();
    return undefined;
  }
}

/** Fills `dir`'s filesystem with `ballast` but for about `leaveBytes`. */
function fillDisk(ballast: string, leaveBytes: number): void {
  let size = 0;
  try {
    for (;;) {
      writeFileSync(ballast, Buffer.alloc(size + 4096));
      size += 4096;
    }
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
  }
  writeFileSync(ballast, Buffer.alloc(Math.max(0, size - leaveBytes)));
}

describe('write errors', () => {
  it('never throws into the caller: counts the failure, emits write-failed, prints on stderr, and holds the events', async (ctx) => {
    const started = await startOnDevFull(ctx);
    if (started === undefined) return;
    logger = started.logger;
    const w = watch(logger);
    expect(() => logger?.error('agent_error', 'e1')).not.toThrow();
    expect(w.failed).toHaveLength(1);
    expect(w.failed[0]).toMatchObject({ file: started.link, failedAttempts: 1, heldEvents: 1 });
    expect(w.failed[0]?.error).toMatchObject({ name: 'AuditError', code: 'OUTPOST_AUDIT_WRITE_FAILED', file: started.link, cause: expect.objectContaining({ code: 'ENOSPC' }) });
    expect(w.stderr.join('')).toMatch(/outpost audit: cannot write .*audit\..*\.1\.log: ENOSPC.*retrying every 1 s/);
    // While failing, logging goes on (without attempting a write per call).
    for (let i = 2; i <= 4; i++) expect(() => logger?.info('scan_started', `e${i}`)).not.toThrow();
    logger.critical('agent_error', 'e5');
    expect(w.failed).toHaveLength(1);
    expect(logger.stats()).toMatchObject({ writeErrors: 1, pendingEvents: 5, writtenEvents: 0, droppedEvents: 0 });
    await expect(logger.flush()).resolves.toBe(false);
    expect(w.failed).toHaveLength(2);
    expect(w.failed[1]).toMatchObject({ failedAttempts: 2, heldEvents: 5 });
    expect(w.stderr.filter((l) => l.includes('cannot write'))).toHaveLength(1);
  });

  it('recovers when the file is writable again: writes everything held, in order, then a notice', async (ctx) => {
    const started = await startOnDevFull(ctx);
    if (started === undefined) return;
    logger = started.logger;
    const w = watch(logger);
    logger.error('agent_error', 'e1');
    logger.info('scan_started', 'e2');
    await logger.flush();
    unlinkSync(started.link); // the path becomes writable (a fresh file is created there)
    logger.info('scan_started', 'e3');
    await expect(logger.flush()).resolves.toBe(true);
    expect(w.recovered).toEqual([{ file: started.link, failedAttempts: 2, downtimeMs: expect.any(Number), droppedEvents: 0 }]);
    expect(w.stderr.join('')).toMatch(/writing .* works again after 2 failed attempt/);
    expect(statSync(started.link).isFile()).toBe(true);
    expect(statSync(started.link).mode & 0o777).toBe(0o600);
    logger.info('scan_started', 'e4');
    await logger.close();
    const records = readDir(tmp.dir);
    expect(records.map((r) => r.message.slice(0, 20))).toEqual(['e1', 'e2', 'e3', 'Audit log writes fai', 'e4']);
    expect(records[3]).toMatchObject({ severity: 'WARN', type: 'agent_error', details: { reason: 'audit_write_failed', failed_attempts: 2, dropped_events: 0 } });
    expectContiguous(records);
    expect(logger.stats()).toMatchObject({ writeErrors: 2, writtenEvents: 5, pendingEvents: 0, droppedEvents: 0 });
  });

  it('retries on its own every second (fake timers)', async (ctx) => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    const started = await startOnDevFull(ctx);
    if (started === undefined) return;
    logger = started.logger;
    const w = watch(logger);
    logger.error('agent_error', 'e1');
    expect(w.failed).toHaveLength(1);
    vi.advanceTimersByTime(999);
    expect(w.failed).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(w.failed).toHaveLength(2);
    unlinkSync(started.link);
    vi.advanceTimersByTime(1_000);
    expect(w.recovered).toHaveLength(1);
    expect(readRecords([started.link]).map((r) => r.message)).toEqual(['e1']);
  });

  it('drops new events (counted, with a gap in seq) once about 32 MB wait for a failing file', async (ctx) => {
    const started = await startOnDevFull(ctx);
    if (started === undefined) return;
    logger = started.logger;
    const w = watch(logger);
    const big = 'x'.repeat(1024 * 1024);
    logger.error('agent_error', 'big 1'); // the file is failing from here on
    for (let i = 2; i <= 40; i++) logger.info('scan_completed', `big ${i}`, { big });
    await logger.flush();
    const dropped = logger.stats().droppedEvents;
    expect(dropped).toBeGreaterThan(0);
    expect(dropped).toBeLessThan(10);
    expect(w.dropped.every((d) => d.reason === 'memory-limit' && d.events === 1)).toBe(true);
    expect(w.dropped).toHaveLength(dropped);
    expect(w.stderr.join('')).toMatch(/new events are dropped until it is writable/);
    unlinkSync(started.link);
    await expect(logger.flush()).resolves.toBe(true);
    expect(w.recovered[0]?.droppedEvents).toBe(dropped);
    await logger.close();
    const records = readDir(tmp.dir);
    const kept = 40 - dropped;
    expect(records.slice(0, kept).map((r) => r.seq)).toEqual(Array.from({ length: kept }, (_, i) => i + 1));
    expect(records[kept]).toMatchObject({ seq: 41, type: 'agent_error', details: { dropped_events: dropped } });
  });

  it('keeps holding, and failing, while the path cannot even be opened', async (ctx) => {
    const started = await startOnDevFull(ctx);
    if (started === undefined) return;
    logger = started.logger;
    const w = watch(logger);
    logger.error('agent_error', 'e1');
    unlinkSync(started.link);
    mkdirSync(started.link); // EISDIR: the retry can only use the descriptor it has, which still fails
    await expect(logger.flush()).resolves.toBe(false);
    expect(w.failed).toHaveLength(2);
    expect(w.recovered).toHaveLength(0);
    expect(logger.stats()).toMatchObject({ pendingEvents: 1, writtenEvents: 0 });
  });

  it('makes a last attempt at close, and loses nothing when the file is writable by then', async (ctx) => {
    const started = await startOnDevFull(ctx);
    if (started === undefined) return;
    logger = started.logger;
    const w = watch(logger);
    logger.error('agent_error', 'e1');
    logger.info('scan_started', 'e2');
    unlinkSync(started.link);
    await logger.close();
    expect(w.dropped).toEqual([]);
    expect(readDir(tmp.dir).map((r) => r.message.slice(0, 10))).toEqual(['e1', 'e2', 'Audit log ']);
  });

  it('counts events still unwritable at close as dropped', async (ctx) => {
    const started = await startOnDevFull(ctx);
    if (started === undefined) return;
    logger = started.logger;
    const w = watch(logger);
    logger.info('scan_started', 'a');
    logger.error('agent_error', 'b');
    logger.info('scan_started', 'c');
    await logger.close();
    expect(w.dropped).toEqual([{ events: 3, reason: 'unwritable' }]);
    expect(logger.stats().droppedEvents).toBe(3);
    expect(w.stderr.join('')).toMatch(/3 audit event\(s\) could not be written/);
  });

  it('fills a real small filesystem, then recovers when space is freed, losing nothing', async (ctx) => {
    const mnt = mountTmpfs(ctx, '256k');
    if (mnt === undefined) return;
    const ballast = join(mnt, 'ballast');
    logger = await startLogger(mnt, { bufferSize: 20, maxSizeMB: 64 });
    const w = watch(logger);
    let ballastBytes = 0;
    try {
      // Fill the disk almost completely, then log until a write fails.
      for (;;) {
        writeFileSync(ballast, Buffer.alloc(ballastBytes + 16 * 1024));
        ballastBytes += 16 * 1024;
      }
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    let n = 0;
    while (w.failed.length === 0 && n < 5_000) logger.info('scan_completed', `event ${++n}`, { pad: 'y'.repeat(200) });
    expect(w.failed[0]?.error.cause).toMatchObject({ code: 'ENOSPC' });
    for (let i = 0; i < 30; i++) logger.info('scan_completed', `event ${++n}`);
    rmSync(ballast);
    await expect(logger.flush()).resolves.toBe(true);
    expect(w.recovered).toHaveLength(1);
    await logger.close();
    const records = readRecords(auditFiles(mnt));
    expect(records.filter((r) => r.type === 'scan_completed').map((r) => r.message)).toEqual(Array.from({ length: n }, (_, i) => `event ${i + 1}`));
    expectContiguous(records);
    expect(logger.stats().droppedEvents).toBe(0);
  });

  it('cuts a batch written in part back to the last whole line when it closes with the disk still full, so a restart appends cleanly', async (ctx) => {
    const mnt = mountTmpfs(ctx, '128k');
    if (mnt === undefined) return;
    logger = await startLogger(mnt, { bufferSize: 1 });
    const w = watch(logger);
    fillDisk(join(mnt, 'ballast'), 20 * 1024);
    let n = 0;
    while (w.failed.length === 0 && n < 10_000) logger.info('scan_started', `run1 event ${++n}`, { pad: 'p'.repeat(300) });
    expect(w.failed[0]?.error.cause).toMatchObject({ code: 'ENOSPC' });
    const file = logger.currentFile as string;
    await logger.close(); // the disk is still full: the last event is lost, and so is its partial line
    const text = readFileSync(file, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const run1 = readRecords([file]);
    expect(run1.map((r) => r.message)).toEqual(Array.from({ length: n - 1 }, (_, i) => `run1 event ${i + 1}`));
    expect(logger.stats().droppedEvents).toBe(1);
    rmSync(join(mnt, 'ballast')); // space freed; the agent restarts the same day
    logger = await startLogger(mnt, { bufferSize: 1 });
    expect(logger.currentFile).toBe(file);
    logger.info('agent_start', 'run2 first event');
    await logger.close();
    expect(readRecords([file]).at(-1)).toMatchObject({ seq: 1, message: 'run2 first event' });
  });
});
