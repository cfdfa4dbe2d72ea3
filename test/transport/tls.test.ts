import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpUploader, encodeBody } from '../../src/transport/index.js';
import { readAll } from '../helpers/http.js';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!hasOpenssl) console.warn('tls.test.ts: skipped because the `openssl` command is absent (.ci/run installs it)');

/** A CA and a server certificate for 127.0.0.1 signed by it, made now with openssl. */
function makeCertificates(dir: string): { ca: string; key: string; cert: string } {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=Outpost Test CA');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'ext.cnf');
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return { ca: read('ca.pem'), key: read('server.key'), cert: read('server.pem') };
}

describe.runIf(hasOpenssl)('HttpUploader over HTTPS', () => {
  let dir: string;
  let server: Server;
  let url: string;
  let ca: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'outpost-tls-'));
    const certs = makeCertificates(dir);
    ca = certs.ca;
    server = createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
      void readAll(req).then(() => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end('{"reportId":"r"}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('uploads to a server whose certificate chains to a custom CA', async () => {
    await using uploader = new HttpUploader({ url, token: 't', ca });
    await expect(uploader.uploadReport({ reportId: 'r', ...(await encodeBody({ a: 1 })) })).resolves.toMatchObject({ status: 201 });
  });

  it('refuses the same server without the CA, as a permanent failure', async () => {
    await using uploader = new HttpUploader({ url, token: 't' });
    await expect(uploader.uploadReport({ reportId: 'r', ...(await encodeBody({ a: 1 })) })).rejects.toMatchObject({
      code: 'OUTPOST_UPLOAD_NETWORK',
      retryable: false,
    });
  });
});
