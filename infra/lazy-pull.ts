/**
 * A private lazy-pull runtime for the bench and the tests that need one: Debian's containerd with
 * its own root, state, sockets and config under one directory, and the stargz snapshotter
 * (containerd-stargz-grpc, infra/tools/stargz) as its `stargz` proxy plugin, pulling plain HTTP
 * from the (loopback) registry. Its state (runc's and ctr's FIFOs too) stays under that directory;
 * only the shim sockets go where containerd 1.6 fixes them, /run/containerd/s (named by a hash of
 * our socket path; removed with the container).
 *
 * Containers run with `ctr run` without --net-host: a fresh network namespace holding only `lo`.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { run } from './process-run';
import { MAX_SOCKET_PATH, shortRuntimeDir } from './stack-common';
import { startProcess, type ProcessHandle } from './supervisor';
import { toolPaths } from './tools';

export type Snapshotter = 'overlayfs' | 'stargz';

/** The label the stargz snapshotter puts on a snapshot it mounted from the registry instead of unpacking. */
export const REMOTE_SNAPSHOT_LABEL = 'containerd.io/snapshot/remote';

export interface LazyPullRuntimeOptions {
  /** Holds everything: config, containerd root/state, snapshotter root, logs (sockets too if the path is short). */
  dir: string;
  /** host:port of the registry the images come from; reached over plain HTTP. */
  registry: string;
  log?: (msg: string) => void;
}

export interface SnapshotInfo {
  key: string;
  kind: string;
  labels: Record<string, string>;
}

export interface ColdStart {
  /** From the start of the pull to the container's first line of output. */
  ms: number;
  pullMs: number;
  firstLine: string;
}

export interface LazyPullRuntime {
  /** containerd's gRPC socket. */
  readonly address: string;
  readonly namespace: string;
  readonly logs: { containerd: string; stargz: string };
  /** Runs ctr against this containerd; throws with its stderr on failure. */
  ctr(args: string[], timeoutMs?: number): Promise<string>;
  /** overlayfs: `ctr image pull` (fetches and unpacks every layer); stargz: `ctr-remote image rpull` (lazy). */
  pull(ref: string, snapshotter: Snapshotter): Promise<void>;
  /** `ctr run --rm` of a pulled image; resolves with the first line once the container has exited. */
  run(ref: string, snapshotter: Snapshotter, argv?: string[]): Promise<{ firstLine: string; firstLineAt: number; output: string }>;
  /** Pull + run, timed from the pull until the first line; call reset() before for a cold start. */
  coldStart(ref: string, snapshotter: Snapshotter, argv?: string[]): Promise<ColdStart>;
  snapshots(snapshotter: Snapshotter): Promise<SnapshotInfo[]>;
  /** Digests in containerd's content store. */
  content(): Promise<string[]>;
  /** FUSE mounts of the stargz snapshotter (one per lazily mounted layer). */
  stargzMounts(): string[];
  /** Stops both daemons, empties the content store and all snapshotter state, starts them again. */
  reset(): Promise<void>;
  stop(): Promise<void>;
  versions(): Promise<{ containerd: string; stargzSnapshotter: string; ctrRemote: string }>;
}

const NAMESPACE = 'kiln-lazy';

export function containerdToml(o: { root: string; state: string; socket: string; stargzSocket: string; opt: string }): string {
  return [
    'version = 2',
    `root = ${JSON.stringify(o.root)}`,
    `state = ${JSON.stringify(o.state)}`,
    // No CRI (Kubernetes) and no snapshotters this machine cannot use; they only add noise.
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
    '[grpc]',
    `  address = ${JSON.stringify(o.socket)}`,
    '[ttrpc]',
    `  address = ${JSON.stringify(`${o.socket}.ttrpc`)}`,
    // The default debug socket is /run/containerd/debug.sock: another containerd's.
    '[debug]',
    `  address = ${JSON.stringify(`${o.socket}.debug`)}`,
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${JSON.stringify(o.opt)}`,
    '[proxy_plugins]',
    '  [proxy_plugins.stargz]',
    '    type = "snapshot"',
    `    address = ${JSON.stringify(o.stargzSocket)}`,
    '',
  ].join('\n');
}

/** containerd-stargz-grpc's config: the registry over plain HTTP (it is on loopback). */
export function stargzToml(registry: string): string {
  return [`[[resolver.host.${JSON.stringify(registry)}.mirrors]]`, `host = ${JSON.stringify(registry)}`, 'insecure = true', ''].join('\n');
}

function unixSocketOpen(path: string): Promise<boolean> {
  return new Promise((r) => {
    const s = createConnection({ path });
    const done = (ok: boolean) => {
      s.destroy();
      r(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Mount points at or below `dir`, deepest first (from /proc/self/mountinfo; octal escapes decoded). */
function mountsUnder(dir: string): string[] {
  const prefix = resolve(dir);
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === prefix || p.startsWith(`${prefix}/`))
    .sort((a, b) => b.length - a.length);
}

export async function startLazyPullRuntime(opts: LazyPullRuntimeOptions): Promise<LazyPullRuntime> {
  const tools = toolPaths().lazyPull;
  for (const [what, p] of Object.entries(tools)) {
    if (!existsSync(p)) throw new Error(`${what}: ${p} not found; run: bash infra/setup-tools.sh`);
  }
  if (!existsSync('/dev/fuse')) throw new Error('/dev/fuse is missing: the stargz snapshotter mounts layers with FUSE');
  const log = opts.log ?? (() => {});
  const dir = resolve(opts.dir);
  const sockDir = join(dir, 'run').length + 20 <= MAX_SOCKET_PATH ? join(dir, 'run') : join(shortRuntimeDir(dir), 'lazy');
  const address = join(sockDir, 'containerd.sock');
  const stargzSocket = join(sockDir, 'stargz.sock');
  const containerdDir = join(dir, 'containerd');
  const stargzRoot = join(dir, 'stargz');
  const logs = { containerd: join(dir, 'logs', 'containerd.log'), stargz: join(dir, 'logs', 'stargz.log') };
  const containerdConfig = join(dir, 'containerd.toml');
  const stargzConfig = join(dir, 'stargz.toml');
  const fifoDir = join(dir, 'fifo');
  const runcRoot = join(dir, 'runc');
  mkdirSync(sockDir, { recursive: true, mode: 0o700 });
  mkdirSync(join(dir, 'logs'), { recursive: true });
  writeFileSync(
    containerdConfig,
    containerdToml({ root: join(containerdDir, 'root'), state: join(containerdDir, 'state'), socket: address, stargzSocket, opt: join(containerdDir, 'opt') }),
  );
  writeFileSync(stargzConfig, stargzToml(opts.registry));

  const ctrArgs = (args: string[]) => ['--address', address, '--namespace', NAMESPACE, ...args];
  const ctr = async (args: string[], timeoutMs = 300_000, bin = tools.ctr): Promise<string> => {
    const r = await run(bin, ctrArgs(args), { timeoutMs });
    if (r.code !== 0) throw new Error(`${bin} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  };

  let stargz: ProcessHandle | undefined;
  let containerd: ProcessHandle | undefined;
  const startDaemons = async () => {
    stargz = await startProcess({
      name: 'containerd-stargz-grpc',
      cmd: tools.stargzGrpc,
      args: ['-address', stargzSocket, '-root', stargzRoot, '-config', stargzConfig, '-log-level', 'info'],
      logFile: logs.stargz,
      readyTimeoutMs: 30_000,
      log,
      ready: () => unixSocketOpen(stargzSocket),
    });
    containerd = await startProcess({
      name: 'containerd',
      cmd: tools.containerd,
      args: ['--config', containerdConfig],
      logFile: logs.containerd,
      readyTimeoutMs: 30_000,
      log,
      ready: async () => (await run(tools.ctr, ctrArgs(['plugins', 'ls']), { timeoutMs: 5_000 })).stdout.includes('stargz'),
    });
  };
  /** Unmounts whatever a killed daemon left (FUSE layers, container roots), then deletes all state. */
  const wipe = async () => {
    for (const m of mountsUnder(dir)) await run('umount', ['-l', m], { timeoutMs: 10_000 });
    rmSync(containerdDir, { recursive: true, force: true });
    rmSync(stargzRoot, { recursive: true, force: true });
  };
  const stopDaemons = async () => {
    // containerd first: the snapshotter unmounts its layers when it stops (SIGTERM).
    await containerd?.stop();
    await stargz?.stop();
    containerd = stargz = undefined;
  };

  await wipe();
  await startDaemons();

  const runtime: LazyPullRuntime = {
    address,
    namespace: NAMESPACE,
    logs,
    ctr: (args, timeoutMs) => ctr(args, timeoutMs),
    async pull(ref, snapshotter) {
      if (snapshotter === 'stargz') await ctr(['image', 'rpull', '--plain-http', '--snapshotter', 'stargz', ref], 300_000, tools.ctrRemote);
      else await ctr(['image', 'pull', '--plain-http', '--snapshotter', 'overlayfs', ref]);
    },
    run(ref, snapshotter, argv = []) {
      const id = `kiln-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
      return new Promise((resolvePromise, reject) => {
        // No --net-host: the container gets a network namespace of its own with only loopback.
        const child = spawn(tools.ctr, ctrArgs(['run', '--rm', '--fifo-dir', fifoDir, '--runc-root', runcRoot, '--snapshotter', snapshotter, ref, id, ...argv]), { stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        let stderr = '';
        let firstLine: string | undefined;
        let firstLineAt = 0;
        const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
        child.stdout.on('data', (d: Buffer) => {
          output += d.toString('utf8');
          if (firstLine === undefined && output.includes('\n')) {
            firstLineAt = performance.now();
            firstLine = output.slice(0, output.indexOf('\n'));
          }
        });
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
        child.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        child.once('close', (code) => {
          clearTimeout(timer);
          if (code !== 0) return reject(new Error(`ctr run ${ref} (${snapshotter}) exited ${code}: ${stderr.trim()}`));
          if (firstLine === undefined) return reject(new Error(`ctr run ${ref} (${snapshotter}) printed no line: ${JSON.stringify(output)}`));
          resolvePromise({ firstLine, firstLineAt, output });
        });
      });
    },
    async coldStart(ref, snapshotter, argv) {
      const t0 = performance.now();
      await runtime.pull(ref, snapshotter);
      const pulled = performance.now();
      const r = await runtime.run(ref, snapshotter, argv);
      return { ms: r.firstLineAt - t0, pullMs: pulled - t0, firstLine: r.firstLine };
    },
    async snapshots(snapshotter) {
      const keys = (await ctr(['snapshots', '--snapshotter', snapshotter, 'ls']))
        .split('\n')
        .slice(1)
        .map((l) => l.trim().split(/\s+/))
        .filter((cols) => cols[0]);
      const infos: SnapshotInfo[] = [];
      for (const cols of keys) {
        const info = JSON.parse(await ctr(['snapshots', '--snapshotter', snapshotter, 'info', cols[0]!]));
        infos.push({ key: cols[0]!, kind: info.Kind, labels: info.Labels ?? {} });
      }
      return infos;
    },
    async content() {
      return (await ctr(['content', 'ls', '-q'])).split('\n').map((l) => l.trim()).filter(Boolean);
    },
    stargzMounts() {
      const root = resolve(stargzRoot);
      return readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .map((l) => l.split(' '))
        .filter((f) => f[4]?.startsWith(`${root}/`) && f[f.indexOf('-') + 1]?.startsWith('fuse'))
        .map((f) => f[4]!);
    },
    async reset() {
      await stopDaemons();
      await wipe();
      await startDaemons();
    },
    async stop() {
      await stopDaemons();
      await wipe();
    },
    async versions() {
      const [c, s, r] = await Promise.all([
        run(tools.containerd, ['--version'], { timeoutMs: 10_000 }),
        run(tools.stargzGrpc, ['-version'], { timeoutMs: 10_000 }),
        run('dpkg-query', ['-W', '-f=${Version}', 'stargz-snapshotter'], { timeoutMs: 10_000 }),
      ]);
      return {
        containerd: c.stdout.trim().split(/\s+/)[2] ?? c.stdout.trim(),
        stargzSnapshotter: s.stdout.trim().split(/\s+/)[1] ?? s.stdout.trim(),
        ctrRemote: r.stdout.trim(),
      };
    },
  };
  return runtime;
}
