import { describe, expect, it } from 'vitest';
import { OutpostError } from '../../src/errors.js';
import { SafeEmitter } from '../../src/internal/safe-emitter.js';

type Events = { tick: [n: number]; error: [error: OutpostError] };

describe('SafeEmitter', () => {
  it('runs every listener even when one throws, and reports the throw as a warning', async () => {
    const emitter = new SafeEmitter<Events>('test');
    const seen: string[] = [];
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      emitter.on('tick', (n) => seen.push(`a${n}`));
      emitter.on('tick', () => {
        throw new Error('listener bug');
      });
      emitter.on('tick', (n) => seen.push(`c${n}`));
      emitter.emit('tick', 1);
      expect(seen).toEqual(['a1', 'c1']);
      await new Promise((r) => setImmediate(r));
      expect(warnings.map((w) => (w as { code?: string }).code)).toContain('OUTPOST_LISTENER_FAILED');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('calls a once listener once, and off removes a listener', () => {
    const emitter = new SafeEmitter<Events>('test');
    const seen: number[] = [];
    const keep = (n: number): void => void seen.push(n * 10);
    emitter.once('tick', (n) => seen.push(n));
    emitter.on('tick', keep);
    emitter.emit('tick', 1);
    emitter.emit('tick', 2);
    emitter.off('tick', keep);
    emitter.emit('tick', 3);
    expect(seen).toEqual([1, 10, 20]);
    expect(emitter.has('tick')).toBe(false);
  });
});
