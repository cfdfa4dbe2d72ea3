import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { countJsonValues } from '../../src/ingest/json-values.js';

const count = (text: string) => countJsonValues(Buffer.from(text));

describe('countJsonValues', () => {
  it('counts the root plus one per comma and opening bracket outside strings', () => {
    expect(count('1')).toBe(1);
    expect(count('[1,2,3]')).toBe(4);
    expect(count('{"a":1,"b":[true,null]}')).toBe(5);
    expect(count('[{},{},{}]')).toBe(7); // 4 values; each object counts for its brace and its comma
  });

  it('ignores commas, brackets and escaped quotes inside strings', () => {
    expect(count('["a,b{c[d", "e\\"f,g"]')).toBe(3);
    expect(count('{"k\\\\":"v,"}')).toBe(2);
  });

  it('is an upper bound of the values JSON.parse creates', () => {
    const values = (v: unknown): number =>
      Array.isArray(v) ? 1 + v.reduce((n: number, x) => n + values(x), 0) : typeof v === 'object' && v !== null ? 1 + Object.values(v).reduce((n: number, x) => n + values(x), 0) : 1;
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const text = JSON.stringify(v);
        expect(count(text)).toBeGreaterThanOrEqual(values(JSON.parse(text)));
      }),
      { numRuns: 500 },
    );
  });
});
