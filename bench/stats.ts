/** Small helpers the benchmarks share for summarising their rounds. */

/** `list[i]`, throwing when out of range (so `noUncheckedIndexedAccess` needs no casts). */
export function at<T>(list: readonly T[], i: number): T {
  const v = list[i];
  if (v === undefined) throw new RangeError(`index ${i} out of range`);
  return v;
}

/** The median of `xs` (the mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? at(s, mid) : (at(s, mid - 1) + at(s, mid)) / 2;
}

/** `x` rounded to `digits` decimals. */
export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** The mean of `xs`. */
export function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** `x` with `digits` decimals, or `–` when it was not measured. */
export function opt(x: number | undefined, digits: number): string {
  return x === undefined ? '–' : x.toFixed(digits);
}

/** A positive integer from the environment variable `name`, or `fallback`. */
export function intEnv(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
  return v;
}

/** Prints one line of the human-readable report. */
export function log(line: string): void {
  console.log(line);
}

/** Runs `send(0..n-1)` with `c` in flight at a time; resolves with the elapsed seconds. */
export async function timed(n: number, c: number, send: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(c, n) }, async () => {
      while (next < n) await send(next++);
    }),
  );
  return (performance.now() - t0) / 1000;
}

/** `x` rounded to `digits` decimals, or `null` (in the JSON line) when it was not measured. */
export function roundOrNull(x: number | undefined, digits: number): number | null {
  return x === undefined ? null : round(x, digits);
}
