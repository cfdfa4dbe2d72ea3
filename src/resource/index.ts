/**
 * `outpost-sdk/resource`: admission control. {@link ResourceController}
 * admits jobs only while the host (or the container it runs in) can take
 * them: it reads what the kernel enforces — cgroup v2 or v1 memory and CPU
 * limits, else the host's `/proc` — throttles when CPU, memory or disk goes
 * over a threshold, and resumes after a cooldown.
 *
 * @module
 */
export {
  ResourceController,
  type AcquireOptions,
  type ResourceControllerState,
  type RunOptions,
  type TryAcquireOptions,
} from './controller.js';
export type { Slot } from './admission.js';
export {
  MAX_JOBS_LIMIT,
  resolveResourceControllerOptions,
  resourceControllerDefaults,
  type ResolvedResourceControllerOptions,
  type ResourceControllerOptions,
} from './options.js';
export { SystemSource, type ResourceSource, type SourceInfo, type SourceKind, type SourceReading, type SystemSourceOptions } from './source.js';
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
export { JobTimeoutError, ResourceReadError, type ResourceReadTarget } from '../errors.js';
