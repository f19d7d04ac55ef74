/**
 * Where Kiln's pinned external tools live, and how to make sure they are installed.
 * The installing itself is infra/setup-tools.sh (idempotent, fast when everything is present).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const INFRA_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = dirname(INFRA_DIR);
export const SETUP_SCRIPT = join(INFRA_DIR, 'setup-tools.sh');
const BUILDKIT_GO_MOD = join(INFRA_DIR, 'tools', 'buildkit', 'go.mod');
const STARGZ_GO_MOD = join(INFRA_DIR, 'tools', 'stargz', 'go.mod');
const GITEA_GO_MOD = join(INFRA_DIR, 'tools', 'gitea', 'go.mod');

export const TEMPORAL_CLI_VERSION = '1.5.1';
/** Pinned in infra/setup-tools.sh (SCHEMATHESIS_VERSION), installed into a venv in the tools dir. */
export const SCHEMATHESIS_VERSION = '4.32.5';

/** The BuildKit version pinned in infra/tools/buildkit/go.mod (the single place it is pinned). */
export function readBuildkitVersion(goModPath = BUILDKIT_GO_MOD): string {
  const m = /^\s*github\.com\/moby\/buildkit\s+(v\S+)/m.exec(readFileSync(goModPath, 'utf8'));
  if (!m?.[1]) throw new Error(`no github.com/moby/buildkit requirement in ${goModPath}`);
  return m[1];
}
export const BUILDKIT_VERSION: string = readBuildkitVersion();

/** The stargz snapshotter version pinned in infra/tools/stargz/go.mod. */
export function readStargzVersion(goModPath = STARGZ_GO_MOD): string {
  const m = /^\s*(?:require\s+)?github\.com\/containerd\/stargz-snapshotter\s+(v\S+)/m.exec(readFileSync(goModPath, 'utf8'));
  if (!m?.[1]) throw new Error(`no github.com/containerd/stargz-snapshotter requirement in ${goModPath}`);
  return m[1];
}
export const STARGZ_VERSION: string = readStargzVersion();

/** The Gitea version pinned in infra/tools/gitea/go.mod (the real git host of the e2e tests). */
export function readGiteaVersion(goModPath = GITEA_GO_MOD): string {
  const m = /^\s*(?:require\s+)?code\.gitea\.io\/gitea\s+(v\S+)/m.exec(readFileSync(goModPath, 'utf8'));
  if (!m?.[1]) throw new Error(`no code.gitea.io/gitea requirement in ${goModPath}`);
  return m[1];
}
export const GITEA_VERSION: string = readGiteaVersion();

export const REGISTRY_BIN = '/usr/bin/docker-registry';

export interface ToolPaths {
  temporal: string;
  buildkitd: string;
  buildctl: string;
  registry: string;
  busybox: { amd64: string; arm64: string };
  /** The lazy-pull runtime (infra/lazy-pull.ts): stargz snapshotter daemon, Debian's containerd, ctr, ctr-remote. */
  lazyPull: { stargzGrpc: string; containerd: string; ctr: string; ctrRemote: string };
  /** Debian's versioned postgres bin dir, e.g. /usr/lib/postgresql/15/bin ('' if none installed). */
  pgBin: string;
  /** schemathesis' `st`, for the OpenAPI conformance test. */
  schemathesis: string;
  /** Gitea for the tests: the binary, and the dir of its run-time assets (its STATIC_ROOT_PATH). */
  gitea: { bin: string; staticRoot: string };
}

export function toolsDir(): string {
  return process.env.KILN_TOOLS_DIR || join(homedir(), '.cache', 'kiln', 'tools');
}

/** Newest /usr/lib/postgresql/<ver>/bin that holds a postgres binary. */
export function detectPgBin(root = '/usr/lib/postgresql'): string {
  if (!existsSync(root)) return '';
  const versions = readdirSync(root)
    .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : '';
}

/** The first executable `name` on PATH, or `name` itself if there is none (the caller reports it). */
export function onPath(name: string): string {
  for (const d of (process.env.PATH ?? '').split(':')) {
    if (d && existsSync(join(d, name))) return join(d, name);
  }
  return name;
}

export function toolPaths(): ToolPaths {
  const dir = toolsDir();
  const bk = join(dir, `buildkit-${BUILDKIT_VERSION}`);
  return {
    temporal: join(dir, `temporal-${TEMPORAL_CLI_VERSION}`, 'temporal'),
    buildkitd: join(bk, 'buildkitd'),
    buildctl: join(bk, 'buildctl'),
    registry: REGISTRY_BIN,
    busybox: {
      amd64: join(dir, 'busybox', 'amd64', 'busybox'),
      arm64: join(dir, 'busybox', 'arm64', 'busybox'),
    },
    pgBin: detectPgBin(),
    lazyPull: {
      stargzGrpc: join(dir, `stargz-snapshotter-${STARGZ_VERSION}`, 'containerd-stargz-grpc'),
      containerd: onPath('containerd'),
      ctr: onPath('ctr'),
      ctrRemote: onPath('ctr-remote'),
    },
    schemathesis: join(dir, `schemathesis-${SCHEMATHESIS_VERSION}`, 'bin', 'st'),
    gitea: { bin: join(dir, `gitea-${GITEA_VERSION}`, 'gitea'), staticRoot: join(dir, `gitea-${GITEA_VERSION}`) },
  };
}

/**
 * Runs infra/setup-tools.sh with inherited stdio (so long first-time builds show progress), and
 * throws with the script's error lines if it fails. stderr is also teed so it can go in the error.
 */
export async function ensureTools(): Promise<void> {
  const tail: string[] = [];
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn('bash', [SETUP_SCRIPT], { stdio: ['ignore', 'inherit', 'pipe'], cwd: REPO_ROOT });
    child.stderr.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      tail.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      if (tail.length > 50) tail.splice(0, tail.length - 50);
    });
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  if (code !== 0) {
    throw new Error(`infra/setup-tools.sh failed (exit ${code}):\n${tail.join('\n')}`);
  }
}
