/**
 * `Retry-After` parsing: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
 */

/**
 * Parses a `Retry-After` value into milliseconds from `nowMs`. Returns
 * `undefined` when the header is absent or malformed; a date in the past gives 0.
 *
 * @example
 * ```ts
 * parseRetryAfter('120');                            // 120000
 * parseRetryAfter('Wed, 21 Oct 2026 07:28:00 GMT');  // ms until then, or 0
 * ```
 */
export function parseRetryAfter(value: string | readonly string[] | undefined, nowMs: number = Date.now()): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (typeof raw !== 'string') return undefined;
  const text = raw.trim();
  if (/^[0-9]{1,10}$/.test(text)) return Number(text) * 1000;
  // An HTTP date always names a weekday and GMT; anything else (e.g. "-1", "soon") is malformed.
  if (!/^[A-Za-z]{3}, /.test(text) && !/ GMT$/.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}
