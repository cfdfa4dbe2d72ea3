import { afterEach, describe, expect, it, vi } from 'vitest';
import { InvalidOptionError, UploadHttpError, UploadNetworkError, UploadTimeoutError } from '../../src/errors.js';
import { RetryPolicy, parseRetryAfter } from '../../src/transport/index.js';

const http = (status: number, retryAfterMs?: number) =>
  new UploadHttpError(status, { retryable: [408, 409, 429, 500, 502, 503, 504].includes(status), ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });

describe('RetryPolicy', () => {
  afterEach(() => vi.useRealTimers());

  it('doubles the backoff ceiling per retry from retryDelayMs and caps it at maxRetryDelayMs', () => {
    const policy = new RetryPolicy({ retryDelayMs: 5_000, maxRetryDelayMs: 30_000, jitter: 'none' });
    expect([1, 2, 3, 4, 5, 50].map((n) => policy.delayMs(n))).toEqual([5_000, 10_000, 20_000, 30_000, 30_000, 30_000]);
  });

  it('applies full jitter: the delay is random() times the ceiling', () => {
    const values = [0, 0.5, 0.999];
    const policy = new RetryPolicy({ retryDelayMs: 1_000, random: () => values.shift() ?? 0 });
    expect([policy.delayMs(3), policy.delayMs(3), policy.delayMs(3)]).toEqual([0, 2_000, 3_996]);
  });

  it('uses the default 5 s base with a factor of 2', () => {
    const policy = new RetryPolicy({ jitter: 'none' });
    expect(policy.backoffCeilingMs(1)).toBe(5_000);
    expect(policy.backoffCeilingMs(2)).toBe(10_000);
  });

  it("replaces the backoff with the server's Retry-After, capped by maxRetryAfterMs", () => {
    const policy = new RetryPolicy({ jitter: 'none', maxRetryAfterMs: 60_000 });
    expect(policy.delayMs(1, http(429, 7_000))).toBe(7_000);
    expect(policy.delayMs(5, http(503, 3_600_000))).toBe(60_000);
    expect(policy.delayMs(1, http(503))).toBe(5_000);
  });

  it.each([408, 409, 429, 500, 502, 503, 504])('retries status %i', (status) => {
    expect(new RetryPolicy().isRetryable(http(status))).toBe(true);
  });

  it.each([400, 401, 403, 404, 413, 415, 422])('does not retry status %i', (status) => {
    expect(new RetryPolicy().isRetryable(http(status))).toBe(false);
  });

  it.each(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT'])(
    'retries the network error %s, also when nested as a cause',
    (code) => {
      const policy = new RetryPolicy();
      expect(policy.isRetryable(Object.assign(new Error('x'), { code }))).toBe(true);
      expect(policy.isRetryable(new Error('outer', { cause: Object.assign(new Error('inner'), { code }) }))).toBe(true);
    },
  );

  it('does not retry TLS verification failures or plain programming errors', () => {
    const policy = new RetryPolicy();
    expect(policy.isRetryable(Object.assign(new Error('self-signed'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }))).toBe(false);
    expect(policy.isRetryable(new TypeError('bug'))).toBe(false);
    expect(policy.isRetryable(new UploadTimeoutError(10))).toBe(true);
  });

  it('rejects invalid options with the option name, the expectation and the value', () => {
    expect(() => new RetryPolicy({ retryDelayMs: -1 })).toThrow(InvalidOptionError);
    expect(() => new RetryPolicy({ retryDelayMs: -1 })).toThrow('Expected `retryDelayMs` to be an integer from 0 to 2147483647, got -1 (number)');
    expect(() => new RetryPolicy({ retryDelayMs: 10_000, maxRetryDelayMs: 1_000 })).toThrow(/maxRetryDelayMs/);
    expect(() => new RetryPolicy({ jitter: 'half' as 'full' })).toThrow(/jitter/);
    expect(() => new RetryPolicy({ retryDelay: 5 } as never)).toThrow('Unknown option `retryDelay`');
    expect(() => new RetryPolicy({ maxRetryAfterMs: 2 ** 31 })).toThrow(/maxRetryAfterMs/);
  });

  it('retry() waits the backoff schedule between attempts and returns the first success', async () => {
    vi.useFakeTimers();
    const policy = new RetryPolicy({ retryDelayMs: 1_000, jitter: 'none' });
    const attempts: number[] = [];
    const delays: number[] = [];
    const result = policy.retry(
      async () => {
        attempts.push(Date.now());
        if (attempts.length < 4) throw http(503);
        return 'ok';
      },
      { maxRetries: 5, onRetry: (_e, _n, d) => delays.push(d) },
    );
    await vi.runAllTimersAsync();
    await expect(result).resolves.toBe('ok');
    expect(delays).toEqual([1_000, 2_000, 4_000]);
    expect(attempts.map((t) => t - (attempts[0] ?? 0))).toEqual([0, 1_000, 3_000, 7_000]);
  });

  it('retry() gives up after maxRetries retries with the last error', async () => {
    vi.useFakeTimers();
    const policy = new RetryPolicy({ retryDelayMs: 10, jitter: 'none' });
    let calls = 0;
    const result = policy.retry(async () => {
      calls++;
      throw http(500);
    }, { maxRetries: 2 });
    const check = expect(result).rejects.toMatchObject({ status: 500, retryable: true });
    await vi.runAllTimersAsync();
    await check;
    expect(calls).toBe(3);
  });

  it('retry() rethrows an error that is not an upload failure unchanged, without retrying', async () => {
    let calls = 0;
    const bug = new InvalidOptionError('bad');
    await expect(
      new RetryPolicy().retry(async () => {
        calls++;
        throw bug;
      }),
    ).rejects.toBe(bug);
    expect(calls).toBe(1);
  });

  it('retry() retries a raw transient network error from a custom uploader', async () => {
    vi.useFakeTimers();
    let calls = 0;
    const result = new RetryPolicy({ retryDelayMs: 10 }).retry(async () => {
      if (++calls === 1) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      return 'ok';
    });
    await vi.runAllTimersAsync();
    await expect(result).resolves.toBe('ok');
    expect(calls).toBe(2);
  });

  it('retry() does not retry a permanent failure', async () => {
    let calls = 0;
    await expect(
      new RetryPolicy().retry(async () => {
        calls++;
        throw http(422);
      }),
    ).rejects.toMatchObject({ status: 422, retryable: false });
    expect(calls).toBe(1);
  });

  it('retry() rejects with the abort reason when aborted during a backoff wait', async () => {
    vi.useFakeTimers();
    const controller = new AbortController();
    const result = new RetryPolicy({ retryDelayMs: 60_000, jitter: 'none' }).retry(
      async () => {
        throw new UploadNetworkError('reset', { retryable: true });
      },
      { signal: controller.signal },
    );
    const check = expect(result).rejects.toBe('stop');
    await vi.advanceTimersByTimeAsync(1_000);
    controller.abort('stop');
    await check;
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('parseRetryAfter', () => {
  it('reads delay-seconds', () => {
    expect(parseRetryAfter('120')).toBe(120_000);
    expect(parseRetryAfter(' 0 ')).toBe(0);
  });

  it('reads an HTTP date relative to now and clamps the past to 0', () => {
    const now = Date.parse('2026-11-23T10:00:00Z');
    expect(parseRetryAfter('Mon, 23 Nov 2026 10:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Mon, 23 Nov 2026 09:00:00 GMT', now)).toBe(0);
  });

  it('reads the obsolete RFC 850 and asctime date forms as UTC', () => {
    const now = Date.parse('1994-11-06T08:49:00Z');
    expect(parseRetryAfter('Sunday, 06-Nov-94 08:49:37 GMT', now)).toBe(37_000);
    expect(parseRetryAfter('Sun Nov  6 08:49:37 1994', now)).toBe(37_000);
  });

  it('ignores malformed values, including a date without its time zone', () => {
    for (const bad of [undefined, '', '-1', '1.5', 'soon', '12abc', 'Mon, 99 Foo 2026 00:00:00 GMT', 'Wed, 21 Oct 2026 07:28:00']) {
      expect(parseRetryAfter(bad)).toBeUndefined();
    }
  });
});
