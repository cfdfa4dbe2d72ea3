import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditLogger } from '../../src/audit/index.js';
import { startServer } from '../helpers/http.js';
import { tempDir } from '../helpers/ingest.js';
import { expectContiguous, readDir, startLogger } from './helpers.js';

let tmp: ReturnType<typeof tempDir>;
let logger: AuditLogger | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await logger?.close();
  logger = undefined;
  tmp?.cleanup();
});

const onDisk = (): string[] => readDir(tmp.dir).map((r) => r.message);

describe('buffering', () => {
  it('holds events until bufferSize of them are logged, then writes them in one batch', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { bufferSize: 5 });
    for (let i = 1; i <= 4; i++) logger.info('scan_started', `e${i}`);
    expect(onDisk()).toEqual([]);
    expect(logger.stats().pendingEvents).toBe(4);
    logger.info('scan_started', 'e5');
    expect(onDisk()).toEqual(['e1', 'e2', 'e3', 'e4', 'e5']);
    for (let i = 6; i <= 9; i++) logger.info('scan_started', `e${i}`);
    expect(onDisk()).toHaveLength(5);
    logger.info('scan_started', 'e10');
    expect(onDisk()).toHaveLength(10);
    expect(logger.stats()).toMatchObject({ loggedEvents: 10, writtenEvents: 10, pendingEvents: 0 });
  });

  it('writes a partial batch flushIntervalMs after its first event (fake timers)', async () => {
    tmp = tempDir();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    logger = await startLogger(tmp.dir, { bufferSize: 100, flushIntervalMs: 5_000 });
    logger.info('scan_started', 'first');
    vi.advanceTimersByTime(3_000);
    logger.info('scan_started', 'second');
    vi.advanceTimersByTime(1_999);
    expect(onDisk()).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(onDisk()).toEqual(['first', 'second']);
    // Nothing buffered: no timer runs until the next event.
    expect(vi.getTimerCount()).toBe(2); // the hourly retention and the rotation at midnight
    logger.info('scan_started', 'third');
    vi.advanceTimersByTime(4_999);
    expect(onDisk()).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(onDisk()).toEqual(['first', 'second', 'third']);
  });

  it('writes ERROR, CRITICAL, auth_failed and agent_stop at once, after what was buffered before them', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { bufferSize: 100 });
    const cases: [string, () => void][] = [
      ['error', () => logger?.error('scan_failed', 'error')],
      ['critical', () => logger?.critical('agent_error', 'critical')],
      ['auth_failed', () => logger?.info('auth_failed', 'auth_failed')],
      ['agent_stop', () => logger?.info('agent_stop', 'agent_stop')],
      ['jobFailed', () => logger?.jobFailed('j', new Error('x'))],
    ];
    const expected: string[] = [];
    for (const [name, logIt] of cases) {
      logger.info('scan_started', `before ${name}`);
      logger.warn('resource_warning', `warn before ${name}`);
      expect(onDisk()).toEqual(expected);
      logIt();
      expected.push(`before ${name}`, `warn before ${name}`, name === 'jobFailed' ? 'Job j failed: x' : name);
      expect(onDisk()).toEqual(expected);
    }
    // WARN, INFO and DEBUG wait.
    logger.warn('rate_limited', 'warn');
    logger.debug('scan_started', 'debug');
    expect(onDisk()).toEqual(expected);
  });

  it('keeps the order of calls on disk under concurrent async callers', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { bufferSize: 7 });
    const calls: string[] = [];
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; i < 60; i++) {
        const message = `w${w}-${i}`;
        calls.push(message);
        if (i % 13 === 5) logger?.error('scan_failed', message);
        else logger?.withContext({ jobId: `job-${w}` }).info('scan_started', message);
        // Interleave differently per worker: microtasks, macrotasks, and flushes racing the batch timer.
        if ((i + w) % 3 === 0) await Promise.resolve();
        else if ((i + w) % 3 === 1) await new Promise((r) => setImmediate(r));
        else if (i % 10 === 0) await logger?.flush();
      }
    };
    await Promise.all(Array.from({ length: 12 }, (_, w) => worker(w)));
    await logger.close();
    const records = readDir(tmp.dir);
    expect(records.map((r) => r.message)).toEqual(calls);
    expectContiguous(records);
  });

  it('holds events logged before start() and writes them first', async () => {
    tmp = tempDir();
    const { AuditLogger } = await import('../../src/audit/index.js');
    logger = new AuditLogger({ agentId: 'a', logFile: `${tmp.dir}/audit.log`, bufferSize: 2 });
    logger.info('agent_start', 'early 1');
    logger.info('agent_start', 'early 2');
    logger.error('agent_error', 'early error');
    expect(logger.stats()).toMatchObject({ file: undefined, pendingEvents: 3, writtenEvents: 0 });
    await logger.start();
    logger.info('agent_start', 'late');
    await logger.close();
    const records = readDir(tmp.dir);
    expect(records.map((r) => r.message)).toEqual(['early 1', 'early 2', 'early error', 'late']);
    expectContiguous(records);
  });

  it('flush() writes a partial batch and resolves true', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    logger.info('scan_started', 'one');
    await expect(logger.flush()).resolves.toBe(true);
    expect(onDisk()).toEqual(['one']);
    await expect(logger.flush()).resolves.toBe(true);
  });

  it('writes an immediate event logged by a listener during a write right after that write, not flushIntervalMs later', async () => {
    tmp = tempDir();
    const dead = await startServer(() => undefined);
    const { port } = dead.server.address() as AddressInfo;
    await dead.close();
    logger = await startLogger(tmp.dir, { bufferSize: 1, flushIntervalMs: 60_000, remoteEndpoint: `http://127.0.0.1:${port}/`, remoteQueueBatches: 1, remoteCloseTimeoutMs: 0 });
    const l = logger;
    // Each write queues a batch for shipping; with room for one, the write drops the previous batch, and the listener tells.
    l.once('ship-dropped', (e) => l.critical('agent_error', `shipping dropped ${e.events} event(s)`));
    l.info('scan_started', 'one');
    l.info('scan_started', 'two');
    expect(onDisk().slice(0, 3)).toEqual(['one', 'two', 'shipping dropped 1 event(s)']);
    expect(readDir(tmp.dir)[2]).toMatchObject({ severity: 'CRITICAL', seq: 3 });
  });

  it('refuses a log call made while an event is serialized (a toJSON that logs): disk order stays seq order, and the refusal is recorded', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { bufferSize: 100 });
    const l = logger;
    const sneaky = {
      toJSON(): number {
        l.info('scan_started', 'inner');
        return 1;
      },
    };
    expect(() => l.info('scan_started', 'outer', { sneaky })).not.toThrow();
    l.info('scan_started', 'next');
    await logger.close();
    const records = readDir(tmp.dir);
    expect(records.map((r) => r.message.slice(0, 12))).toEqual(['outer', '1 audit even', 'next']);
    expect(records[0]?.details).toEqual({ sneaky: 1 });
    expect(records[1]).toMatchObject({ severity: 'WARN', type: 'validation_error', details: { reason: 'audit_reentrant_log', refused_events: 1, first_type: 'scan_started', first_message: 'inner' } });
    expectContiguous(records);
  });
});
