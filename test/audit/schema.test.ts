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
