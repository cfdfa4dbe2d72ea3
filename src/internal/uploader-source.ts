/**
 * An `uploader` option: one {@link Uploader}, or a function giving the
 * uploader (and so the credentials) of a tenant, asked once per tenant.
 * @internal
 */
import type { Uploader } from '../transport/types.js';
import * as v from './validate.js';

/** The methods a module calls on its uploader. */
export type UploaderMethod = 'uploadChunk' | 'uploadReport';

function hasMethods(value: unknown, methods: readonly UploaderMethod[]): value is Uploader {
  return typeof value === 'object' && value !== null && methods.every((m) => typeof (value as Record<string, unknown>)[m] === 'function');
}

/**
 * Turns an `uploader` option into `tenantId → Uploader`. A function source is
 * called once per tenant (an uploader holds connections) and what it returns
 * is checked then.
 * @throws {@link InvalidOptionError} when `source` is neither
 */
export function uploaderSource(source: unknown, methods: readonly UploaderMethod[]): (tenantId: string) => Uploader {
  const what = `an Uploader (with ${methods.join(' and ')})`;
  if (hasMethods(source, methods)) return () => source;
  if (typeof source !== 'function') v.fail('uploader', `${what} or a function (tenantId) => Uploader`, source);
  const byTenant = new Map<string, Uploader>();
  const make = source as (tenantId: string) => unknown;
  return (tenantId) => {
    let uploader = byTenant.get(tenantId);
    if (uploader === undefined) {
      const made = make(tenantId);
      if (!hasMethods(made, methods)) v.fail('uploader(tenantId)', `to return ${what}`, made);
      uploader = made;
      byTenant.set(tenantId, uploader);
    }
    return uploader;
  };
}
