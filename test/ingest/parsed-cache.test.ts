import { describe, expect, it } from 'vitest';
import { ParsedChunkCache } from '../../src/ingest/parsed-cache.js';

describe('ParsedChunkCache', () => {
  it('gives a report back only when every chunk is held, in index order', () => {
    const cache = new ParsedChunkCache(1_000);
    cache.set('t', 'r', 1, { n: 1 }, 10);
    expect(cache.take('t', 'r', 2)).toBeUndefined();
    cache.set('t', 'r', 0, { n: 0 }, 10);
    expect(cache.take('t', 'r', 2)).toEqual([{ n: 0 }, { n: 1 }]);
    expect(cache.take('other-tenant', 'r', 2)).toBeUndefined();
  });

  it('evicts the oldest chunks to stay within its budget', () => {
    const cache = new ParsedChunkCache(100);
    for (let i = 0; i < 5; i++) cache.set('t', 'r', i, { i }, 30);
    expect(cache.cost).toBe(90);
    expect(cache.take('t', 'r', 5)).toBeUndefined();
    cache.set('t', 'x', 0, {}, 101); // larger than the whole budget: not kept, nothing evicted
    expect(cache.cost).toBe(90);
  });

  it('replaces a chunk stored twice and frees a dropped report', () => {
    const cache = new ParsedChunkCache(100);
    cache.set('t', 'r', 0, { v: 1 }, 40);
    cache.set('t', 'r', 0, { v: 2 }, 50);
    expect(cache.cost).toBe(50);
    expect(cache.take('t', 'r', 1)).toEqual([{ v: 2 }]);
    cache.drop('t', 'r', 1);
    expect(cache.cost).toBe(0);
  });
});
