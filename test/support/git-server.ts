// A real git server for tests: smart HTTP through `git http-backend` (CGI) behind node:http on
// 127.0.0.1. Repositories are bare repos under `root`; commits are written with git plumbing
// straight into the bare repo (real objects, real refs). Private repos demand HTTP basic auth.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface GitServerOptions {
  /** Where bare repos live; a temp dir (removed on close) when omitted. */
  root?: string;
  /** Credentials private repos require. Any username is accepted when `username` is '*'. */
  auth?: { username: string; password: string } | null;
}

/** A file's new content, `null` to delete it, or a symlink to `symlink`. */
export type FileChange = string | null | { symlink: string };

export interface GitRequestRecord {
  method: string;
  path: string;
  user: string | null;
  status: number;
}

export interface GitServer {
  /** Clone URL of `repoName` (`http://127.0.0.1:PORT/<repoName>.git`). */
  url(repoName: string): string;
  createRepo(name: string, opts?: { private?: boolean }): Promise<void>;
  /**
   * Commits `files` on top of `branch` (created when missing, from `from` — a branch or commit —
   * or as a root commit) and returns the new commit's SHA.
   */
  commit(repo: string, opts: { branch: string; files: Record<string, FileChange>; message?: string; from?: string }): Promise<string>;
  tag(repo: string, name: string, commitOrBranch: string, opts?: { annotated?: boolean; message?: string }): Promise<void>;
  deleteBranch(repo: string, branch: string): Promise<void>;
  /** Every HTTP request served, for assertions. */
  requests: GitRequestRecord[];
  root: string;
  close(): Promise<void>;
}

const IDENTITY = {
  GIT_AUTHOR_NAME: 'Kiln Test',
  GIT_AUTHOR_EMAIL: 'test@kiln.invalid',
  GIT_COMMITTER_NAME: 'Kiln Test',
  GIT_COMMITTER_EMAIL: 'test@kiln.invalid',
};

function git(args: string[], opts: { cwd?: string; env?: Record<string, string>; input?: string | Buffer } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, {
      cwd: opts.cwd,
      env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', ...IDENTITY, ...opts.env },
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new Error(`git ${args.join(' ')} exited ${code}: ${Buffer.concat(err).toString('utf8')}`));
    });
    if (child.stdin) {
      child.stdin.on('error', () => {});
      child.stdin.end(opts.input);
    }
  });
}

function safeRepoName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(name) || name.split('/').includes('..')) throw new Error(`bad repo name ${name}`);
  return name.replace(/\.git$/, '');
}

export async function startGitServer(opts: GitServerOptions = {}): Promise<GitServer> {
  const ownRoot = !opts.root;
  const root = opts.root ?? (await mkdtemp(path.join(tmpdir(), 'kiln-git-')));
  await mkdir(root, { recursive: true });
  const auth = opts.auth === undefined ? { username: 'x-access-token', password: 'test-token' } : opts.auth;
  const privateRepos = new Set<string>();
  const requests: GitRequestRecord[] = [];

  const gitDir = (repo: string) => path.join(root, `${safeRepoName(repo)}.git`);

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const record: GitRequestRecord = { method: req.method ?? 'GET', path: url.pathname, user: null, status: 0 };
    requests.push(record);
    const reply = (status: number, body: string, headers: Record<string, string> = {}) => {
      record.status = status;
      res.writeHead(status, { 'content-type': 'text/plain', ...headers });
      res.end(body);
    };
    const m = /^\/(.+?)\.git(\/.*)?$/.exec(decodeURIComponent(url.pathname));
    if (!m) return reply(404, 'not found\n');
    const repo = m[1]!;

    // Basic auth: required for private repos; wrong credentials are refused everywhere.
    let user: string | null = null;
    const header = req.headers.authorization;
    if (header) {
      const b = /^Basic\s+(.+)$/i.exec(header);
      const decoded = b ? Buffer.from(b[1]!, 'base64').toString('utf8') : '';
      const colon = decoded.indexOf(':');
      const u = colon >= 0 ? decoded.slice(0, colon) : decoded;
      const p = colon >= 0 ? decoded.slice(colon + 1) : '';
      const ok = !!auth && p === auth.password && (auth.username === '*' || u === auth.username);
      if (!ok) return reply(401, 'bad credentials\n', { 'www-authenticate': 'Basic realm="kiln-test-git"' });
      user = u;
    } else if (privateRepos.has(repo)) {
      return reply(401, 'authentication required\n', { 'www-authenticate': 'Basic realm="kiln-test-git"' });
    }
    record.user = user;

    const env: Record<string, string> = {
      ...process.env,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      PATH_INFO: `/${repo}.git${m[2] ?? ''}`,
      REQUEST_METHOD: req.method ?? 'GET',
      QUERY_STRING: url.search.replace(/^\?/, ''),
      REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
      CONTENT_TYPE: req.headers['content-type'] ?? '',
    } as Record<string, string>;
    if (user) env.REMOTE_USER = user;
    if (req.headers['content-length']) env.CONTENT_LENGTH = String(req.headers['content-length']);
    if (req.headers['content-encoding']) env.HTTP_CONTENT_ENCODING = String(req.headers['content-encoding']);
    if (req.headers['git-protocol']) env.GIT_PROTOCOL = String(req.headers['git-protocol']);

    const cgi = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    req.pipe(cgi.stdin);
    cgi.stdin.on('error', () => {});
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      let sep = head.indexOf('\r\n\r\n');
      let sepLen = 4;
      if (sep < 0) {
        sep = head.indexOf('\n\n');
        sepLen = 2;
      }
      if (sep < 0) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, sep).toString('latin1').split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i < 0) continue;
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === 'status') status = parseInt(v, 10);
        else headers[k] = v;
      }
      record.status = status;
      res.writeHead(status, headers);
      res.write(head.subarray(sep + sepLen));
    });
    cgi.stderr.on('data', (d: Buffer) => process.env.KILN_GIT_SERVER_DEBUG && process.stderr.write(d));
    cgi.on('close', () => {
      if (!headersDone) reply(500, 'http-backend failed\n');
      else res.end();
    });
    res.on('close', () => {
      if (!res.writableFinished && cgi.exitCode === null) cgi.kill('SIGKILL');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  async function resolveCommit(repo: string, rev: string): Promise<string> {
    return (await git(['--git-dir', gitDir(repo), 'rev-parse', '--verify', '--quiet', `${rev}^{commit}`])).trim();
  }

  async function tryResolve(repo: string, rev: string): Promise<string | null> {
    try {
      return await resolveCommit(repo, rev);
    } catch {
      return null;
    }
  }

  return {
    root,
    requests,
    url: (repoName) => `http://127.0.0.1:${port}/${safeRepoName(repoName)}.git`,

    async createRepo(name, o = {}) {
      const dir = gitDir(name);
      await mkdir(path.dirname(dir), { recursive: true });
      await git(['init', '--quiet', '--bare', '--initial-branch=main', dir]);
      // Fetch by SHA (checkoutCommit) and partial clone (changedFiles) as GitHub/GitLab allow.
      await git(['--git-dir', dir, 'config', 'uploadpack.allowReachableSHA1InWant', 'true']);
      await git(['--git-dir', dir, 'config', 'uploadpack.allowAnySHA1InWant', 'true']);
      await git(['--git-dir', dir, 'config', 'uploadpack.allowFilter', 'true']);
      await git(['--git-dir', dir, 'config', 'http.receivepack', 'true']);
      if (o.private) privateRepos.add(safeRepoName(name));
    },

    async commit(repo, o) {
      const dir = gitDir(repo);
      const parent = (await tryResolve(repo, `refs/heads/${o.branch}`)) ?? (o.from ? await resolveCommit(repo, o.from) : null);
      const scratch = await mkdtemp(path.join(tmpdir(), 'kiln-git-index-'));
      const env = { GIT_DIR: dir, GIT_WORK_TREE: scratch, GIT_INDEX_FILE: path.join(scratch, 'index') };
      try {
        if (parent) await git(['read-tree', parent], { env });
        for (const [file, change] of Object.entries(o.files)) {
          if (change === null) {
            await git(['update-index', '--force-remove', '--', file], { env });
            continue;
          }
          const content = typeof change === 'string' ? change : change.symlink;
          const blob = (await git(['hash-object', '-w', '--stdin'], { env, input: content })).trim();
          const mode = typeof change === 'string' ? '100644' : '120000';
          await git(['update-index', '--add', '--cacheinfo', `${mode},${blob},${file}`], { env });
        }
        const tree = (await git(['write-tree'], { env })).trim();
        const args = ['commit-tree', tree, '-m', o.message ?? `update ${Object.keys(o.files).join(', ')}`];
        if (parent) args.push('-p', parent);
        const sha = (await git(args, { env })).trim();
        await git(['update-ref', `refs/heads/${o.branch}`, sha, ...(parent && (await tryResolve(repo, `refs/heads/${o.branch}`)) ? [parent] : [])], { env });
        return sha;
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    },

    async tag(repo, name, commitOrBranch, o = {}) {
      const dir = gitDir(repo);
      const target = (await tryResolve(repo, `refs/heads/${commitOrBranch}`)) ?? (await resolveCommit(repo, commitOrBranch));
      if (o.annotated) await git(['--git-dir', dir, 'tag', '-a', '-m', o.message ?? `tag ${name}`, name, target]);
      else await git(['--git-dir', dir, 'tag', name, target]);
    },

    async deleteBranch(repo, branch) {
      await git(['--git-dir', gitDir(repo), 'update-ref', '-d', `refs/heads/${branch}`]);
    },

    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (ownRoot) await rm(root, { recursive: true, force: true });
    },
  };
}
