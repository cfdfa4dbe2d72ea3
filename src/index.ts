/**
 * `outpost-sdk`: everything an agent daemon needs to stay healthy on the host
 * it runs on. Each module is also importable on its own
 * (`outpost-sdk/transport`, `outpost-sdk/ingest`, `outpost-sdk/chunk`,
 * `outpost-sdk/resource`, `outpost-sdk/audit`, `outpost-sdk/pipeline`).
 *
 * @module
 */
export * from './errors.js';
export * from './transport/index.js';
export * from './ingest/index.js';
export * from './chunk/index.js';
export * from './audit/index.js';
export * from './resource/index.js';
export * from './pipeline/index.js';
