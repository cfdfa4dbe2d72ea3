import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ChunkManager } from '../../src/chunk/index.js';
import { IllegalStateError } from '../../src/errors.js';
import { makeReport, ScriptedUploader, startManager, unavailable } from '../helpers/chunk.js';
import { tempDir } from '../helpers/ingest.js';

let tmp: ReturnType<typeof tempDir>;
afterEach(() => tmp?.cleanup());

describe('ChunkManager lifecycle', () => {
  it('moves idle → running → closed; start and close are idempotent; wrong-state calls throw IllegalStateError', async () => {
    tmp = tempDir();
    const m = new ChunkManager({ uploader: new ScriptedUploader(), databasePath: join(tmp.dir, 'c.db') });
    expect(m.state).toBe('idle');
    expect(() => m.stats()).toThrow(IllegalStateError);
    await expect(m.submitReport(makeReport(1, 0), { tenantId: 't' })).rejects.toThrow(/while idle/);
    await m.start();
    await m.start();
    expect(m.state).toBe('running');
    const closing = m.close();
    expect(m.state).toBe('closing');
    expect(m.close()).toBe(closing);
    await closing;
    expect(m.state).toBe('closed');
    await m.close();
    await expect(m.start()).rejects.toThrow(IllegalStateError);
    await expect(m.submitReport(makeReport(1, 0), { tenantId: 't' })).rejects.toMatchObject({ code: 'OUTPOST_ILLEGAL_STATE', state: 'closed' });
    await expect(m.flush()).rejects.toThrow(/while closed/);
  });

  it('leaves no timer behind after close, with retries, upload pauses and the cleanup interval armed', async () => {
    tmp = tempDir();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    try {
      const up = new ScriptedUploader();
      up.fail = (u) => (u.index === 0 ? unavailable(60_000) : undefined);
      {
        await using m = await startManager(tmp.dir, up, { cleanupIntervalMinutes: 1, uploadDelayMs: 500 });
        await m.submitReport(makeReport(3000, 10), { tenantId: 't' });
        for (let i = 0; i < 1000 && up.seen.length < 2; i++) await new Promise((r) => setImmediate(r));
        expect(up.seen.length).toBe(2);
        // The cleanup interval and both workers' upload pauses.
        for (let i = 0; i < 1000 && vi.getTimerCount() < 3; i++) await new Promise((r) => setImmediate(r));
        expect(vi.getTimerCount()).toBe(3);
      }
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('aborts uploads in flight on close without counting an attempt; the next start sends them', async () => {
    tmp = tempDir();
    const slow = new ScriptedUploader();
    slow.delayMs = 10_000;
    const m = await startManager(tmp.dir, slow);
    await m.submitReport(makeReport(1, 0), { tenantId: 't', reportId: 'r' });
    await expect.poll(() => slow.inFlight).toBe(1);
    await m.close();
    expect(slow.inFlight).toBe(0);
    const ok = new ScriptedUploader();
    const m2 = await startManager(tmp.dir, ok, { cleanupOnReportComplete: false });
    expect(m2.getReport('t', 'r')?.chunks[0]).toMatchObject({ attempts: 0 });
    await m2.flush();
    expect(ok.seen.map((s) => s.reportId)).toEqual(['r']);
    expect(m2.getReport('t', 'r')?.chunks[0]).toMatchObject({ state: 'uploaded', attempts: 1 });
    await m2.close();
  });

  it('aborts a stalled stream on close at once and keeps nothing of it', async () => {
    tmp = tempDir();
    const m = await startManager(tmp.dir, new ScriptedUploader(), { maxFindingsPerChunk: 10 });
    let returned = false;
    const stalled: AsyncIterable<{ finding: unknown }> = {
      [Symbol.asyncIterator]() {
        let i = 0;
        return {
          next: () => (i < 30 ? Promise.resolve({ done: false, value: { finding: { id: i++ } } }) : new Promise(() => undefined)),
          return: () => {
            returned = true;
            return Promise.resolve({ done: true, value: undefined });
          },
        };
      },
    };
    const p = m.submitReportStream({ tenantId: 't', reportId: 's' }, stalled);
    await new Promise((r) => setTimeout(r, 50));
    await m.close();
    await expect(p).rejects.toMatchObject({ code: 'OUTPOST_ILLEGAL_STATE' });
    await expect.poll(() => returned).toBe(true);
  });

  it('aborts a stream in progress on close and keeps nothing of it', async () => {
    tmp = tempDir();
    const m = await startManager(tmp.dir, new ScriptedUploader(), { maxFindingsPerChunk: 10 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    async function* items() {
      for (let i = 0; i < 50; i++) yield { finding: { id: i } };
      await gate;
      for (let i = 50; i < 100; i++) yield { finding: { id: i } };
    }
    const p = m.submitReportStream({ tenantId: 't', reportId: 's' }, items());
    await new Promise((r) => setTimeout(r, 50));
    const closed = m.close();
    release();
    await expect(p).rejects.toMatchObject({ code: 'OUTPOST_ILLEGAL_STATE' });
    await closed;
    const again = await startManager(tmp.dir, new ScriptedUploader());
    expect(again.stats().reports).toEqual({ staging: 0, pending: 0, completed: 0, dead: 0 });
    await again.close();
  });

  it('lets a submission in progress finish storing before closing', async () => {
    tmp = tempDir();
    const up = new ScriptedUploader();
    up.fail = () => unavailable(60_000);
    const m = await startManager(tmp.dir, up);
    const p = m.submitReport(makeReport(5000, 50), { tenantId: 't', reportId: 'late' });
    const closed = m.close();
    expect((await p).reportId).toBe('late');
    await closed;
    const again = await startManager(tmp.dir, up);
    expect(again.getReport('t', 'late')?.state).toBe('pending');
    await again.close();
  });

  it('flush() resolves at once when idle, rejects with the signal reason when aborted, and rejects on close', async () => {
    tmp = tempDir();
    const up = new ScriptedUploader();
    up.fail = () => unavailable(60_000);
    const m = await startManager(tmp.dir, up);
    await m.flush();
    await m.submitReport(makeReport(1, 0), { tenantId: 't' });
    const ac = new AbortController();
    const waiting = m.flush({ signal: ac.signal });
    ac.abort(new Error('gave up waiting'));
    await expect(waiting).rejects.toThrow('gave up waiting');
    await expect(m.flush({ signal: AbortSignal.abort(new Error('already')) })).rejects.toThrow('already');
    const pending = m.flush();
    await m.close();
    await expect(pending).rejects.toMatchObject({ code: 'OUTPOST_ILLEGAL_STATE' });
  });

  it('never throws from the background: a listener that throws becomes a process warning', async () => {
    tmp = tempDir();
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const m = await startManager(tmp.dir, new ScriptedUploader());
      m.on('chunk-uploaded', () => {
        throw new Error('listener bug');
      });
      await m.submitReport(makeReport(1, 0), { tenantId: 't' });
      await m.flush();
      await expect.poll(() => warnings.some((w) => (w as { code?: string }).code === 'OUTPOST_LISTENER_FAILED')).toBe(true);
      await m.close();
    } finally {
      process.off('warning', onWarning);
    }
  });
});
