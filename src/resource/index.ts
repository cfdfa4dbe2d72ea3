/**
 * `outpost-sdk/resource`: admission control. {@link ResourceController}
 * admits jobs only while the host (or the container it runs in) can take
 * them: it reads what the kernel enforces — cgroup v2 or v1 memory and CPU
 * usage and limits, else the host's `/proc` — throttles when CPU, memory or
 * disk goes over a threshold, and resumes after a cooldown.
 *
 * @module
 */
export { ResourceController, type ResourceControllerState } from './controller.js';
export type { AcquireOptions, RunOptions, TryAcquireOptions } from './call-options.js';
export type { Slot } from './admission.js';
export {
  MAX_JOBS_LIMIT,
  resolveResourceControllerOptions,
  resourceControllerDefaults,
  type ResolvedResourceControllerOptions,
  type ResourceControllerOptions,
} from './options.js';
export { SystemSource, type SystemSourceOptions } from './source.js';
export type { MemoryScope, ResourceSource, SourceInfo, SourceKind, SourceReading } from './reading.js';
export { describeHost, type HostDescription } from './host-info.js';
export type {
  JobTimeoutEvent,
  ResourceControllerEvents,
  ResourceMetrics,
  ResourceSignal,
  ResourceStatus,
  ResumedEvent,
  SampleFailedEvent,
  ThrottleReason,
  ThrottledEvent,
  WarningEvent,
} from './events.js';
export { CloseTimeoutError, JobTimeoutError, JobTooLargeError, ResourceReadError, type ResourceReadTarget } from '../errors.js';
