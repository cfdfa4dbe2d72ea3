/**
 * `outpost-sdk/pipeline`: non-blocking uploads. {@link UploadPipeline.submit}
 * returns at once; a bounded priority queue feeds upload workers that retry
 * with backoff; what cannot be sent goes to the durable outbox.
 *
 * @module
 */
export { UploadPipeline, type UploadPipelineState } from './pipeline.js';
export type { PipelineSubmitOptions } from './submission.js';
export { pipelineDefaults, resolvePipelineOptions, type PipelineOptions, type ResolvedPipelineOptions } from './options.js';
export type { FailReason, PipelineItem, PipelineStats, SpillReason, UploadPipelineEvents } from './events.js';
export { PipelineStoppedError, QueueFullError, type QueueFullBound } from '../errors.js';
