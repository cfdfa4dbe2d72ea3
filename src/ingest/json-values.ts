/**
 * What a JSON document will cost once parsed is set by how many values it
 * holds, not by its bytes: 50 MiB of `{},{},…` is 17 million objects and
 * gigabytes of heap. This counts values cheaply, before `JSON.parse` runs.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;

/**
 * An upper bound on the number of values in a JSON text: one for the root,
 * plus one per `,`, `{` and `[` outside strings. Runs in one pass over the
 * bytes, allocates nothing, and never throws (malformed input just gives a
 * number; `JSON.parse` rejects it later).
 */
export function countJsonValues(json: Uint8Array): number {
  let count = 1;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i] as number;
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === COMMA || c === OPEN_BRACE || c === OPEN_BRACKET) count++;
  }
  return count;
}
