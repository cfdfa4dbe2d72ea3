/**
 * A ready-made {@link Authenticate}: a fixed token → tenant table, compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { InvalidOptionError } from '../errors.js';
import { TOKEN68, isValidId } from '../internal/protocol.js';
import type { Authenticate } from './options.js';

/**
 * Builds an {@link Authenticate} from a `{ token: tenantId }` table. Tokens
 * are compared by SHA-256 in constant time, so response timing does not leak
 * how much of a token was right.
 *
 * @throws {@link InvalidOptionError} when a tenant id is not 1–256 characters of `[A-Za-z0-9_-]`
 * @example
 * ```ts
 * createIngestHandler({ authenticate: staticTokenAuthenticator({ [process.env.TOKEN_A!]: 'tenant-a' }), store });
 * ```
 */
export function staticTokenAuthenticator(tokens: Readonly<Record<string, string>>): Authenticate {
  const table = Object.entries(tokens).map(([token, tenant]) => {
    if (!TOKEN68.test(token)) throw new InvalidOptionError('Expected every token to be token68 characters ([A-Za-z0-9-._~+/] then optional =), as bearer tokens are sent');
    if (!isValidId(tenant)) throw new InvalidOptionError(`Expected tenant id to be 1–256 characters of [A-Za-z0-9_-], got ${JSON.stringify(tenant)}`);
    return { digest: createHash('sha256').update(token).digest(), tenant };
  });
  return (token) => {
    const digest = createHash('sha256').update(token).digest();
    let found: string | undefined;
    for (const entry of table) if (timingSafeEqual(entry.digest, digest)) found = entry.tenant;
    return found;
  };
}
