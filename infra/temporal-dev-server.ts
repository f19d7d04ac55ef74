// The Temporal dev server of the local stack (a SQLite file in the data dir, Kiln's search attributes registered).
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { run } from './process-run.js';
import { searchAttributeFlags } from '../domain/temporal.js';
import { startProcess, type ProcessHandle } from './supervisor.js';
import { toolPaths } from './tools.js';
import { DEFAULT_PORTS, assertPortFree, logsDir, tcpOpen } from './stack-common.js';

// ------------------------------------------------------------------ Temporal

export interface TemporalDevServerOptions {
  dataDir: string;
  port?: number;
  uiPort?: number;
  temporalBin?: string;
  log?: (msg: string) => void;
}

export async function startTemporalDevServer(
  o: TemporalDevServerOptions,
): Promise<{ handle: ProcessHandle; address: string; uiUrl: string }> {
  const dataDir = resolve(o.dataDir);
  const port = o.port ?? DEFAULT_PORTS.temporal;
  const uiPort = o.uiPort ?? DEFAULT_PORTS.temporalUi;
  const bin = o.temporalBin ?? toolPaths().temporal;
  if (!existsSync(bin)) throw new Error(`Temporal CLI not found at ${bin}; run: bash infra/setup-tools.sh`);
  await assertPortFree(port, 'Temporal dev server (gRPC)');
  await assertPortFree(uiPort, 'Temporal UI');
  mkdirSync(dataDir, { recursive: true });
  const address = `127.0.0.1:${port}`;
  const args = [
    'server', 'start-dev',
    '--db-filename', join(dataDir, 'temporal.db'),
    // WAL with synchronous=NORMAL: a commit no longer waits for its own fsync, which was the dev
    // server's ceiling (92 workflow starts/s here, 231/s with these; a crash of Kiln's process loses
    // nothing, a power cut may lose the last moments' commits).
    '--sqlite-pragma', 'journal_mode=wal',
    '--sqlite-pragma', 'synchronous=normal',
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--ui-port', String(uiPort),
    '--namespace', 'default',
    '--log-level', 'warn',
    // Registered at start so builds can be filtered in the Temporal UI (SPEC §3).
    ...searchAttributeFlags().flatMap((flag) => ['--search-attribute', flag]),
  ];
  // The CLI also reads TEMPORAL_* variables and a config file; keep ours explicit and isolated.
  const cliEnv = { ...process.env, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: 'default' };
  const handle = await startProcess({
    name: 'temporal',
    cmd: bin,
    args,
    env: cliEnv,
    logFile: join(logsDir(dataDir), 'temporal.log'),
    restart: true,
    readyTimeoutMs: 120_000,
    log: o.log,
    ready: async () => {
      if (!(await tcpOpen('127.0.0.1', port))) return false;
      const r = await run(bin, ['operator', 'namespace', 'describe', '--namespace', 'default', '--address', address, '--disable-config-file'], {
        timeoutMs: 10_000,
        env: cliEnv,
      });
      return r.code === 0;
    },
  });
  return { handle, address, uiUrl: `http://127.0.0.1:${uiPort}` };
}

// ------------------------------------------------------------------ Registry
