import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface BuildctlExit {
  code: number | null;
  signal: string | null;
  /** True when the run was stopped through `signal`. */
  canceled: boolean;
}

/**
 * Runs buildctl, handing every stderr line (rawjson progress and plain messages) to `onLine`.
 * On abort it sends ONE SIGINT, which makes buildctl cancel the solve on the daemon (the daemon
 * then kills the RUN containers), and waits for it to exit; SIGKILL only if it hangs.
 */
export function runBuildctl(opts: {
  buildctl: string;
  args: string[];
  signal?: AbortSignal;
  onLine: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}): Promise<BuildctlExit> {
  return new Promise((resolve, reject) => {
    const child = spawn(opts.buildctl, opts.args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    });
    let canceled = false;
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      if (canceled) return;
      canceled = true;
      child.kill('SIGINT');
      killTimer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    };
    if (opts.signal?.aborted) onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    const lines = createInterface({ input: child.stderr! });
    lines.on('line', (line) => opts.onLine(line));
    // With a metadata file, stdout carries nothing we need; drain it so buildctl never blocks.
    child.stdout!.resume();

    child.on('error', (err) => {
      opts.signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(killTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({ code, signal, canceled });
    });
  });
}
