import fs, { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AuditLogger, type AuditDroppedEvent } from '../../src/audit/index.js';
import { IllegalStateError } from '../../src/errors.js';
import { startServer } from '../helpers/http.js';
import { tempDir } from '../helpers/ingest.js';
import { readDir, startLogger } from './helpers.js';

let tmp: ReturnType<typeof tempDir>;
let logger: AuditLogger | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await logger?.close();
  logger = undefined;
  vi.restoreAllMocks();
  tmp?.cleanup();
});

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('AuditLogger lifecycle', () => {
  it('moves idle → running → closing → closed; start and close are idempotent; wrong-state calls throw IllegalStateError', async () => {
    tmp = tempDir();
    logger = new AuditLogger({ agentId: 'a', logFile: join(tmp.dir, 'audit.log') });
    expect(logger.state).toBe('idle');
    expect(logger.currentFile).toBeUndefined();
    await expect(logger.flush()).rejects.toMatchObject({ code: 'OUTPOST_ILLEGAL_STATE', state: 'idle' });
    await expect(logger.deleteExpiredFiles()).rejects.toThrow(IllegalStateError);
    const starting = logger.start();
    expect(logger.start()).toBe(starting);
    await starting;
    await logger.start();
    expect(logger.state).toBe('running');
    const closing = logger.close();
    expect(logger.state).toBe('closing');
    expect(logger.close()).toBe(closing);
    await closing;
    expect(logger.state).toBe('closed');
    await logger.close();
    await expect(logger.start()).rejects.toMatchObject({ code: 'OUTPOST_ILLEGAL_STATE', state: 'closed' });
    await expect(logger.flush()).rejects.toThrow(/while closed/);
    expect(() => logger?.installShutdownHandlers()).toThrow(IllegalStateError);
  });

  it('closes on `await using`', async () => {
    tmp = tempDir();
    let seen: AuditLogger | undefined;
    {
      await using l = await startLogger(tmp.dir);
      seen = l;
      l.info('agent_start', 'scoped');
    }
    expect(seen.state).toBe('closed');
    expect(readDir(tmp.dir).map((r) => r.message)).toEqual(['scoped']);
  });

  it('rejects start() with OUTPOST_AUDIT_OPEN_FAILED when the file cannot be created, stays idle, and can start later', async () => {
    tmp = tempDir();
    const blocker = join(tmp.dir, 'not-a-dir');
    writeFileSync(blocker, '');
    logger = new AuditLogger({ agentId: 'a', logFile: join(blocker, 'audit.log') });
    logger.info('agent_start', 'held');
    await expect(logger.start()).rejects.toMatchObject({ name: 'AuditError', code: 'OUTPOST_AUDIT_OPEN_FAILED', file: join(blocker, 'audit.log'), cause: expect.objectContaining({ code: expect.stringMatching(/ENOTDIR|EEXIST/) }) });
    expect(logger.state).toBe('idle');
    const dropped: AuditDroppedEvent[] = [];
    logger.on('dropped', (e) => dropped.push(e));
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await logger.close();
    expect(dropped).toEqual([{ events: 1, reason: 'unwritable' }]);
    expect(logger.stats().droppedEvents).toBe(1);
  });

  it('drops events logged after close() without throwing: counted, evented, one process warning', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    const dropped: AuditDroppedEvent[] = [];
    logger.on('dropped', (e) => dropped.push(e));
    await logger.close();
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      expect(() => logger?.info('agent_stop', 'late 1')).not.toThrow();
      expect(() => logger?.withContext({ jobId: 'j' }).error('job_failed', 'late 2')).not.toThrow();
      await tick();
      await tick();
    } finally {
      process.off('warning', onWarning);
    }
    expect(dropped).toEqual([
      { events: 1, reason: 'after-close' },
      { events: 1, reason: 'after-close' },
    ]);
    expect(logger.stats()).toMatchObject({ droppedEvents: 2, loggedEvents: 0 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ code: 'OUTPOST_ILLEGAL_STATE' });
    expect(readDir(tmp.dir)).toEqual([]);
  });

  it('leaves no timer behind after close, with the batch, retention and rotation timers armed (fake timers)', async () => {
    tmp = tempDir();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    logger = await startLogger(tmp.dir, { maxAgeDays: 30, flushIntervalMs: 5_000 });
    logger.info('agent_start', 'armed');
    expect(vi.getTimerCount()).toBe(3);
    await logger.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(readDir(tmp.dir)).toHaveLength(1);
  });

  it('leaves no handle behind after close, with shipping mid-retry to a dead endpoint', async () => {
    tmp = tempDir();
    const dead = await startServer(() => undefined);
    const { port } = dead.server.address() as AddressInfo;
    await dead.close();
    await tick();
    const before = process.getActiveResourcesInfo();
    logger = await startLogger(tmp.dir, { bufferSize: 1, remoteEndpoint: `http://127.0.0.1:${port}/`, remoteCloseTimeoutMs: 50, remoteRetryPolicy: { retryDelayMs: 10_000, jitter: 'none' } });
    let retried = false;
    logger.on('ship-retry', () => (retried = true));
    logger.info('agent_start', 'one');
    await expect.poll(() => retried, { timeout: 10_000 }).toBe(true);
    const during = process.getActiveResourcesInfo();
    await logger.close();
    await tick();
    // Nothing the logger opened is left: no resource kind outnumbers what was there before it started.
    const count = (list: readonly string[], kind: string): number => list.filter((r) => r === kind).length;
    const after = process.getActiveResourcesInfo();
    for (const kind of new Set([...after, ...during])) expect(count(after, kind), kind).toBeLessThanOrEqual(count(before, kind));
  });

  it('registers one exit listener from its creation (events logged before start() are accounted for) and removes it, and the signal handlers, on close', async () => {
    tmp = tempDir();
    const exit = process.listenerCount('exit');
    const term = process.listenerCount('SIGTERM');
    const int = process.listenerCount('SIGINT');
    logger = new AuditLogger({ agentId: 'a', logFile: join(tmp.dir, 'audit.log') });
    expect(process.listenerCount('exit')).toBe(exit + 1);
    await logger.start();
    expect(process.listenerCount('exit')).toBe(exit + 1);
    logger.installShutdownHandlers();
    logger.installShutdownHandlers(); // the second set replaces the first
    expect(process.listenerCount('SIGTERM')).toBe(term + 1);
    expect(process.listenerCount('SIGINT')).toBe(int + 1);
    await logger.close();
    expect([process.listenerCount('exit'), process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual([exit, term, int]);
  });

  it('removes its signal handlers when the returned function is called', async () => {
    tmp = tempDir();
    const hup = process.listenerCount('SIGHUP');
    logger = await startLogger(tmp.dir);
    const uninstall = logger.installShutdownHandlers({ signals: ['SIGHUP'] });
    expect(process.listenerCount('SIGHUP')).toBe(hup + 1);
    uninstall();
    expect(process.listenerCount('SIGHUP')).toBe(hup);
  });

  it('on a signal the application also listens to, writes what is buffered and leaves the exit to the application', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { bufferSize: 100 });
    logger.installShutdownHandlers({ signals: ['SIGUSR2'] });
    let appSaw = false;
    const app = (): void => void (appSaw = true);
    process.on('SIGUSR2', app);
    try {
      logger.info('agent_stop', 'stopping'); // written at once anyway
      logger.info('scan_started', 'buffered');
      expect(readDir(tmp.dir).map((r) => r.message)).toEqual(['stopping']);
      process.emit('SIGUSR2', 'SIGUSR2');
      expect(appSaw).toBe(true);
      expect(readDir(tmp.dir).map((r) => r.message)).toEqual(['stopping', 'buffered']);
      expect(logger.state).toBe('running');
    } finally {
      process.off('SIGUSR2', app);
    }
  });

  it('shares one process listener per signal among loggers, which stays until the last of them closes', async () => {
    tmp = tempDir();
    const term = process.listenerCount('SIGTERM');
    logger = await startLogger(join(tmp.dir, 'a'));
    const other = await startLogger(join(tmp.dir, 'b'));
    try {
      logger.installShutdownHandlers({ signals: ['SIGTERM'] });
      other.installShutdownHandlers({ signals: ['SIGTERM'] });
      // One listener: a logger must not take another logger's listener for the application's.
      expect(process.listenerCount('SIGTERM')).toBe(term + 1);
      await other.close();
      expect(process.listenerCount('SIGTERM')).toBe(term + 1);
      await logger.close();
      expect(process.listenerCount('SIGTERM')).toBe(term);
    } finally {
      await other.close();
    }
  });

  it('resolves flush() called while close() is finishing with true once everything is written', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    logger.info('agent_start', 'one');
    const l = logger;
    let flushed: Promise<boolean> | undefined;
    // The moment close() has written everything and is closing the file (SonicBoom syncs it first).
    const fsync = fs.fsync;
    vi.spyOn(fs, 'fsync').mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      flushed ??= l.flush();
      fsync(fd, cb);
    }) as typeof fs.fsync);
    const closing = logger.close();
    expect(logger.state).toBe('closing');
    await closing;
    expect(flushed).toBeDefined();
    await expect(flushed).resolves.toBe(true);
    expect(readDir(tmp.dir).map((r) => r.message)).toEqual(['one']);
  });
});
