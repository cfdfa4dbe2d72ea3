/**
 * Runs a benchmark's loopback server in a worker thread, so it does not
 * compete with the measured code for the main event loop. The worker is the
 * calling module itself, loaded again with `workerData`; it posts
 * `{ port }` once listening, and its closing figures when sent `'close'`.
 */
import { Worker } from 'node:worker_threads';

/** A server running in a worker thread. */
export interface WorkerServer<Bye> {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Closes the server and the worker; resolves with the figures the worker sent back. */
  stop(): Promise<Bye>;
}

/** Starts `moduleUrl` in a worker with `data` as its `workerData`, and waits until it listens. */
export async function startWorkerServer<Bye extends object>(moduleUrl: string, data: unknown): Promise<WorkerServer<Bye>> {
  // Workers do not inherit tsx's loader hooks on Node 20: register them, then load the module.
  const bootstrap = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})
    .then((tsx) => { tsx.register(); return import(${JSON.stringify(moduleUrl)}); })`;
  const worker = new Worker(bootstrap, { eval: true, workerData: data });
  const next = (): Promise<{ port: number } | Bye> =>
    new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      worker.once('error', onError);
      worker.once('message', (m: { port: number } | Bye) => {
        worker.off('error', onError);
        resolve(m);
      });
    });
  const hello = await next();
  if (!('port' in hello)) throw new Error('unexpected first message from the server worker');
  return {
    url: `http://127.0.0.1:${hello.port}`,
    async stop() {
      const done = next();
      worker.postMessage('close');
      const bye = await done;
      await new Promise((resolve) => worker.once('exit', resolve));
      if ('port' in bye) throw new Error('unexpected message from the server worker');
      return bye;
    },
  };
}
