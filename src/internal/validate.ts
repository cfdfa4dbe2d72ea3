/**
 * Option validation shared by every module: one message format everywhere,
 * ``Expected `queueSize` to be a positive integer, got -1 (number)``.
 * @internal
 */
import { InvalidOptionError } from '../errors.js';

function describe(value: unknown): string {
  if (typeof value === 'string') return `${JSON.stringify(value)} (string)`;
  if (value === null) return 'null';
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  if (typeof value === 'function') return 'a function';
  return `${String(value)} (${typeof value})`;
}

/** Throws {@link InvalidOptionError} saying what `name` should have been. */
export function fail(name: string, expected: string, value: unknown, hint = ''): never {
  throw new InvalidOptionError(`Expected \`${name}\` to be ${expected}, got ${describe(value)}${hint ? `. ${hint}` : ''}`);
}

/** A finite number >= `min` (and <= `max`). */
export function number(name: string, value: unknown, min: number, max = Number.POSITIVE_INFINITY): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    const range = max === Number.POSITIVE_INFINITY ? `a number >= ${min}` : `a number from ${min} to ${max}`;
    fail(name, range, value);
  }
  return value;
}

/** An integer >= `min` (and <= `max`). */
export function integer(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    let expected: string;
    if (min === 1 && max === Number.MAX_SAFE_INTEGER) expected = 'a positive integer';
    else if (min === 0 && max === Number.MAX_SAFE_INTEGER) expected = 'a non-negative integer';
    else if (max === Number.MAX_SAFE_INTEGER) expected = `an integer >= ${min}`;
    else expected = `an integer from ${min} to ${max}`;
    fail(name, expected, value);
  }
  return value;
}

/** Longest delay a Node.js timer can hold (2^31 − 1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/** A duration for a timer, in whole milliseconds from `min` to {@link MAX_TIMER_MS}. */
export function timerMs(name: string, value: unknown, min: number): number {
  return integer(name, value, min, MAX_TIMER_MS);
}

/** A fraction in [0, 1]; a percentage such as 85 is rejected with a hint to use 0.85. */
export function fraction(name: string, value: unknown): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0 || value > 1) {
    const hint = typeof value === 'number' && value > 1 && value <= 100 ? `Fractions are 0–1: did you mean ${value / 100}?` : '';
    fail(name, 'a fraction from 0 to 1', value, hint);
  }
  return value;
}

/** A non-empty string. */
export function nonEmptyString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) fail(name, 'a non-empty string', value);
  return value;
}

/** A function. */
export function fn<T extends (...args: never[]) => unknown>(name: string, value: unknown): T {
  if (typeof value !== 'function') fail(name, 'a function', value);
  return value as T;
}

/** A boolean. */
export function boolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(name, 'a boolean', value);
  return value;
}

/** Throws when `options` holds a key that is not in `known` (catches typos such as `retryDelay`). */
export function knownKeys(where: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new InvalidOptionError(`Unknown option \`${key}\` for ${where}; expected one of ${known.map((k) => `\`${k}\``).join(', ')}`);
    }
  }
}
