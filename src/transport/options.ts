/**
 * Options of {@link HttpUploader}: declared, defaulted and validated here once.
 */
import type { Dispatcher } from 'undici';
import { InvalidOptionError } from '../errors.js';
import * as v from '../internal/validate.js';
import { VERSION } from '../internal/version.js';
import { TOKEN68 } from '../internal/protocol.js';

/** A bearer token, or a function returning the current one (called per request, so tokens can rotate). */
export type TokenSource = string | (() => string | Promise<string>);

/** Options of {@link HttpUploader}. */
export interface HttpUploaderOptions {
  /** Base URL of the ingest server, e.g. `https://ingest.example.com` or `https://example.com/outpost` (a path prefix is kept). */
  readonly url: string | URL;
  /** Bearer token sent as `Authorization: Bearer <token>`. */
  readonly token: TokenSource;
  /** Keep-alive connections to the server, at most. @default 4 */
  readonly connections?: number;
  /** Per-attempt timeout: the request is aborted (not just abandoned) when it elapses. @default 120000 (2 min) */
  readonly uploadTimeoutMs?: number;
  /** Timeout of the TCP + TLS connect. @default 10000 (10 s) */
  readonly connectTimeoutMs?: number;
  /** How long an idle keep-alive socket is kept. @default 4000 (4 s) */
  readonly keepAliveTimeoutMs?: number;
  /** CA certificates (PEM) to trust instead of Node's default bundle, for a server with a private CA (as `ca` in `node:tls`). */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  /** `User-Agent` header. @default `outpost-sdk/<version>` */
  readonly userAgent?: string;
  /** A custom undici dispatcher (proxy agent, mock). When set, `connections`, `connectTimeoutMs`, `keepAliveTimeoutMs` and `ca` are ignored and `close()` leaves it open. */
  readonly dispatcher?: Dispatcher;
}

/** Defaults of {@link HttpUploaderOptions}. */
export const httpUploaderDefaults = Object.freeze({
  /** 4 connections. */
  connections: 4,
  /** 2 min. */
  uploadTimeoutMs: 120_000,
  /** 10 s. */
  connectTimeoutMs: 10_000,
  /** 4 s. */
  keepAliveTimeoutMs: 4_000,
  /** `outpost-sdk/<version of this package>`. */
  userAgent: `outpost-sdk/${VERSION}`,
} as const);

/** {@link HttpUploaderOptions} after defaults and validation. */
export interface ResolvedHttpUploaderOptions {
  /** Scheme, host and port of `url`, e.g. `https://example.com`. */
  readonly origin: string;
  /** Path of `url` without trailing slashes (`''` at the root), put before every request path. */
  readonly pathPrefix: string;
  /** Bearer token, or the function called per request for the current one. */
  readonly token: TokenSource;
  /** Keep-alive connections to the server, at most. */
  readonly connections: number;
  /** Per-attempt timeout, in milliseconds. */
  readonly uploadTimeoutMs: number;
  /** Timeout of the TCP + TLS connect, in milliseconds. */
  readonly connectTimeoutMs: number;
  /** How long an idle keep-alive socket is kept, in milliseconds. */
  readonly keepAliveTimeoutMs: number;
  /** CA certificates (PEM) to trust instead of the default bundle, or `undefined` for the default. */
  readonly ca: string | Buffer | readonly (string | Buffer)[] | undefined;
  /** `User-Agent` header. */
  readonly userAgent: string;
  /** The custom undici dispatcher, or `undefined` when the uploader opens its own pool. */
  readonly dispatcher: Dispatcher | undefined;
}

const KEYS = ['url', 'token', 'connections', 'uploadTimeoutMs', 'connectTimeoutMs', 'keepAliveTimeoutMs', 'ca', 'userAgent', 'dispatcher'];

/** Merges defaults and validates. @throws {@link InvalidOptionError} */
export function resolveHttpUploaderOptions(options: HttpUploaderOptions): ResolvedHttpUploaderOptions {
  if (typeof options !== 'object' || options === null) v.fail('options', 'an object', options);
  v.knownKeys('HttpUploader', options, KEYS);
  let url: URL;
  try {
    url = new URL(String(options.url));
  } catch (err) {
    v.fail('url', 'an absolute http(s) URL', options.url);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') v.fail('url', 'an http: or https: URL', options.url);
  if (url.username !== '' || url.password !== '') v.fail('url', 'a URL without credentials (use `token`)', url.origin);
  if (url.search !== '' || url.hash !== '') v.fail('url', 'a base URL without a query or fragment', String(options.url));
  if (typeof options.token !== 'function' && (typeof options.token !== 'string' || !TOKEN68.test(options.token))) {
    // Never echo a secret into a message that may end up in a log.
    const got = typeof options.token === 'string' ? `a string of ${options.token.length} characters that is not token68` : typeof options.token;
    throw new InvalidOptionError(`Expected \`token\` to be a bearer token of token68 characters ([A-Za-z0-9-._~+/] then optional =) or a function returning one, got ${got}`);
  }
  const ca = options.ca;
  if (ca !== undefined) {
    const list = Array.isArray(ca) ? ca : [ca];
    if (list.length === 0 || !list.every((c) => typeof c === 'string' || Buffer.isBuffer(c))) {
      v.fail('ca', 'PEM text, a Buffer, or a non-empty array of them', ca);
    }
  }
  return Object.freeze({
    origin: url.origin,
    pathPrefix: url.pathname.replace(/\/+$/, ''),
    token: options.token,
    connections: v.integer('connections', options.connections ?? httpUploaderDefaults.connections, 1, 1024),
    uploadTimeoutMs: v.timerMs('uploadTimeoutMs', options.uploadTimeoutMs ?? httpUploaderDefaults.uploadTimeoutMs, 1),
    connectTimeoutMs: v.timerMs('connectTimeoutMs', options.connectTimeoutMs ?? httpUploaderDefaults.connectTimeoutMs, 1),
    keepAliveTimeoutMs: v.timerMs('keepAliveTimeoutMs', options.keepAliveTimeoutMs ?? httpUploaderDefaults.keepAliveTimeoutMs, 1),
    ca,
    userAgent: v.nonEmptyString('userAgent', options.userAgent ?? httpUploaderDefaults.userAgent),
    dispatcher: options.dispatcher,
  });
}
