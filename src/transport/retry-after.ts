/**
 * `Retry-After` parsing: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
 */

/** IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and the obsolete RFC 850 form (`Sunday, 06-Nov-94 08:49:37 GMT`). */
const GMT_DATE = /^[A-Za-z]{3,9}, [0-9A-Za-z -]+ [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$/;
/** The obsolete asctime form (`Sun Nov  6 08:49:37 1994`), which is UTC although it does not say so. */
const ASCTIME = /^[A-Za-z]{3} [A-Za-z]{3} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}$/;

/**
 * Parses a `Retry-After` value into milliseconds from `nowMs`. Returns
 * `undefined` when the header is absent or malformed; a date in the past gives 0.
 * Dates are always read as UTC, whatever the local time zone.
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
  let at = Number.NaN;
  if (GMT_DATE.test(text)) at = Date.parse(text);
  else if (ASCTIME.test(text)) {
    const [, month, day, time, year] = text.split(/ +/);
    at = Date.parse(`${day} ${month} ${year} ${time} GMT`);
  }
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}
