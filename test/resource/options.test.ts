import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../src/errors.js';
import { ResourceController, resolveResourceControllerOptions, resourceControllerDefaults, SystemSource, type ResourceControllerOptions } from '../../src/resource/index.js';
import { ScriptedSource } from './fake.js';

describe('ResourceController options', () => {
  it('fills in the documented defaults', () => {
    const o = resolveResourceControllerOptions();
    expect(o).toMatchObject({
      cpuThreshold: 0.85,
      memoryThreshold: 0.85,
      diskThreshold: 0.9,
      warningFactor: 0.8,
      maxConcurrentJobs: undefined,
      minConcurrentJobs: 1,
      cooldownMs: 30_000,
      resumeMargin: 0.1,
      sampleIntervalMs: 5_000,
      historySize: 120,
      autoAdapt: false,
      hostCpuThreshold: 1,
      hostMemoryThreshold: 1,
      closeTimeoutMs: 10_000,
      dataDir: undefined,
      cgroupRoot: '/sys/fs/cgroup',
      procRoot: '/proc',
      source: undefined,
    });
    expect(Object.isFrozen(resourceControllerDefaults)).toBe(true);
    expect(Object.isFrozen(o)).toBe(true);
  });

  it('keeps given values and treats undefined as absent', () => {
    const o = resolveResourceControllerOptions({ cpuThreshold: 0.5, maxConcurrentJobs: 3, minConcurrentJobs: 0, dataDir: '/tmp', memoryThreshold: undefined as unknown as number });
    expect(o).toMatchObject({ cpuThreshold: 0.5, maxConcurrentJobs: 3, minConcurrentJobs: 0, dataDir: '/tmp', memoryThreshold: 0.85 });
  });

  const bad: [keyof ResourceControllerOptions | 'retry', unknown, RegExp][] = [
    ['cpuThreshold', 85, /`cpuThreshold`.*fraction from 0 to 1, got 85 \(number\)\. Fractions are 0–1: did you mean 0\.85\?/],
    ['cpuThreshold', 0, /`cpuThreshold`.*above 0/],
    ['cpuThreshold', Number.NaN, /`cpuThreshold`/],
    ['memoryThreshold', 90, /`memoryThreshold`.*did you mean 0\.9\?/],
    ['memoryThreshold', -0.1, /`memoryThreshold`/],
    ['diskThreshold', '0.9', /`diskThreshold`.*"0\.9" \(string\)/],
    ['diskThreshold', 1.5, /`diskThreshold`/],
    ['hostCpuThreshold', 0, /`hostCpuThreshold`.*above 0/],
    ['hostCpuThreshold', 95, /`hostCpuThreshold`.*did you mean 0\.95\?/],
    ['hostMemoryThreshold', '0.9', /`hostMemoryThreshold`/],
    ['closeTimeoutMs', -1, /`closeTimeoutMs`.*from 0 to 2147483647, got -1/],
    ['closeTimeoutMs', 1.5, /`closeTimeoutMs`/],
    ['warningFactor', 0, /`warningFactor`/],
    ['warningFactor', 80, /`warningFactor`.*0\.8/],
    ['resumeMargin', -0.1, /`resumeMargin`/],
    ['resumeMargin', 10, /`resumeMargin`.*0\.1/],
    ['maxConcurrentJobs', 0, /`maxConcurrentJobs`.*from 1 to 100000, got 0/],
    ['maxConcurrentJobs', 2.5, /`maxConcurrentJobs`/],
    ['maxConcurrentJobs', 100_001, /`maxConcurrentJobs`/],
    ['minConcurrentJobs', -1, /`minConcurrentJobs`/],
    ['minConcurrentJobs', 1.5, /`minConcurrentJobs`/],
    ['cooldownMs', -1, /`cooldownMs`/],
    ['cooldownMs', 2 ** 31, /`cooldownMs`.*2147483647/],
    ['sampleIntervalMs', 5, /`sampleIntervalMs`.*from 10/],
    ['sampleIntervalMs', 1.5e3 + 0.5, /`sampleIntervalMs`/],
    ['historySize', 0, /`historySize`/],
    ['autoAdapt', 'yes', /`autoAdapt`.*boolean/],
    ['dataDir', '', /`dataDir`.*non-empty string/],
    ['cgroupRoot', '', /`cgroupRoot`/],
    ['procRoot', 7, /`procRoot`/],
    ['source', { read: 1 }, /`source`.*ResourceSource/],
    ['source', 'system', /`source`/],
    ['onThrottled', true, /`onThrottled`.*function/],
    ['onResumed', {}, /`onResumed`.*function/],
    ['retry', 1, /Unknown option `retry` for ResourceController/],
  ];
  for (const [name, value, message] of bad) {
    it(`rejects ${name} = ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`, () => {
      const create = (): unknown => new ResourceController({ [name]: value } as ResourceControllerOptions);
      expect(create).toThrow(InvalidOptionError);
      expect(create).toThrow(message);
    });
  }

  it('suggests a fraction only for values that read as a percentage', () => {
    // Minor: 1.5 got "did you mean 0.015?"; a threshold of 1.5 is no percentage anyone means.
    const message = (value: number): string => {
      try {
        new ResourceController({ cpuThreshold: value });
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error(`accepted ${value}`);
    };
    expect(message(1.5)).toBe('Expected `cpuThreshold` to be a fraction from 0 to 1, got 1.5 (number)');
    expect(message(101)).toBe('Expected `cpuThreshold` to be a fraction from 0 to 1, got 101 (number)');
    expect(message(85)).toMatch(/did you mean 0\.85\?$/);
    expect(message(2.5)).toMatch(/did you mean 0\.025\?$/);
    expect(message(100)).toMatch(/did you mean 1\?$/);
  });

  it('names both fields when resumeMargin leaves no room under a host threshold', () => {
    expect(() => new ResourceController({ hostMemoryThreshold: 0.1 })).toThrow(/`resumeMargin` \(0\.1\) to be below `hostMemoryThreshold` \(0\.1\)/);
    expect(() => new ResourceController({ hostCpuThreshold: 0.95, hostMemoryThreshold: 0.9 })).not.toThrow();
  });

  it('rejects options that are not an object', () => {
    expect(() => resolveResourceControllerOptions(null as unknown as ResourceControllerOptions)).toThrow(InvalidOptionError);
  });

  it('names both fields when minConcurrentJobs is over maxConcurrentJobs', () => {
    expect(() => new ResourceController({ minConcurrentJobs: 3, maxConcurrentJobs: 2 })).toThrow(/`minConcurrentJobs` \(3\) to be at most `maxConcurrentJobs` \(2\)/);
    expect(() => new ResourceController({ minConcurrentJobs: 2, maxConcurrentJobs: 2 })).not.toThrow();
  });

  it('names both fields when resumeMargin leaves no room to resume', () => {
    expect(() => new ResourceController({ cpuThreshold: 0.3, resumeMargin: 0.3 })).toThrow(/`resumeMargin` \(0\.3\) to be below `cpuThreshold` \(0\.3\)/);
    expect(() => new ResourceController({ diskThreshold: 0.05 })).toThrow(/`resumeMargin` \(0\.1\) to be below `diskThreshold` \(0\.05\)/);
    // A threshold of 1 turns its signal off: no margin applies to it.
    expect(() => new ResourceController({ cpuThreshold: 1, memoryThreshold: 1, diskThreshold: 1, resumeMargin: 1 })).not.toThrow();
  });

  it('refuses cgroupRoot, procRoot or dataDir next to a custom source', () => {
    const source = new ScriptedSource();
    expect(() => new ResourceController({ source })).not.toThrow();
    expect(() => new ResourceController({ source, procRoot: '/proc' })).toThrow(/`source` replaces the built-in readers: `procRoot`/);
    expect(() => new ResourceController({ source, cgroupRoot: '/x' })).toThrow(/`cgroupRoot`/);
    expect(() => new ResourceController({ source, dataDir: '/x' })).toThrow(/`dataDir`/);
  });

  it('defaults maxJobs to the available CPUs before start, at least minConcurrentJobs', () => {
    expect(new ResourceController({ source: new ScriptedSource(), minConcurrentJobs: 500 }).status().maxJobs).toBe(500);
  });

  it('validates SystemSource options too', () => {
    expect(() => new SystemSource({ procRoot: '' })).toThrow(/`procRoot`/);
    expect(() => new SystemSource({ dataDir: '' })).toThrow(/`dataDir`/);
    expect(() => new SystemSource({ procroot: '/proc' } as never)).toThrow(/Unknown option `procroot` for SystemSource/);
    expect(() => new SystemSource(null as never)).toThrow(InvalidOptionError);
  });
});
