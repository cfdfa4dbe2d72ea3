/**
 * What is retryable: the one classification every module uses.
 */
import { UploadError, UploadNetworkError } from '../errors.js';

/** HTTP statuses worth retrying: 408, 409, 429, 500, 502, 503, 504. Every other status is permanent. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 409, 429, 500, 502, 503, 504]);

/**
 * Error codes of transient network failures: resets, refusals, broken pipes,
 * unreachable networks, DNS hiccups, and undici's socket and timeout errors.
 * TLS verification failures are not here: a wrong certificate will not fix itself.
 */
export const RETRYABLE_NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENETUNREACH',
  'ENETDOWN',
  'ENETRESET',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

/** Whether an HTTP status is retryable under the shared policy. */
export function isRetryableStatus(status: number): boolean {
  return RETRYABLE_STATUSES.has(status);
}

/** The first `code` found on `err` or along its `cause` chain. */
export function errorCode(err: unknown): string | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Classifies an error that is not an {@link UploadError}: one carrying a
 * code from {@link RETRYABLE_NETWORK_CODES} (on itself or along its `cause`
 * chain) becomes a retryable {@link UploadNetworkError}; anything else
 * (a programming error, an invalid argument) is not an upload failure and
 * gives `undefined`.
 */
export function asRetryableNetworkError(err: unknown): UploadNetworkError | undefined {
  const upload = toUploadError(err);
  return upload instanceof UploadNetworkError && upload.retryable ? upload : undefined;
}

/**
 * Turns anything a request threw into an {@link UploadError}: upload errors
 * pass through; other errors become {@link UploadNetworkError} whose
 * `retryable` follows {@link RETRYABLE_NETWORK_CODES}.
 */
export function toUploadError(err: unknown): UploadError {
  if (err instanceof UploadError) return err;
  let code: string | undefined;
  let current: unknown = err;
  // undici nests the system error (ECONNREFUSED) under its own (UND_ERR_CONNECT...): prefer a retryable one.
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth++) {
    const c = (current as { code?: unknown }).code;
    if (typeof c === 'string') {
      code ??= c;
      if (RETRYABLE_NETWORK_CODES.has(c)) {
        code = c;
        break;
      }
    }
    current = (current as { cause?: unknown }).cause;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new UploadNetworkError(`Upload failed before the server answered: ${code ?? 'error'}: ${message}`, {
    retryable: code !== undefined && RETRYABLE_NETWORK_CODES.has(code),
    cause: err,
  });
}
