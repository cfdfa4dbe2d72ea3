/**
 * `outpost-sdk/transport`: the agent side of protocol v1 — the {@link Uploader}
 * seam, the HTTP uploader, body encoding and the one retry policy.
 *
 * @module
 */
export { HttpUploader, type HttpUploaderState } from './http-uploader.js';
export { httpUploaderDefaults, type HttpUploaderOptions, type ResolvedHttpUploaderOptions, type TokenSource } from './options.js';
export { encodeBody, type EncodeOptions } from './encode.js';
export {
  RetryPolicy,
  retryPolicyDefaults,
  resolveRetryPolicyOptions,
  type ResolvedRetryPolicyOptions,
  type RetryOptions,
  type RetryPolicyOptions,
} from './retry-policy.js';
export { parseRetryAfter } from './retry-after.js';
export { RETRYABLE_NETWORK_CODES, RETRYABLE_STATUSES, asRetryableNetworkError, isRetryableStatus, toUploadError } from './classify.js';
export type {
  BodyEncoding,
  ChunkUpload,
  EncodedBody,
  ReportStatus,
  ReportUpload,
  UploadCallOptions,
  UploadResult,
  Uploader,
} from './types.js';
export {
  UploadError,
  UploadHttpError,
  UploadNetworkError,
  UploadTimeoutError,
  type UploadErrorCode,
  type UploadErrorDetails,
} from '../errors.js';
