/**
 * The local, single-machine stack Kiln runs on (SPEC §1, §6): Temporal dev server, a CNCF
 * Distribution registry, one buildkitd that builds linux/amd64 and linux/arm64 (arm64 through
 * QEMU binfmt), and optionally Postgres. Each part configured from outside is skipped.
 */
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { ensureBaseImage } from './base-image.js';
import { buildNetworkFor, cniConfList, installBuildFirewall, routedSubnets, type BuildNetwork, type NetworkAllowEntry } from './build-network.js';
import { run } from './process-run.js';
import { PLATFORMS } from '../domain/platforms.js';
import { searchAttributeFlags } from '../domain/temporal.js';
import { startProcess, type ProcessHandle } from './supervisor.js';
import { ensureTools as runSetupTools, toolPaths } from './tools.js';

export type { ProcessHandle } from './supervisor.js';
export { run } from './process-run.js';


/** Kiln's search attributes by name and CLI type (domain/temporal.ts). */
export const SEARCH_ATTRIBUTES: Record<string, string> = Object.fromEntries(
  searchAttributeFlags().map((flag) => flag.split('=') as [string, string]),
);

export const DEFAULT_PORTS = { temporal: 7233, temporalUi: 8233, registry: 5000, postgres: 55432 } as const;

export interface StackOptions {
  dataDir: string;
  /** Use this Temporal frontend (host:port); start no dev server. */
  temporalAddress?: string;
  /** Use this registry (host:port); start none. */
  registry?: string;
  /** Use these buildkitd addresses (unix:// or tcp://); a local one serves any arch not given. */
  buildkitAmd64?: string;
  buildkitArm64?: string;
  ports?: { temporal?: number; temporalUi?: number; registry?: number; postgres?: number };
  withPostgres?: boolean;
  /** Pull-through mirrors for the local buildkitd (KILN_REGISTRY_MIRRORS); see buildkitdToml. */
  registryMirrors?: RegistryMirrors;
  /** Exceptions to the build firewall of the local buildkitd (KILN_BUILD_NETWORK_ALLOW). */
  buildNetworkAllow?: NetworkAllowEntry[];
  /** Registry events (pushes, deletes) are POSTed here with `Authorization: Bearer <token>`. */
  registryNotifications?: { url: string; token: string };
  /** Start the local registry with token auth, Kiln as the issuer. */
  registryTokenAuth?: RegistryTokenAuth;
  log?: (msg: string) => void;
  /** Run infra/setup-tools.sh first (default true; it is quick when everything is present). */
  ensureTools?: boolean;
  /** Push the busybox base image (base/busybox:latest) if missing (default: when a local buildkitd runs). */
  baseImage?: boolean;
}

export interface Stack {
  temporalAddress: string;
  temporalUiUrl: string | null;
  /** host:port */
  registry: string;
  /** unix:///... (or whatever address was given) per platform */
  buildkit: { 'linux/amd64': string; 'linux/arm64': string };
  postgresUrl?: string;
  components: Record<string, ProcessHandle>;
  stop(): Promise<void>;
}

// ------------------------------------------------------------------ small helpers

/** True if something accepts TCP connections on host:port. */
export function tcpOpen(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((r) => {
    const s = createConnection({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      r(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Throws a clear error if host:port cannot be bound (most likely another Kiln is running). */
export async function assertPortFree(port: number, what: string, host = '127.0.0.1'): Promise<void> {
  await new Promise<void>((ok, fail) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE'
          ? `port ${port} on ${host} is already in use — is another Kiln (or ${what}) running? Stop it, choose another port, or point Kiln at the running one`
          : `cannot listen on ${host}:${port}: ${err.message}`;
      fail(new Error(`${what}: ${why}`));
    });
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => ok()));
  });
}

async function httpStatus(url: string, timeoutMs = 2000): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return 0;
  }
}

function logsDir(dataDir: string): string {
  return join(dataDir, 'logs');
}

/** sockaddr_un.sun_path holds 108 bytes; keep a margin. */
const MAX_SOCKET_PATH = 100;

/** A short per-data-dir directory for sockets when the data dir path is too long for them. */
export function shortRuntimeDir(dataDir: string): string {
  const hash = createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 12);
  return join('/tmp', `kiln-${hash}`);
}

export function buildkitSocketPath(dataDir: string): string {
  const preferred = join(resolve(dataDir), 'buildkit', 'buildkitd.sock');
  return preferred.length <= MAX_SOCKET_PATH ? preferred : join(shortRuntimeDir(dataDir), 'buildkitd.sock');
}

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

/** Distribution `auth: token` settings: Kiln's realm issues the tokens (api/routes/registry-token.ts). */
export interface RegistryTokenAuth {
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate of Kiln's signing key (infra/registry-token-keys.ts). */
  rootCertBundle: string;
}

export interface RegistryOptions {
  dataDir: string;
  port?: number;
  notifications?: { url: string; token: string };
  tokenAuth?: RegistryTokenAuth;
  registryBin?: string;
  log?: (msg: string) => void;
}

/** Distribution 2.8 configuration (YAML; JSON strings are valid YAML scalars, hence JSON.stringify). */
export function registryConfigYaml(o: { rootDir: string; port: number; notifications?: { url: string; token: string }; tokenAuth?: RegistryTokenAuth }): string {
  const q = JSON.stringify;
  const lines = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  fields:',
    '    service: registry',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${q(o.rootDir)}`,
    '  delete:',
    '    enabled: true',
    // No blob descriptor cache: the in-memory one can report blobs that were just deleted.
    'http:',
    `  addr: ${q(`127.0.0.1:${o.port}`)}`,
    '  headers:',
    '    X-Content-Type-Options: [nosniff]',
  ];
  if (o.tokenAuth) {
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${q(o.tokenAuth.realm)}`,
      `    service: ${q(o.tokenAuth.service)}`,
      `    issuer: ${q(o.tokenAuth.issuer)}`,
      `    rootcertbundle: ${q(o.tokenAuth.rootCertBundle)}`,
    );
  }
  if (o.notifications) {
    lines.push(
      'notifications:',
      '  events:',
      '    includereferences: true',
      '  endpoints:',
      '    - name: kiln',
      `      url: ${q(o.notifications.url)}`,
      '      headers:',
      `        Authorization: [${q(`Bearer ${o.notifications.token}`)}]`,
      '      timeout: 1s',
      '      threshold: 5',
      '      backoff: 1s',
      // Kiln records tag pushes only: layer uploads and every pull would be traffic for nothing.
      '      ignore:',
      '        mediatypes: [application/octet-stream]',
      '        actions: [pull]',
    );
  }
  return lines.join('\n') + '\n';
}

export async function startRegistry(o: RegistryOptions): Promise<{ handle: ProcessHandle; address: string }> {
  const dataDir = resolve(o.dataDir);
  const port = o.port ?? DEFAULT_PORTS.registry;
  const bin = o.registryBin ?? toolPaths().registry;
  if (!existsSync(bin)) throw new Error(`registry binary not found at ${bin} (Debian package docker-registry); run: bash infra/setup-tools.sh`);
  await assertPortFree(port, 'registry');
  const rootDir = join(dataDir, 'registry');
  mkdirSync(rootDir, { recursive: true });
  const configFile = join(dataDir, 'registry.yml');
  // 0600: the notification token is a secret.
  writeFileSync(configFile, registryConfigYaml({ rootDir, port, notifications: o.notifications, tokenAuth: o.tokenAuth }), { mode: 0o600 });
  chmodSync(configFile, 0o600);
  const address = `127.0.0.1:${port}`;
  const handle = await startProcess({
    name: 'registry',
    cmd: bin,
    args: ['serve', configFile],
    logFile: join(logsDir(dataDir), 'registry.log'),
    restart: true,
    readyTimeoutMs: 30_000,
    log: o.log,
    // With token auth /v2/ answers 401 and a challenge: that is a registry up and serving.
    ready: async () => (await httpStatus(`http://${address}/v2/`)) === (o.tokenAuth ? 401 : 200),
  });
  return { handle, address };
}

// ------------------------------------------------------------------ BuildKit

export interface BuildkitdOptions {
  dataDir: string;
  buildkitd?: string;
  buildctl?: string;
  /** Registries (host:port) not on loopback that speak plain HTTP. */
  plainHttpRegistries?: string[];
  /** Pull-through mirrors per registry host, tried in order before it (see buildkitdToml). */
  registryMirrors?: RegistryMirrors;
  /** Used to prove arm64 emulation works (runs `busybox uname -m` through binfmt). */
  busyboxArm64?: string;
  /** Exceptions to the build firewall (KILN_BUILD_NETWORK_ALLOW). */
  networkAllow?: NetworkAllowEntry[];
  /**
   * `host`: RUN steps share the host's network, no firewall: the design before the sandbox, kept
   * only so `npm run bench` can measure what the sandbox costs. Never for builds of tenants.
   */
  unsandboxedForBench?: boolean;
  log?: (msg: string) => void;
}

/** Debian's containernetworking-plugins. */
export const CNI_BIN_DIR = '/usr/lib/cni';

/**
 * Registry host (`docker.io`, `ghcr.io`, `host:port`) → its mirrors (`host[:port]`, or
 * `http://host[:port]` for a plain-HTTP mirror off loopback), tried in order before the registry
 * itself. `FROM busybox` is `docker.io/library/busybox`, so a mirror for `docker.io` holding
 * `library/busybox` serves it.
 */
export type RegistryMirrors = Record<string, string[]>;

/** Splits `http://host:port` into the host BuildKit is given and whether it speaks plain HTTP. */
export function parseMirror(mirror: string): { host: string; plainHttp: boolean } {
  const m = /^(?:(https?):\/\/)?([^/\s]+?)\/*$/.exec(mirror.trim());
  if (!m?.[2]) throw new Error(`not a registry mirror (host[:port], optionally with http://): "${mirror}"`);
  return { host: m[2], plainHttp: m[1] === 'http' };
}

export function buildkitdToml(plainHttpRegistries: string[] = [], mirrors: RegistryMirrors = {}, network?: BuildNetwork & { cniConfigPath: string }): string {
  const lines = [
    '# Generated by Kiln (infra/stack.ts).',
    // No insecure entitlements (RUN --network=host, --security=insecure are refused).
    'insecure-entitlements = []',
    '[worker.oci]',
    '  gc = true',
    ...(network
      ? [
          // RUN steps get a network namespace on this bridge; infra/build-network.ts firewalls it.
          '  networkMode = "cni"',
          `  cniBinaryPath = ${JSON.stringify(CNI_BIN_DIR)}`,
          `  cniConfigPath = ${JSON.stringify(network.cniConfigPath)}`,
          // Namespaces are made ahead and reused (steps with a custom hostname excepted).
          '  cniPoolSize = 4',
        ]
      : []),
    '[worker.containerd]',
    '  enabled = false',
  ];
  // One [registry."host"] table per host (TOML forbids repeating one), merging both settings.
  const hosts = new Map<string, { mirrors: string[]; http: boolean }>();
  const entry = (host: string) => {
    let e = hosts.get(host);
    if (!e) hosts.set(host, (e = { mirrors: [], http: false }));
    return e;
  };
  // Loopback registries are plain HTTP without configuration; others need this (not `insecure`).
  for (const r of plainHttpRegistries) entry(r).http = true;
  for (const [registry, list] of Object.entries(mirrors)) {
    for (const m of list) {
      const { host, plainHttp } = parseMirror(m);
      entry(registry).mirrors.push(host);
      if (plainHttp && !isLoopback(host)) entry(host).http = true;
    }
  }
  for (const [host, e] of hosts) {
    lines.push(`[registry.${JSON.stringify(host)}]`);
    if (e.mirrors.length) lines.push(`  mirrors = [${e.mirrors.map((m) => JSON.stringify(m)).join(', ')}]`);
    if (e.http) lines.push('  http = true');
  }
  return lines.join('\n') + '\n';
}

/** Lists the platforms of `buildctl debug workers -v`, or throws with buildctl's error. */
export async function buildkitPlatforms(buildctl: string, addr: string): Promise<string[]> {
  const r = await run(buildctl, ['--addr', addr, 'debug', 'workers', '-v'], { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`buildctl debug workers failed at ${addr}: ${r.stderr.trim()}`);
  return [...r.stdout.matchAll(/^Platforms:\s*(.*)$/gm)].flatMap((m) => (m[1] ?? '').split(',').map((s) => s.trim()).filter(Boolean));
}

/**
 * buildkitd lists whatever --oci-worker-platform says, emulated or not, so the worker list alone
 * proves nothing about arm64: check the binfmt entry and actually run an arm64 binary.
 */
export async function checkArm64Emulation(busyboxArm64?: string): Promise<void> {
  const entry = '/proc/sys/fs/binfmt_misc/qemu-aarch64';
  let text = '';
  try {
    text = readFileSync(entry, 'utf8');
  } catch {
    throw new Error(`arm64 emulation is missing: ${entry} does not exist (binfmt_misc not mounted or qemu-aarch64 not registered); run: bash infra/setup-tools.sh`);
  }
  if (!/^enabled/m.test(text)) throw new Error(`arm64 emulation is disabled: ${entry} is not enabled (update-binfmts --enable qemu-aarch64)`);
  if (!/^flags:.*F/m.test(text)) throw new Error(`arm64 emulation lacks the F flag in ${entry}; buildkitd's containers cannot reach the interpreter without it`);
  if (busyboxArm64 && existsSync(busyboxArm64)) {
    const r = await run(busyboxArm64, ['uname', '-m'], { timeoutMs: 20_000 });
    if (r.code !== 0 || r.stdout.trim() !== 'aarch64') {
      throw new Error(`arm64 emulation does not work: ${busyboxArm64} uname -m gave code ${r.code}, "${r.stdout.trim()}" ${r.stderr.trim()}`);
    }
  }
}

export async function startBuildkitd(o: BuildkitdOptions): Promise<{ handle: ProcessHandle; address: string; network: BuildNetwork }> {
  const dataDir = resolve(o.dataDir);
  const tools = toolPaths();
  const buildkitd = o.buildkitd ?? tools.buildkitd;
  const buildctl = o.buildctl ?? tools.buildctl;
  for (const b of [buildkitd, buildctl]) if (!existsSync(b)) throw new Error(`${b} not found; run: bash infra/setup-tools.sh`);
  const runcOk = (await run('runc', ['--version'], { timeoutMs: 10_000 })).code === 0;
  if (!runcOk) throw new Error('runc is not on PATH (Debian package runc); buildkitd\'s OCI worker needs it');
  await checkArm64Emulation(o.busyboxArm64 ?? tools.busybox.arm64);

  const bkDir = join(dataDir, 'buildkit');
  const root = join(bkDir, 'root');
  mkdirSync(root, { recursive: true });
  const sock = buildkitSocketPath(dataDir);
  mkdirSync(dirname(sock), { recursive: true, mode: 0o700 });
  const address = `unix://${sock}`;
  // buildkitd replaces a leftover socket file; make sure it is not a live daemon's (same data dir).
  if (existsSync(sock) && (await run(buildctl, ['--addr', address, 'debug', 'workers'], { timeoutMs: 5_000 })).code === 0) {
    throw new Error(`a buildkitd is already serving ${address} — another Kiln is using the data dir ${dataDir}`);
  }
  if (!existsSync(join(CNI_BIN_DIR, 'bridge'))) {
    throw new Error(`CNI plugins not found in ${CNI_BIN_DIR} (Debian package containernetworking-plugins); run: bash infra/setup-tools.sh`);
  }
  const network = buildNetworkFor(dataDir, await routedSubnets());
  // The firewall goes up before the daemon: no step ever runs on an open bridge.
  const firewall = o.unsandboxedForBench ? { remove: async () => {} } : await installBuildFirewall({ network, allow: o.networkAllow });
  const configFile = join(bkDir, 'buildkitd.toml');
  const cniConfigPath = join(bkDir, 'cni.conflist');
  writeFileSync(cniConfigPath, cniConfList(network));
  writeFileSync(configFile, buildkitdToml(o.plainHttpRegistries, o.registryMirrors, o.unsandboxedForBench ? undefined : { ...network, cniConfigPath }));

  const daemon = await startProcess({
    name: 'buildkitd',
    cmd: buildkitd,
    args: [
      '--config', configFile,
      '--addr', address,
      '--root', root,
      '--oci-worker=true',
      '--containerd-worker=false',
      '--oci-worker-snapshotter=overlayfs',
      '--oci-worker-platform', 'linux/amd64',
      '--oci-worker-platform', 'linux/arm64',
      // The CNI config path is in the toml: BuildKit v0.26's --oci-cni-config-path flag reads the wrong name.
      ...(o.unsandboxedForBench ? ['--oci-worker-net', 'host'] : ['--oci-worker-net', 'cni', '--oci-cni-binary-dir', CNI_BIN_DIR]),
    ],
    // BuildKit clips a step's log at 2 MiB and 200 KiB/s by default; unclipped, KILN_MAX_LOG_BYTES is the cap.
    env: { ...process.env, BUILDKIT_STEP_LOG_MAX_SIZE: '-1', BUILDKIT_STEP_LOG_MAX_SPEED: '-1' },
    logFile: join(logsDir(dataDir), 'buildkitd.log'),
    restart: true,
    readyTimeoutMs: 120_000,
    log: o.log,
    ready: async () => (await run(buildctl, ['--addr', address, 'debug', 'workers'], { timeoutMs: 5_000 })).code === 0,
  }).catch(async (err) => {
    await firewall.remove().catch(() => undefined);
    throw err;
  });
  // Stopping the daemon takes its firewall and bridge down with it; start() puts them back first.
  const handle: ProcessHandle = {
    name: daemon.name,
    logFile: daemon.logFile,
    get pid() {
      return daemon.pid;
    },
    get running() {
      return daemon.running;
    },
    get restarts() {
      return daemon.restarts;
    },
    kill: (signal) => daemon.kill(signal),
    waitReady: (timeoutMs) => daemon.waitReady(timeoutMs),
    async stop() {
      await daemon.stop();
      await firewall.remove();
    },
    async start() {
      if (!o.unsandboxedForBench) await installBuildFirewall({ network, allow: o.networkAllow });
      await daemon.start();
    },
  };
  try {
    const platforms = await buildkitPlatforms(buildctl, address);
    for (const p of PLATFORMS) {
      if (!platforms.includes(p)) throw new Error(`buildkitd at ${address} cannot build ${p} (workers list: ${platforms.join(', ')}); is binfmt for qemu-aarch64 missing?`);
    }
  } catch (err) {
    await handle.stop();
    throw err;
  }
  return { handle, address, network };
}

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

// ------------------------------------------------------------------ the whole stack

function isLoopback(hostPort: string): boolean {
  const host = hostPort.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  const log = opts.log ?? ((m: string) => console.error(`[kiln-stack] ${m}`));
  const dataDir = resolve(opts.dataDir);
  mkdirSync(logsDir(dataDir), { recursive: true });
  if (opts.ensureTools !== false) await runSetupTools();
  const tools = toolPaths();
  const ports = { ...DEFAULT_PORTS, ...opts.ports };

  // Registered in start order; stop() goes in reverse.
  const started: Array<[string, ProcessHandle]> = [];
  const stopAll = async () => {
    for (const [name, h] of [...started].reverse()) {
      try {
        await h.stop();
      } catch (err) {
        log(`stopping ${name} failed: ${(err as Error).message}`);
      }
    }
  };
  const track = <T extends { handle: ProcessHandle }>(name: string, p: Promise<T>): Promise<T> =>
    p.then((r) => {
      started.push([name, r.handle]);
      return r;
    });

  let plainHttp: string[] = [];
  if (opts.registry && !isLoopback(opts.registry)) {
    // An outside registry that answers plain HTTP needs buildkitd's `http = true` for its host.
    const s = await httpStatus(`http://${opts.registry}/v2/`);
    if (s === 200 || s === 401) plainHttp = [opts.registry];
  }
  const needLocalBuildkit = !opts.buildkitAmd64 || !opts.buildkitArm64;

  const results = await Promise.allSettled([
    opts.temporalAddress
      ? Promise.resolve(undefined)
      : track('temporal', startTemporalDevServer({ dataDir, port: ports.temporal, uiPort: ports.temporalUi, temporalBin: tools.temporal, log })),
    opts.registry
      ? Promise.resolve(undefined)
      : track('registry', startRegistry({ dataDir, port: ports.registry, notifications: opts.registryNotifications, tokenAuth: opts.registryTokenAuth, log })),
    needLocalBuildkit
      ? track('buildkitd', startBuildkitd({ dataDir, plainHttpRegistries: plainHttp, registryMirrors: opts.registryMirrors, networkAllow: opts.buildNetworkAllow, busyboxArm64: tools.busybox.arm64, log }))
      : Promise.resolve(undefined),
    opts.withPostgres ? track('postgres', startPostgres({ dataDir, port: ports.postgres, pgBin: tools.pgBin, log })) : Promise.resolve(undefined),
  ]);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failures.length) {
    await stopAll();
    throw new Error(`Kiln stack failed to start:\n${failures.map((f) => `- ${(f.reason as Error)?.message ?? f.reason}`).join('\n')}`);
  }
  const [temporal, registry, buildkitd, postgres] = results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
    Awaited<ReturnType<typeof startTemporalDevServer>> | undefined,
    Awaited<ReturnType<typeof startRegistry>> | undefined,
    Awaited<ReturnType<typeof startBuildkitd>> | undefined,
    Awaited<ReturnType<typeof startPostgres>> | undefined,
  ];

  const localBk = buildkitd?.address;
  const stack: Stack = {
    temporalAddress: opts.temporalAddress ?? temporal!.address,
    temporalUiUrl: temporal?.uiUrl ?? null,
    registry: opts.registry ?? registry!.address,
    buildkit: {
      'linux/amd64': opts.buildkitAmd64 ?? localBk!,
      'linux/arm64': opts.buildkitArm64 ?? localBk!,
    },
    postgresUrl: postgres?.url,
    components: Object.fromEntries(started),
    stop: stopAll,
  };

  // The base image is made with the local buildkitd (it builds both platforms); with only outside
  // builders (e.g. docker compose) it is opt-in, as those hosts need not have busybox binaries.
  // With token auth the realm (Kiln's API) is not up yet: infra/start.ts pushes it once it is.
  if (opts.baseImage ?? (!!localBk && !opts.registryTokenAuth)) {
    try {
      await ensureBaseImage({
        registry: stack.registry,
        buildctl: tools.buildctl,
        buildkitAddr: localBk ?? stack.buildkit['linux/amd64'],
        busybox: tools.busybox,
        workDir: join(dataDir, 'base-image'),
        insecure: plainHttp.length > 0,
        log,
      });
    } catch (err) {
      await stopAll();
      throw err;
    }
  }
  log(
    `stack ready: temporal ${stack.temporalAddress}${stack.temporalUiUrl ? ` (UI ${stack.temporalUiUrl})` : ''}, registry ${stack.registry}, ` +
      `buildkit ${stack.buildkit['linux/amd64']}${stack.buildkit['linux/arm64'] !== stack.buildkit['linux/amd64'] ? ` + ${stack.buildkit['linux/arm64']}` : ''}` +
      (stack.postgresUrl ? `, postgres ${stack.postgresUrl}` : ''),
  );
  return stack;
}

/** Stops the stack on SIGINT/SIGTERM, then exits (for long-running entry points like npm start). */
export function stopOnSignals(stack: Pick<Stack, 'stop'>, before?: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    void (async () => {
      try {
        await before?.();
      } finally {
        await stack.stop();
        process.exit(sig === 'SIGINT' ? 130 : 143);
      }
    })();
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}
