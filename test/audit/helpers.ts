import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLogger, type AuditLoggerOptions, type AuditRecord } from '../../src/audit/index.js';

/** The audit files of `dir` (named `<prefix>.<date>.<n>.<ext>`), oldest first: by date, then counter. */
export function auditFiles(dir: string, prefix = 'audit'): string[] {
  const pattern = new RegExp(`^${prefix}\\.(\\d{4}-\\d{2}-\\d{2})\\.(\\d+)\\.log$`);
  return readdirSync(dir)
    .map((name) => ({ name, m: pattern.exec(name) }))
    .filter((f): f is { name: string; m: RegExpExecArray } => f.m !== null)
    .sort((a, b) => (a.m[1] as string).localeCompare(b.m[1] as string) || Number(a.m[2]) - Number(b.m[2]))
    .map((f) => join(dir, f.name));
}

/** Every line of `files`, parsed, in file order. Throws on a line that is not JSON. */
export function readRecords(files: readonly string[]): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    if (text.length > 0 && !text.endsWith('\n')) throw new Error(`${file} ends with a partial line`);
    for (const line of text.split('\n')) if (line.length > 0) out.push(JSON.parse(line) as AuditRecord);
  }
  return out;
}

/** Every record in `dir`'s audit files. */
export function readDir(dir: string, prefix = 'audit'): AuditRecord[] {
  return readRecords(auditFiles(dir, prefix));
}

/** Asserts that `records` carry seq `from`, `from + 1`, … with no gap or repeat; returns the last. */
export function expectContiguous(records: readonly AuditRecord[], from = 1): number {
  records.forEach((r, i) => {
    if (r.seq !== from + i) throw new Error(`seq ${r.seq} at position ${i}, expected ${from + i}`);
  });
  return from + records.length - 1;
}

/** A started logger writing `<dir>/audit.log`, with a long flush interval unless given. */
export async function startLogger(dir: string, options: Partial<AuditLoggerOptions> = {}): Promise<AuditLogger> {
  const logger = new AuditLogger({ agentId: 'agent-1', tenantId: 'tenant-1', logFile: join(dir, 'audit.log'), flushIntervalMs: 60_000, ...options });
  await logger.start();
  return logger;
}

/** Local calendar date as pino-roll names files (`yyyy-MM-dd`). */
export function localDate(d = new Date()): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}
