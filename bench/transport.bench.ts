/**
 * Transport benchmark (`npm run bench -- transport`). It measures the built
 * package (`dist/`, what users run), not the TypeScript sources.
 *
 * (a) Upload throughput: `HttpUploader.uploadChunk` against raw undici
 *     `Pool#request` (same connections, headers and bodies) to a bare
 *     node:http server that reads the body and answers 201 `{}`.
 * (b) Ingest throughput: `createIngestHandler` (SQLite `:memory:`) fed by an
 *     `HttpUploader`, in MB/s of uncompressed JSON, against the "raw limit" of
 *     the same bodies: `decompress()` + SHA-256 and nothing else.
 *
 * Servers run in a worker thread so that client and server each get a core
 * (as they would on separate hosts) and do not share one event loop.
 * The last line printed is one JSON object with the figures. MB = 10^6 bytes.
 *
 * Environment: BENCH_SECONDS (target length of one measured run, default 4),
 * BENCH_ROUNDS (interleaved rounds, default 3), BENCH_CONCURRENCY (default 8).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { decompress } from '@mongodb-js/zstd';
import { Pool } from 'undici';
import { createIngestHandler, type IngestStats } from 'outpost-sdk/ingest';
import { HttpUploader, encodeBody, type ChunkUpload, type EncodedBody } from 'outpost-sdk/transport';
import { startWorkerServer } from './worker-server.js';
import { at, intEnv, log, mean, median, round, timed } from './stats.js';

type ServerKind = 'sink' | 'ingest';
type FromServer = { readonly port: number } | { readonly stats: IngestStats | undefined; readonly errors: number };

const TOKEN = 'bench-token';
const TENANT = 'tenant-a';
// The uploader's default User-Agent, sent by the undici baseline too.
const USER_AGENT = `outpost-sdk/${(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version}`;
const C = intEnv('BENCH_CONCURRENCY', 8);
const RUN_SECONDS = Number(process.env['BENCH_SECONDS'] ?? 4);
if (!(RUN_SECONDS > 0)) throw new Error('BENCH_SECONDS must be a positive number');
const ROUNDS = intEnv('BENCH_ROUNDS', 3);
const BODIES = 16; // distinct chunk bodies, each a ~1500-finding report chunk
const FINDINGS_PER_BODY = 1500;

// ---------------------------------------------------------------------------
// Server side (worker thread)

async function serve(kind: ServerKind): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('serve() runs in a worker');
  let errors = 0;
  // `onReport` is a no-op consumer: what is measured is the handler's own work, reassembly included.
  const ingest = kind === 'ingest' ? createIngestHandler({ store: ':memory:', authenticate: () => TENANT, onReport: () => {} }) : undefined;
  ingest?.on('error', () => void errors++);
  const server = createServer(ingest ?? sink);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port.once('message', () => {
    server.closeAllConnections();
    server.close(() => {
      void (async () => {
        await ingest?.close();
        port.postMessage({ stats: ingest?.stats(), errors } satisfies FromServer);
        port.close();
      })();
    });
  });
  port.postMessage({ port: (server.address() as AddressInfo).port } satisfies FromServer);
}

function sink(req: IncomingMessage, res: ServerResponse): void {
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(201, { 'content-type': 'application/json', 'content-length': '2' });
    res.end('{}');
  });
}

interface ServerHandle {
  readonly url: string;
  /** Closes the server; resolves with the ingest handler's stats (undefined for the sink). */
  stop(): Promise<{ stats: IngestStats | undefined; errors: number }>;
}

function startServer(kind: ServerKind): Promise<ServerHandle> {
  return startWorkerServer<{ stats: IngestStats | undefined; errors: number }>(import.meta.url, kind);
}

// ---------------------------------------------------------------------------
// Client side (main thread)

async function main(): Promise<void> {
  log(`transport bench: concurrency ${C}, ~${RUN_SECONDS}s per run, ${ROUNDS} rounds, node ${process.version}`);
  const bodies: EncodedBody[] = [];
  for (let k = 0; k < BODIES; k++) bodies.push(await encodeBody(makeChunk(k + 1, FINDINGS_PER_BODY)));
  const compressed = bodies.map((b) => b.body.length);
  const raw = bodies.map((b) => b.rawBytes);
  const bodyCompressedBytes = Math.round(mean(compressed));
  const bodyRawBytes = Math.round(mean(raw));
  log(
    `bodies: ${BODIES} × ${FINDINGS_PER_BODY} findings, zstd-3 ${kb(bodyCompressedBytes)} KB (${kb(Math.min(...compressed))}–${kb(Math.max(...compressed))}), ` +
      `raw ${kb(bodyRawBytes)} KB (${kb(Math.min(...raw))}–${kb(Math.max(...raw))}), ratio ${(bodyRawBytes / bodyCompressedBytes).toFixed(2)}`,
  );

  const upload = await benchUpload(bodies);
  const ingest = await benchIngest(bodies);

  const figures = {
    bench: 'transport',
    ratio: round(upload.uploaderReqPerSec / upload.undiciReqPerSec, 3),
    uploadRatio: round(upload.uploaderReqPerSec / upload.undiciReqPerSec, 3),
    uploaderReqPerSec: round(upload.uploaderReqPerSec, 1),
    undiciReqPerSec: round(upload.undiciReqPerSec, 1),
    uploadRatioPaired: round(upload.pairedRatio, 3),
    uploadsPerRun: upload.n,
    ingestMBps: round(ingest.ingestMBps, 1),
    rawLimitMBps: round(ingest.rawLimitMBps, 1),
    rawSeqMBps: round(ingest.rawSeqMBps, 1),
    rawConcurrentMBps: round(ingest.rawConcurrentMBps, 1),
    ingestRatio: round(ingest.ingestMBps / ingest.rawLimitMBps, 3),
    ingestUploadsPerRun: ingest.n,
    bodyCompressedBytes,
    bodyRawBytes,
    concurrency: C,
    rounds: ROUNDS,
  };
  console.log(JSON.stringify(figures));
}

async function benchUpload(bodies: readonly EncodedBody[]): Promise<{ uploaderReqPerSec: number; undiciReqPerSec: number; pairedRatio: number; n: number }> {
  const server = await startServer('sink');
  const uploader = new HttpUploader({ url: server.url, token: TOKEN, connections: C, keepAliveTimeoutMs: 60_000 });
  const pool = new Pool(server.url, { connections: C, pipelining: 1, keepAliveTimeout: 60_000 });
  try {
    const chunks: ChunkUpload[] = bodies.map((b, index) => ({ reportId: 'bench-upload', index, total: bodies.length, ...b }));
    const digestHeaders = chunks.map((c) => `sha-256=:${Buffer.from(c.sha256, 'hex').toString('base64')}:`);

    const viaUploader = async (i: number): Promise<void> => {
      const res = await uploader.uploadChunk(at(chunks, i % chunks.length));
      if (res.status !== 201) throw new Error(`uploader: status ${res.status}`);
    };
    const viaUndici = async (i: number): Promise<void> => {
      const k = i % chunks.length;
      const c = at(chunks, k);
      const res = await pool.request({
        origin: server.url,
        path: '/v1/chunks',
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-encoding': c.encoding,
          'repr-digest': at(digestHeaders, k),
          'outpost-report-id': c.reportId,
          'outpost-chunk-index': String(c.index),
          'outpost-chunk-total': String(c.total),
          'idempotency-key': `${c.reportId}:${c.index}:${c.sha256}`,
          authorization: `Bearer ${TOKEN}`,
          'user-agent': USER_AGENT,
          accept: 'application/json',
        },
        body: c.body,
      });
      await res.body.json();
      if (res.statusCode !== 201) throw new Error(`undici: status ${res.statusCode}`);
    };

    // Warm-up (JIT, connections) until a pass lasts a second, then size the runs from the faster rate.
    let rate = 0;
    for (let pass = 1, w = 50 * C; ; pass++) {
      const su = await timed(w, C, viaUploader);
      const sb = await timed(w, C, viaUndici);
      rate = Math.max(w / su, w / sb);
      log(`warm-up ${pass}: ${w} uploads each, uploader ${(w / su).toFixed(0)} req/s, undici ${(w / sb).toFixed(0)} req/s`);
      if ((pass >= 2 && Math.min(su, sb) >= 1) || pass === 5) break;
      w = Math.max(w, Math.round(rate * 1.2));
    }
    const n = Math.max(C * 10, Math.round(rate * RUN_SECONDS));

    const ours: number[] = [];
    const theirs: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const order: Array<'uploader' | 'undici'> = r % 2 === 0 ? ['uploader', 'undici'] : ['undici', 'uploader'];
      for (const which of order) {
        const s = await timed(n, C, which === 'uploader' ? viaUploader : viaUndici);
        (which === 'uploader' ? ours : theirs).push(n / s);
        log(`round ${r + 1} ${which.padEnd(8)} ${n} uploads in ${s.toFixed(2)} s: ${(n / s).toFixed(0)} req/s, ${((n * mean(bodies.map((b) => b.body.length))) / s / 1e6).toFixed(0)} MB/s on the wire`);
      }
    }
    const uploaderReqPerSec = median(ours);
    const undiciReqPerSec = median(theirs);
    // Same-round ratios, less sensitive to load that drifts over the whole run.
    const pairedRatio = median(ours.map((x, r) => x / at(theirs, r)));
    log(
      `upload: uploader ${uploaderReqPerSec.toFixed(0)} req/s, undici ${undiciReqPerSec.toFixed(0)} req/s, ` +
        `ratio ${(uploaderReqPerSec / undiciReqPerSec).toFixed(3)} (goal ≥ 0.9; median of same-round ratios ${pairedRatio.toFixed(3)})`,
    );
    return { uploaderReqPerSec, undiciReqPerSec, pairedRatio, n };
  } finally {
    await uploader.close();
    await pool.close();
    await server.stop();
  }
}

async function benchIngest(
  bodies: readonly EncodedBody[],
): Promise<{ ingestMBps: number; rawLimitMBps: number; rawSeqMBps: number; rawConcurrentMBps: number; n: number }> {
  const server = await startServer('ingest');
  const uploader = new HttpUploader({ url: server.url, token: TOKEN, connections: C, keepAliveTimeoutMs: 60_000 });
  const wire = bodies.map((b) => Buffer.from(b.body.buffer, b.body.byteOffset, b.body.byteLength));
  const rawBytesOf = (n: number): number => {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += at(bodies, i % bodies.length).rawBytes;
    return sum;
  };
  let uploads = 0;
  try {
    // Every upload is its own chunk: report `<prefix>-<i / BODIES>`, chunk `i % BODIES` of BODIES.
    const ingestRun = async (prefix: string, n: number): Promise<number> => {
      const s = await timed(n, C, async (i) => {
        const k = i % bodies.length;
        const res = await uploader.uploadChunk({ ...at(bodies, k), reportId: `${prefix}-${Math.floor(i / bodies.length)}`, index: k, total: bodies.length });
        if (res.status !== 201) throw new Error(`ingest: status ${res.status} (duplicate?)`);
      });
      uploads += n;
      return rawBytesOf(n) / s / 1e6;
    };
    const decodeOne = async (i: number): Promise<void> => {
      const out = await decompress(at(wire, i % wire.length));
      createHash('sha256').update(out).digest();
    };
    const rawSeq = async (n: number): Promise<number> => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await decodeOne(i);
      return rawBytesOf(n) / ((performance.now() - t0) / 1000) / 1e6;
    };
    const rawConcurrent = async (n: number): Promise<number> => rawBytesOf(n) / (await timed(n, C, decodeOne)) / 1e6;

    // Warm-up and sizing (runs are whole reports: multiples of BODIES).
    const perRun = (mbps: number, seconds: number): number =>
      Math.max(bodies.length * 2, Math.ceil((mbps * 1e6 * seconds) / mean(bodies.map((b) => b.rawBytes)) / bodies.length) * bodies.length);
    let ingestRate = 0;
    let rawRate = 0;
    for (let pass = 1, w = bodies.length * 4; ; pass++) {
      const t0 = performance.now();
      ingestRate = await ingestRun(`warm${pass}`, w);
      const s = (performance.now() - t0) / 1000;
      rawRate = Math.max(await rawSeq(w), await rawConcurrent(w));
      log(`warm-up ${pass}: ${w} chunks, ingest ${ingestRate.toFixed(0)} MB/s, raw ${rawRate.toFixed(0)} MB/s`);
      if ((pass >= 2 && s >= 1) || pass === 5) break;
      w = Math.max(w, perRun(ingestRate, 1.2));
    }
    const n = perRun(ingestRate, RUN_SECONDS);
    const nRaw = perRun(rawRate, RUN_SECONDS / 2);

    const ingest: number[] = [];
    const seq: number[] = [];
    const conc: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      ingest.push(await ingestRun(`run${r}`, n));
      seq.push(await rawSeq(nRaw));
      conc.push(await rawConcurrent(nRaw));
      log(`round ${r + 1}: ingest ${n} chunks ${fmt(ingest)} MB/s; raw limit (${nRaw} bodies) sequential ${fmt(seq)} MB/s, ×${C} concurrent ${fmt(conc)} MB/s`);
    }
    const ingestMBps = median(ingest);
    const rawSeqMBps = median(seq);
    const rawConcurrentMBps = median(conc);
    const rawLimitMBps = Math.max(rawSeqMBps, rawConcurrentMBps);
    log(`ingest: ${ingestMBps.toFixed(0)} MB/s uncompressed vs raw limit ${rawLimitMBps.toFixed(0)} MB/s, ratio ${(ingestMBps / rawLimitMBps).toFixed(3)} (goal ≥ 0.7)`);
    return { ingestMBps, rawLimitMBps, rawSeqMBps, rawConcurrentMBps, n };
  } finally {
    await uploader.close();
    const { stats, errors } = await server.stop();
    if (stats !== undefined && (stats.stored !== uploads || stats.rejected !== 0 || stats.duplicates !== 0 || errors !== 0)) {
      throw new Error(`ingest server stored ${stats.stored} of ${uploads} uploads (rejected ${stats.rejected}, duplicates ${stats.duplicates}, errors ${errors})`);
    }
    log(`ingest server: ${stats?.stored} chunks stored, ${stats?.delivered} reports delivered, ${stats?.rejected} rejected`);
  }
}

// ---------------------------------------------------------------------------
// Synthetic report chunks

const WORDS = (
  'user input request handler buffer token session query value path file stream parser config secret key cipher random header ' +
  'cookie redirect template render command shell process socket timeout cache record field object array index length offset ' +
  'encode decode escape sanitize validate trust origin script style image upload download archive entry symlink permission owner group mode'
).split(' ');
const DIRS = 'src lib app api internal pkg cmd server client web core utils services handlers models views controllers middleware auth db storage net crypto config'.split(' ');
const EXTS = ['ts', 'js', 'py', 'go', 'java', 'rb', 'php', 'cs'];
const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'];
const KINDS = ['sqli', 'xss', 'path-traversal', 'ssrf', 'weak-crypto', 'hardcoded-secret', 'open-redirect', 'cmd-injection', 'deserialization', 'xxe'];
const RULES = Array.from({ length: 80 }, (_, i) => `${at(KINDS, i % KINDS.length)}-${String((i * 7919) % 1000).padStart(3, '0')}`);
const CWES = [22, 78, 79, 89, 94, 200, 287, 327, 502, 611, 798, 918];

/** A report chunk of `count` findings; deterministic per `seed`, different across seeds. */
function makeChunk(seed: number, count: number): Record<string, unknown> {
  const rand = prng(seed);
  const pick = <T>(list: readonly T[]): T => at(list, Math.floor(rand() * list.length));
  const int = (max: number): number => Math.floor(rand() * max);
  const hex = (digits: number): string => {
    let s = '';
    for (let i = 0; i < digits; i++) s += int(16).toString(16);
    return s;
  };
  const words = (n: number): string => Array.from({ length: n }, () => pick(WORDS)).join(' ');
  const files = Array.from(
    { length: 250 },
    () => `${Array.from({ length: 2 + int(4) }, () => pick(DIRS)).join('/')}/${pick(WORDS)}_${pick(WORDS)}.${pick(EXTS)}`,
  );
  const findings = Array.from({ length: count }, (_, i) => {
    const line = 1 + int(4000);
    return {
      id: `F-${seed}-${String(i).padStart(5, '0')}`,
      ruleId: pick(RULES),
      severity: pick(SEVERITIES),
      confidence: pick([0.3, 0.5, 0.7, 0.9]),
      location: { file: pick(files), line, column: 1 + int(120), endLine: line + int(12) },
      message: `${words(3 + int(5))} in ${pick(WORDS)}_${hex(3)}`,
      snippet: `${pick(WORDS)}.${pick(WORDS)}(${pick(WORDS)}, "${pick(WORDS)}")`,
      fingerprint: hex(12),
      cwe: `CWE-${pick(CWES)}`,
      tags: Array.from({ length: 1 + int(3) }, () => pick(WORDS)),
      assetId: `asset-${int(40)}`,
    };
  });
  return {
    metadata: { scanner: 'outpost-bench', version: '1.0.0', chunk: seed, startedAt: '2025-01-01T00:00:00.000Z' },
    findings,
    assets: Array.from({ length: 40 }, (_, i) => ({ id: `asset-${i}`, kind: 'repository', name: `repo-${i}`, url: `https://git.example.com/org/repo-${i}` })),
  };
}

/** mulberry32. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------
// Helpers

function kb(bytes: number): string {
  return (bytes / 1024).toFixed(1);
}

function fmt(xs: readonly number[]): string {
  return (xs.at(-1) ?? 0).toFixed(0);
}

// Last, so that every module-level constant above is initialised.
if (isMainThread) await main();
else await serve(workerData as ServerKind);
