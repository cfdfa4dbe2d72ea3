/**
 * `npm run bench [-- name ...]`: runs every `bench/*.bench.ts` (or only the
 * named ones, e.g. `transport`) one after another, each in its own process,
 * streaming its output. Exits non-zero when any of them fails.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = dirname(fileURLToPath(import.meta.url));
const SUFFIX = '.bench.ts';
const available = readdirSync(dir)
  .filter((f) => f.endsWith(SUFFIX))
  .map((f) => basename(f, SUFFIX))
  .sort();
const wanted = process.argv.slice(2).map((a) => basename(a).replace(/\.bench(\.ts)?$/, ''));
const unknown = wanted.filter((w) => !available.includes(w));
if (unknown.length > 0) {
  console.error(`Unknown bench: ${unknown.join(', ')} (available: ${available.join(', ') || 'none'})`);
  process.exit(2);
}
const selected = wanted.length > 0 ? available.filter((n) => wanted.includes(n)) : available;

function run(name: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(dir, name + SUFFIX)], { stdio: 'inherit' });
    child.on('error', (err) => {
      console.error(`[bench] ${name}: ${err.message}`);
      resolve(1);
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
  });
}

const failed: string[] = [];
for (const name of selected) {
  console.error(`[bench] ${name}`);
  const code = await run(name);
  if (code !== 0) {
    console.error(`[bench] ${name} failed (exit ${code})`);
    failed.push(name);
  }
}
if (failed.length > 0) {
  console.error(`[bench] failed: ${failed.join(', ')}`);
  process.exitCode = 1;
}
