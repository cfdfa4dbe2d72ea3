import { afterEach, describe, expect, it, vi } from 'vitest';
import { AUDIT_EVENT_TYPES, AUDIT_SCHEMA_VERSION, AUDIT_SEVERITIES, AuditLogger, type AuditRecord } from '../../src/audit/index.js';
import { tempDir } from '../helpers/ingest.js';
import { expectContiguous, readDir, startLogger } from './helpers.js';

let tmp: ReturnType<typeof tempDir>;
let logger: AuditLogger | undefined;
afterEach(async () => {
  await logger?.close();
  logger = undefined;
  vi.restoreAllMocks();
  tmp?.cleanup();
});

const FIELDS = new Set(['severity', 'timestamp', 'agent_id', 'tenant_id', 'schema_version', 'type', 'job_id', 'report_id', 'duration_ms', 'details', 'event_id', 'seq', 'message']);
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** The documented schema of one line: known fields only, none null, each of its type. */
function checkSchema(r: AuditRecord): void {
  for (const [key, value] of Object.entries(r)) {
    expect(FIELDS.has(key), `unknown field ${key}`).toBe(true);
    expect(value, `${key} is null`).not.toBeNull();
  }
  expect(r.timestamp).toMatch(ISO_UTC);
  expect(AUDIT_SEVERITIES).toContain(r.severity);
  expect(AUDIT_EVENT_TYPES).toContain(r.type);
  expect(typeof r.agent_id).toBe('string');
  expect(r.schema_version).toBe(AUDIT_SCHEMA_VERSION);
  expect(r.event_id).toMatch(/^[A-Za-z0-9_-]{16}\.\d+$/);
  expect(r.event_id.endsWith(`.${r.seq}`)).toBe(true);
  expect(Number.isInteger(r.seq)).toBe(true);
  expect(typeof r.message).toBe('string');
  for (const key of ['tenant_id', 'job_id', 'report_id'] as const) if (key in r) expect(typeof r[key]).toBe('string');
  if ('duration_ms' in r) expect(Number.isFinite(r.duration_ms)).toBe(true);
  if ('details' in r) expect(typeof r.details).toBe('object');
}

describe('audit line schema', () => {
  it('writes every event type, at every severity, with exactly the documented fields', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { bufferSize: 1000 });
    const before = Date.now();
    AUDIT_EVENT_TYPES.forEach((type, i) => {
      const severity = AUDIT_SEVERITIES[i % AUDIT_SEVERITIES.length] ?? 'INFO';
      logger?.log({ severity, type, message: `event ${type}` });
    });
    await logger.close();
    const records = readDir(tmp.dir);
    expect(records.map((r) => r.type)).toEqual([...AUDIT_EVENT_TYPES]);
    records.forEach((r, i) => {
      checkSchema(r);
      expect(r).toMatchObject({ severity: AUDIT_SEVERITIES[i % AUDIT_SEVERITIES.length], agent_id: 'agent-1', tenant_id: 'tenant-1', message: `event ${r.type}` });
      // Absent fields are omitted, not null.
      expect(Object.keys(r).sort()).toEqual(['agent_id', 'event_id', 'message', 'schema_version', 'seq', 'severity', 'tenant_id', 'timestamp', 'type']);
      expect(Date.parse(r.timestamp)).toBeGreaterThanOrEqual(before - 1);
      expect(Date.parse(r.timestamp)).toBeLessThanOrEqual(Date.now());
    });
    expectContiguous(records);
    expect(new Set(records.map((r) => r.event_id)).size).toBe(records.length);
  });

  it('maps the severity methods to their severities', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    logger.debug('agent_start', 'd');
    logger.info('agent_start', 'i');
    logger.warn('resource_warning', 'w');
    logger.error('agent_error', 'e');
    logger.critical('agent_error', 'c');
    await logger.close();
    expect(readDir(tmp.dir).map((r) => [r.message, r.severity])).toEqual([
      ['d', 'DEBUG'],
      ['i', 'INFO'],
      ['w', 'WARN'],
      ['e', 'ERROR'],
      ['c', 'CRITICAL'],
    ]);
  });

  it('omits tenant_id when the logger has no tenant', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { tenantId: undefined });
    logger.info('agent_start', 'up');
    await logger.close();
    const [r] = readDir(tmp.dir);
    expect(r).toBeDefined();
    expect('tenant_id' in (r as AuditRecord)).toBe(false);
    checkSchema(r as AuditRecord);
  });

  it('writes the specialised helpers with their ids, duration and details', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    logger.jobStarted('job-1', 'scan', { target: '/srv' });
    logger.jobCompleted('job-1', 1520.5, { findings: 3 });
    logger.jobFailed('job-2', Object.assign(new Error('semgrep exited with 2'), { code: 'E_TOOL' }), { exit_code: 2 });
    logger.jobFailed('job-3', 'plain string');
    logger.chunkUploaded('report-9', 2, 5, 4096);
    logger.resourceThrottle('CPU 90% >= 85%', { cpu: 0.9 });
    await logger.close();
    const records = readDir(tmp.dir);
    records.forEach(checkSchema);
    expect(records).toMatchObject([
      { severity: 'INFO', type: 'job_started', job_id: 'job-1', details: { job_type: 'scan', target: '/srv' } },
      { severity: 'INFO', type: 'job_completed', job_id: 'job-1', duration_ms: 1520.5, details: { findings: 3 } },
      { severity: 'ERROR', type: 'job_failed', job_id: 'job-2', message: 'Job job-2 failed: semgrep exited with 2', details: { exit_code: 2, error: { name: 'Error', message: 'semgrep exited with 2', code: 'E_TOOL' } } },
      { severity: 'ERROR', type: 'job_failed', job_id: 'job-3', details: { error: { message: 'plain string' } } },
      { severity: 'INFO', type: 'chunk_uploaded', report_id: 'report-9', details: { chunk_index: 2, total_chunks: 5, bytes: 4096 } },
      { severity: 'WARN', type: 'resource_throttle', message: 'CPU 90% >= 85%', details: { cpu: 0.9 } },
    ]);
    expect('duration_ms' in (records[0] as AuditRecord)).toBe(false);
  });

  it('writes log() in object form, and leaves out a duration that is not a finite number', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    logger.log({ type: 'upload_completed', message: 'uploaded', durationMs: 42, reportId: 'r-1', details: { bytes: 10 } });
    logger.log({ type: 'upload_completed', message: 'NaN', durationMs: Number.NaN });
    logger.log({ type: 'upload_failed', message: 'inf', severity: 'WARN', durationMs: Number.POSITIVE_INFINITY });
    await logger.close();
    const [a, b, c] = readDir(tmp.dir);
    expect(a).toMatchObject({ severity: 'INFO', type: 'upload_completed', duration_ms: 42, report_id: 'r-1', details: { bytes: 10 } });
    expect('duration_ms' in (b as AuditRecord)).toBe(false);
    expect(c).toMatchObject({ severity: 'WARN' });
    expect('duration_ms' in (c as AuditRecord)).toBe(false);
  });

  it('records a log() call without an event object instead of throwing', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    expect(() => logger?.log(undefined as unknown as Parameters<AuditLogger['log']>[0])).not.toThrow();
    await logger.close();
    expect(readDir(tmp.dir)).toMatchObject([{ severity: 'WARN', type: 'validation_error', details: { value: 'undefined' } }]);
  });

  it('never throws from a logging method, whatever its arguments, and writes only valid lines with string messages and ids', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    const l = logger;
    const throwing = {
      get x(): never {
        throw new Error('getter');
      },
    };
    const calls: [string, () => void][] = [
      ['jobFailed, a null-prototype error', () => l.jobFailed('j1', Object.create(null))],
      ['jobFailed, an error whose message getter throws', () => l.jobFailed('j1', Object.defineProperty(new Error('e'), 'message', { get: () => { throw new Error('no message'); } }))],
      ['jobStarted, details with a throwing getter', () => l.jobStarted('j1', 'scan', throwing)],
      ['jobFailed, details with a throwing getter', () => l.jobFailed('j1', new Error('e'), throwing)],
      ['info, a Symbol message', () => l.info('agent_start', Symbol('s') as unknown as string)],
      ['info, a message whose toString throws', () => l.info('agent_start', { toString: () => { throw new Error('ts'); } } as unknown as string)],
      ['info, no message', () => l.info('agent_start', undefined as unknown as string)],
      ['info, null details', () => l.info('agent_start', 'null details', null as unknown as Record<string, unknown>)],
      ['jobCompleted, a Symbol job id', () => l.jobCompleted(Symbol('j') as unknown as string, 5)],
      ['jobStarted, a number job id', () => l.jobStarted(42 as unknown as string, 'scan')],
      ['chunkUploaded, a BigInt index', () => l.chunkUploaded('r', 1n as unknown as number, 2, 3)],
      ['log, an event whose type getter throws', () => l.log({ get type(): never { throw new Error('t'); }, message: 'm' } as unknown as Parameters<AuditLogger['log']>[0])],
      ['log, null ids and a Symbol type', () => l.log({ type: Symbol('t') as unknown as 'agent_start', message: 'null ids', jobId: null as unknown as string, reportId: 7 as unknown as string })],
    ];
    for (const [name, call] of calls) expect(call, name).not.toThrow();
    await logger.close();
    const records = readDir(tmp.dir); // every line parses
    expect(records).toHaveLength(calls.length);
    for (const r of records) {
      expect(typeof r.message, JSON.stringify(r)).toBe('string');
      for (const key of ['job_id', 'report_id', 'type'] as const) if (key in r) expect(typeof r[key], JSON.stringify(r)).toBe('string');
    }
    expectContiguous(records);
    const by = (seq: number): AuditRecord => records[seq - 1] as AuditRecord;
    expect(by(1)).toMatchObject({ type: 'job_failed', message: 'Job j1 failed: [object Object]' });
    expect(by(3)).toMatchObject({ type: 'job_started', details: { job_type: 'scan', unserializable: true } });
    expect(by(5).message).toBe('Symbol(s)');
    expect(by(7).message).toBe(''); // present, a string: never `"message":undefined`, never absent
    expect(by(8).message).toBe('null details');
    expect('details' in by(8)).toBe(false); // null details are omitted like absent ones
    expect(by(9)).toMatchObject({ job_id: 'Symbol(j)', message: 'Job Symbol(j) completed in 5 ms' });
    expect(by(10)).toMatchObject({ job_id: '42' });
    expect(by(11)).toMatchObject({ type: 'chunk_uploaded', message: 'Chunk 2 of 2 of report r uploaded' });
    expect(by(12)).toMatchObject({ severity: 'WARN', type: 'validation_error', message: 'log() could not record its event: t', details: { reason: 'audit_invalid_arguments', method: 'log' } });
    expect(by(13)).toMatchObject({ type: 'Symbol(t)', report_id: '7' });
    expect('job_id' in by(13)).toBe(false);
  });

  it('keeps messages with quotes and newlines on one line', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    logger.info('validation_error', 'bad "input"\nsecond line\u2028');
    await logger.close();
    const [r] = readDir(tmp.dir);
    expect(r?.message).toBe('bad "input"\nsecond line\u2028');
  });

  it('gives every run its own event id prefix, so ids stay unique across restarts', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    logger.info('agent_start', 'run 1');
    await logger.close();
    logger = await startLogger(tmp.dir);
    logger.info('agent_start', 'run 2');
    await logger.close();
    const [r1, r2] = readDir(tmp.dir);
    expect(r1?.seq).toBe(1);
    expect(r2?.seq).toBe(1);
    expect(r1?.event_id).not.toBe(r2?.event_id);
  });
});

describe('context loggers', () => {
  it('stamps job_id and report_id on every event, merges nested contexts, and lets explicit ids win', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    const job = logger.withContext({ jobId: 'job-1' });
    const report = job.withContext({ reportId: 'rep-1' });
    job.info('scan_started', 'a');
    report.warn('upload_retry', 'b');
    report.withContext({ jobId: 'job-2' }).info('upload_started', 'c');
    report.jobStarted('job-3', 'scan');
    report.chunkUploaded('rep-9', 0, 1, 10);
    report.log({ type: 'upload_completed', message: 'd', jobId: 'job-4' });
    logger.info('agent_start', 'e');
    await logger.close();
    expect(report.context).toEqual({ jobId: 'job-1', reportId: 'rep-1' });
    const rows = readDir(tmp.dir).map((r) => [r.message.slice(0, 1), r.job_id, r.report_id]);
    expect(rows).toEqual([
      ['a', 'job-1', undefined],
      ['b', 'job-1', 'rep-1'],
      ['c', 'job-2', 'rep-1'],
      ['J', 'job-3', 'rep-1'],
      ['C', 'job-1', 'rep-9'],
      ['d', 'job-4', 'rep-1'],
      ['e', undefined, undefined],
    ]);
  });

  it('shares the root logger’s buffer and order', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir, { bufferSize: 3 });
    const a = logger.withContext({ jobId: 'a' });
    const b = logger.withContext({ jobId: 'b' });
    a.info('scan_started', '1');
    b.info('scan_started', '2');
    await expect(logger.flush()).resolves.toBe(true);
    a.info('scan_started', '3');
    expect(readDir(tmp.dir).map((r) => r.message)).toEqual(['1', '2']);
    await logger.close();
    expect(readDir(tmp.dir).map((r) => `${r.job_id}${r.message}`)).toEqual(['a1', 'b2', 'a3']);
  });

  it('refuses ids that are not non-empty strings', async () => {
    tmp = tempDir();
    logger = await startLogger(tmp.dir);
    expect(() => logger?.withContext({ jobId: '' })).toThrow(/`jobId` to be a non-empty string/);
    expect(() => logger?.withContext({ reportId: 7 as unknown as string })).toThrow(expect.objectContaining({ code: 'OUTPOST_INVALID_ARGUMENT' }));
    expect(() => logger?.withContext(null as unknown as object)).toThrow(/context to be an object/);
  });
});

describe('verbose', () => {
  it('prints each event as one human-readable line on stderr, secrets redacted, control characters escaped', async () => {
    tmp = tempDir();
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    logger = await startLogger(tmp.dir, { verbose: true });
    logger.withContext({ jobId: 'j-1', reportId: 'r-1' }).log({ type: 'job_completed', message: 'done\nok', durationMs: 12, details: { token: 'abc', n: 1 } });
    await logger.close();
    vi.restoreAllMocks();
    const printed = lines.filter((l) => l.includes('job_completed'));
    expect(printed).toHaveLength(1);
    expect(printed[0]).toMatch(/^\d{4}-\d{2}-\d{2}T[\d:.]+Z INFO {5}job_completed job=j-1 report=r-1 \(12 ms\) done\\nok \{"token":"\[REDACTED\]","n":1\}\n$/);
    const record = readDir(tmp.dir)[0];
    expect(printed[0]?.startsWith(record?.timestamp ?? 'x')).toBe(true);
  });

  it('prints nothing when off', async () => {
    tmp = tempDir();
    const spy = vi.spyOn(process.stderr, 'write');
    logger = await startLogger(tmp.dir);
    logger.info('agent_start', 'quiet');
    await logger.close();
    expect(spy.mock.calls.filter((c) => String(c[0]).includes('agent_start'))).toHaveLength(0);
  });
});
