// A real Gitea for tests (built by infra/setup-tools.sh from the Go module proxy, version pinned by
// infra/tools/gitea/go.mod): SQLite, loopback only, its webhooks allowed to reach loopback, one
// admin user with an API token. Talks to it only through its CLI, REST API and git over HTTP.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { toolPaths } from '../../infra/tools';
import { TEST_PORT_OFFSET } from './global-setup';
import { waitFor } from './processes';

/** 13000 with KILN_TEST_PORT_OFFSET=400: each offset gets its own. */
export const GITEA_TEST_PORT = 12600 + TEST_PORT_OFFSET;

export interface Gitea {
  url: string;
  user: string;
  password: string;
  /** An access token of `user` with write access to repositories. */
  token: string;
  /** `fetch` against `/api/v1` as `user` (token auth). */
  api(pathname: string, init?: { method?: string; json?: unknown }): Promise<{ status: number; body: any }>;
  /** Clone URL with the user's credentials in it (for `git push`). */
  authUrl(owner: string, repo: string): string;
  /** Gitea's output so far (for failure messages). */
  output(): string;
  close(): Promise<void>;
}

function run(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${path.basename(bin)} ${args.join(' ')} exited ${code}: ${out.slice(-2000)}`))));
  });
}

export async function startGitea(opts: { port?: number } = {}): Promise<Gitea> {
  const { bin, staticRoot } = toolPaths().gitea;
  if (!existsSync(bin)) throw new Error(`no Gitea at ${bin}: run bash infra/setup-tools.sh`);
  const port = opts.port ?? GITEA_TEST_PORT;
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-gitea-'));
  const url = `http://127.0.0.1:${port}`;
  const config = path.join(dir, 'app.ini');
  await writeFile(
    config,
    [
      // The test machine runs as root; Gitea refuses that unless told.
      'I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true',
      'APP_NAME = Kiln test Gitea',
      'RUN_MODE = prod',
      `WORK_PATH = ${dir}`,
      '[server]',
      'PROTOCOL = http',
      'HTTP_ADDR = 127.0.0.1',
      `HTTP_PORT = ${port}`,
      `ROOT_URL = ${url}/`,
      'DISABLE_SSH = true',
      'START_SSH_SERVER = false',
      'OFFLINE_MODE = true',
      'LFS_START_SERVER = false',
      // No bindata build tag: templates, translations and assets are read from here.
      `STATIC_ROOT_PATH = ${staticRoot}`,
      `APP_DATA_PATH = ${path.join(dir, 'data')}`,
      '[database]',
      'DB_TYPE = sqlite3',
      `PATH = ${path.join(dir, 'gitea.db')}`,
      '[repository]',
      `ROOT = ${path.join(dir, 'repos')}`,
      '[security]',
      'INSTALL_LOCK = true',
      `SECRET_KEY = ${randomBytes(24).toString('hex')}`,
      `INTERNAL_TOKEN = ${randomBytes(48).toString('base64url')}`,
      '[oauth2]',
      `JWT_SECRET = ${randomBytes(32).toString('base64url')}`,
      '[service]',
      'DISABLE_REGISTRATION = true',
      '[webhook]',
      // Kiln listens on 127.0.0.1: Gitea delivers nowhere else.
      'ALLOWED_HOST_LIST = loopback',
      'DELIVER_TIMEOUT = 10',
      '[mailer]',
      'ENABLED = false',
      '[log]',
      'MODE = console',
      'LEVEL = Warn',
      '',
    ].join('\n'),
  );
  const env = { ...process.env, HOME: dir, GITEA_WORK_DIR: dir, USER: 'root' };
  const common = ['--config', config, '--work-path', dir];
  await run(bin, ['migrate', ...common], env);
  const user = 'kiln';
  const password = `pw-${randomBytes(12).toString('hex')}`;
  await run(bin, ['admin', 'user', 'create', ...common, '--admin', '--username', user, '--password', password, '--email', 'kiln@example.invalid', '--must-change-password=false'], env);

  let output = '';
  const child: ChildProcess = spawn(bin, ['web', ...common], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
  child.stderr!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const basic = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  await waitFor(
    'Gitea to answer',
    async () => {
      if (child.exitCode !== null) throw new Error(`Gitea exited ${child.exitCode}: ${output.slice(-3000)}`);
      return fetch(`${url}/api/v1/version`).then((r) => r.ok, () => false);
    },
    120_000,
    250,
  );
  const tokenRes = await fetch(`${url}/api/v1/users/${user}/tokens`, {
    method: 'POST',
    headers: { authorization: basic, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'kiln', scopes: ['write:repository', 'write:user'] }),
  });
  if (tokenRes.status !== 201) throw new Error(`Gitea token: ${tokenRes.status} ${await tokenRes.text()}`);
  const token = ((await tokenRes.json()) as { sha1: string }).sha1;

  return {
    url,
    user,
    password,
    token,
    async api(pathname, init = {}) {
      const res = await fetch(`${url}/api/v1${pathname}`, {
        method: init.method ?? (init.json !== undefined ? 'POST' : 'GET'),
        headers: { authorization: `token ${token}`, ...(init.json !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: init.json !== undefined ? JSON.stringify(init.json) : undefined,
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: res.status, body };
    },
    authUrl: (owner, repo) => `http://${user}:${password}@127.0.0.1:${port}/${owner}/${repo}.git`,
    output: () => output,
    async close() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(killer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
