/**
 * `verbose`: every event as one human-readable line, for a terminal.
 *
 * `2025-01-15T10:30:00.000Z INFO     job_completed job=j-42 (1520 ms) Job j-42 completed {"findings":3}`
 */
import type { AuditDetails, AuditSeverity } from './event-types.js';

const CONTROL = /[\u0000-\u001f\u007f]/g;
const escapeControl = (c: string): string => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '\t' ? '\\t' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** Formats one event on one line (control characters escaped), ending with a newline. */
export function formatVerbose(
  timestamp: string,
  severity: AuditSeverity,
  type: string,
  message: string,
  jobId: string | undefined,
  reportId: string | undefined,
  durationMs: number | undefined,
  details: AuditDetails | undefined,
): string {
  let line = `${timestamp} ${severity.padEnd(8)} ${type}`;
  if (jobId !== undefined) line += ` job=${jobId}`;
  if (reportId !== undefined) line += ` report=${reportId}`;
  if (durationMs !== undefined) line += ` (${durationMs} ms)`;
  line += ` ${message}`;
  if (details !== undefined) {
    let json: string;
    try {
      json = JSON.stringify(details);
    } catch {
      json = '[unserializable details]';
    }
    line += ` ${json}`;
  }
  return `${line.replace(CONTROL, escapeControl)}\n`;
}

/** Prints {@link formatVerbose}'s line on stderr; never throws (a closed stderr, a severity that is not a string). */
export function printVerbose(...args: Parameters<typeof formatVerbose>): void {
  try {
    process.stderr.write(formatVerbose(...args));
  } catch {
    // stderr closed
  }
}
