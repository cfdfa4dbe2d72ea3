/**
 * The package's own version, read once from package.json (two levels up from
 * both `src/internal/` and `dist/internal/`).
 * @internal
 */
import { createRequire } from 'node:module';

/** `version` of outpost-sdk's package.json. */
export const VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
