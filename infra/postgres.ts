// The Postgres of the local stack (when DATABASE_URL is not set from outside and Postgres is asked for).
import { chmodSync, chownSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { run } from './process-run.js';
import { startProcess, type ProcessHandle } from './supervisor.js';
import { toolPaths } from './tools.js';
import { DEFAULT_PORTS, MAX_SOCKET_PATH, assertPortFree, logsDir, shortRuntimeDir } from './stack-common.js';

// ------------------------------------------------------------------ Postgres

export interface PostgresOptions {
  dataDir: string;
  port?: number;
  pgBin?: string;
  log?: (msg: string) => void;
}

async function lookupUser(name: string): Promise<{ uid: number; gid: number }> {
  const [u, g] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])]);
  if (u.code !== 0 || g.code !== 0) throw new Error(`user ${name} does not exist (Debian package postgresql creates it)`);
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** Postgres must reach its data dir: give our own (root-made, e.g. mkdtemp 0700) dirs o+x. */
function makeTraversable(dataDir: string, target: string): void {
  for (let d = dirname(target); d.startsWith(dataDir); d = dirname(d)) {
    const st = statSync(d);
    if ((st.mode & 0o001) === 0) chmodSync(d, (st.mode & 0o7777) | 0o001);
    if (d === dataDir) break;
  }
}

export async function startPostgres(o: PostgresOptions): Promise<{ handle: ProcessHandle; url: string }> {
  const dataDir = resolve(o.dataDir);
  const port = o.port ?? DEFAULT_PORTS.postgres;
  const pgBin = o.pgBin ?? toolPaths().pgBin;
  if (!pgBin || !existsSync(join(pgBin, 'postgres'))) throw new Error('Postgres binaries not found under /usr/lib/postgresql/<ver>/bin (Debian package postgresql)');
  await assertPortFree(port, 'Postgres');

  // Postgres refuses to run as root: as root, run it as the postgres user; otherwise as ourselves.
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? await lookupUser('postgres') : { uid: process.getuid!(), gid: process.getgid!() };
  const pgData = join(dataDir, 'postgres');
  const sockDir = join(dataDir, 'run', 'pg').length + 20 <= MAX_SOCKET_PATH ? join(dataDir, 'run', 'pg') : join(shortRuntimeDir(dataDir), 'pg');
  for (const d of [pgData, sockDir]) {
    mkdirSync(d, { recursive: true, mode: 0o700 });
    if (asRoot) chownSync(d, owner.uid, owner.gid);
    chmodSync(d, 0o700);
  }
  if (asRoot) {
    makeTraversable(dataDir, pgData);
    makeTraversable(dirname(sockDir), sockDir);
    const probe = await run('test', ['-w', pgData, '-a', '-w', sockDir], { uid: owner.uid, gid: owner.gid });
    if (probe.code !== 0) {
      throw new Error(`the postgres user cannot reach ${pgData} or ${sockDir}: a parent directory is not traversable; use a data dir outside /root or set DATABASE_URL`);
    }
  }
  const pgLog = join(logsDir(dataDir), 'postgres.log');
  if (!existsSync(join(pgData, 'PG_VERSION'))) {
    const r = await run(join(pgBin, 'initdb'), ['-D', pgData, '-A', 'trust', '-U', 'kiln', '-E', 'UTF8', '--no-locale'], {
      uid: owner.uid,
      gid: owner.gid,
      cwd: pgData,
      timeoutMs: 120_000,
    });
    if (r.code !== 0) throw new Error(`initdb failed (code ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  const handle = await startProcess({
    name: 'postgres',
    cmd: join(pgBin, 'postgres'),
    args: ['-D', pgData, '-h', '127.0.0.1', '-p', String(port), '-k', sockDir],
    cwd: pgData,
    uid: owner.uid,
    gid: owner.gid,
    logFile: pgLog,
    restart: true,
    stopSignal: 'SIGINT', // "fast" shutdown; SIGTERM would wait for every client to disconnect
    readyTimeoutMs: 60_000,
    log: o.log,
    ready: async () => (await run(join(pgBin, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port)], { timeoutMs: 5_000 })).code === 0,
  });
  try {
    const psql = (sql: string) => run(join(pgBin, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'kiln', '-d', 'postgres', '-tAc', sql], { timeoutMs: 30_000 });
    const exists = await psql("SELECT 1 FROM pg_database WHERE datname = 'kiln'");
    if (exists.code !== 0) throw new Error(`psql failed: ${exists.stderr}`);
    if (exists.stdout.trim() !== '1') {
      const c = await psql('CREATE DATABASE kiln');
      if (c.code !== 0) throw new Error(`CREATE DATABASE kiln failed: ${c.stderr}`);
    }
  } catch (err) {
    await handle.stop();
    throw err;
  }
  return { handle, url: `postgres://kiln@127.0.0.1:${port}/kiln` };
}
