/**
 * What reaches the disk when a real process ends: a child agent logs 150
 * events (events 1–121 written, 122–150 buffered; see fixtures/child.ts) and
 * ends by process.exit(), an uncaught exception, an unhandled rejection, an
 * empty event loop, close(), SIGTERM with and without the shutdown handlers,
 * and SIGKILL.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/ingest.js';
import { join } from 'node:path';
import { expectContiguous, readDir } from './helpers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/child.ts', import.meta.url));
const EXIT_CHILD = fileURLToPath(new URL('./fixtures/exit-child.ts', import.meta.url));
const TOTAL = 150;
/** Written before the child ends however it ends: by count (1–100) and with the ERROR (101–121). */
const WRITTEN_BEFORE_END = 121;
const BUFFER_SIZE = 50;
/** A child that has not ended by then is killed and the test fails. */
const DEADLINE_MS = 15_000;

interface Ended {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
  readonly timedOut: boolean;
}

let tmp: ReturnType<typeof tempDir>;
afterEach(() => tmp?.cleanup());

/** Runs the child in `mode`; when `signal` is given, sends it once the child printed `ready`. */
function runChild(mode: string, signal?: NodeJS.Signals, script = CHILD): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: ROOT,
      env: { ...process.env, AUDIT_CHILD_DIR: tmp.dir, AUDIT_CHILD_MODE: mode },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, DEADLINE_MS);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (signal !== undefined && stdout.includes('ready\n')) {
        stdout = '';
        child.kill(signal);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      resolve({ code, signal: sig, stderr, timedOut });
    });
  });
}

function expectEvents(count: number): void {
  const records = readDir(tmp.dir);
  expect(records.map((r) => r.message)).toEqual(Array.from({ length: count }, (_, i) => `event ${i + 1}`));
  expectContiguous(records);
}

describe('a real process that logs, then ends', () => {
  it('loses nothing on process.exit()', async () => {
    tmp = tempDir();
    const ended = await runChild('exit');
    expect(ended).toMatchObject({ code: 3, signal: null, timedOut: false });
    expectEvents(TOTAL);
  });

  it('loses nothing on an uncaught exception', async () => {
    tmp = tempDir();
    const ended = await runChild('uncaught');
    expect(ended).toMatchObject({ code: 1, timedOut: false });
    expect(ended.stderr).toContain('boom: uncaught');
    expectEvents(TOTAL);
  });

  it('loses nothing on an unhandled rejection', async () => {
    tmp = tempDir();
    const ended = await runChild('rejection');
    expect(ended).toMatchObject({ code: 1, timedOut: false });
    expect(ended.stderr).toContain('boom: unhandled rejection');
    expectEvents(TOTAL);
  });

  it('loses nothing when the event loop empties without close(): no timer of the logger keeps the process alive', async () => {
    tmp = tempDir();
    const ended = await runChild('empty');
    expect(ended).toMatchObject({ code: 0, signal: null, timedOut: false });
    expectEvents(TOTAL);
  });

  it('exits on its own after close(), with shipping to a dead endpoint: no timer, socket or file handle left', async () => {
    tmp = tempDir();
    const ended = await runChild('close');
    expect(ended).toMatchObject({ code: 0, signal: null, timedOut: false });
    const records = readDir(tmp.dir);
    expect(records.slice(0, TOTAL).map((r) => r.message)).toEqual(Array.from({ length: TOTAL }, (_, i) => `event ${i + 1}`));
    // Then the notice that shipping gave up at close.
    expect(records.slice(TOTAL).map((r) => r.details?.['reason'])).toContain('audit_remote_unshipped');
    expectContiguous(records);
  });

  it('loses nothing on SIGTERM with installShutdownHandlers(), and still ends by SIGTERM', async () => {
    tmp = tempDir();
    const ended = await runChild('wait-handlers', 'SIGTERM');
    expect(ended).toMatchObject({ code: null, signal: 'SIGTERM', timedOut: false });
    expectEvents(TOTAL);
  });

  it('loses nothing on SIGINT with installShutdownHandlers()', async () => {
    tmp = tempDir();
    const ended = await runChild('wait-handlers', 'SIGINT');
    expect(ended).toMatchObject({ code: null, signal: 'SIGINT', timedOut: false });
    expectEvents(TOTAL);
  });

  it('loses the buffered events on SIGTERM without the handlers (why they exist)', async () => {
    tmp = tempDir();
    const ended = await runChild('wait', 'SIGTERM');
    expect(ended).toMatchObject({ signal: 'SIGTERM', timedOut: false });
    expectEvents(WRITTEN_BEFORE_END);
  });

  it('loses at most one buffer on SIGKILL: everything up to the last batch or ERROR is on disk, whole lines, no gap', async () => {
    tmp = tempDir();
    const ended = await runChild('wait-handlers', 'SIGKILL');
    expect(ended).toMatchObject({ signal: 'SIGKILL', timedOut: false });
    const records = readDir(tmp.dir);
    expect(TOTAL - records.length).toBeLessThan(BUFFER_SIZE);
    expectEvents(WRITTEN_BEFORE_END);
  });

  it('loses nothing on SIGTERM with two loggers that installed the handlers, and still ends by SIGTERM', async () => {
    tmp = tempDir();
    const ended = await runChild('two-loggers', 'SIGTERM', EXIT_CHILD);
    expect(ended).toMatchObject({ code: null, signal: 'SIGTERM', timedOut: false });
    for (const sub of ['a', 'b']) {
      const records = readDir(join(tmp.dir, sub));
      expect(records.map((r) => r.message)).toEqual(Array.from({ length: 30 }, (_, i) => `${sub} ${i + 1}`));
      expectContiguous(records);
    }
  });

  it('writes events logged from an application exit listener registered after start()', async () => {
    tmp = tempDir();
    const ended = await runChild('exit-late', undefined, EXIT_CHILD);
    expect(ended).toMatchObject({ code: 2, signal: null, timedOut: false });
    const records = readDir(join(tmp.dir, 'a'));
    expect(records.map((r) => r.message)).toEqual(['up', 'exiting with code 2']);
    expectContiguous(records);
  });

  it('says on stderr how many events logged before start() were never written when the process exits', async () => {
    tmp = tempDir();
    const ended = await runChild('before-start', undefined, EXIT_CHILD);
    expect(ended).toMatchObject({ code: 0, signal: null, timedOut: false });
    expect(ended.stderr).toMatch(/outpost audit: exiting before start\(\): 3 audit event\(s\) logged so far were never written/);
  });
});
