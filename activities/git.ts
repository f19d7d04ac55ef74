// Git over HTTP(S) for builds: resolve a ref to a commit, check out exactly one commit, list the
// files a push changed, and locate the build context inside a checkout.
//
// Credentials never reach argv, logs, errors or Temporal payloads:
// - the token travels only in the child's environment, as git config
//   `http.<origin>/.extraHeader = Authorization: Basic base64(<user>:<token>)`
//   (GIT_CONFIG_COUNT/KEY/VALUE), scoped to the repository's origin so a redirect elsewhere never
//   receives it; credentials embedded in a URL are moved there too and stripped from the URL;
// - credential helpers are switched off, prompts are impossible (GIT_TERMINAL_PROMPT=0, an askpass
//   that answers nothing), git tracing variables are dropped from the inherited environment;
// - every message built from git's output is redacted (token, its base64 forms, any
//   Authorization header, URL user-info) before it is thrown.
// Only http and https remotes are accepted (GIT_ALLOW_PROTOCOL too): no file://, ssh or ext::.
//
// Errors: user faults are non-retryable ApplicationFailures — `ref_not_found`,
// `source_auth_failed` (401/403), `source_not_found` (404; GitHub also answers 404 to a private
// repository without access), `invalid_source`, `file_not_found`. Everything else (network,
// 5xx, timeouts) is a plain Error so Temporal retries it. Abort → CancelledFailure.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readlink, realpath, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApplicationFailure, CancelledFailure } from '@temporalio/activity';
import { userFault } from '../domain/errors';

export interface GitAuth {
  /** Access token (GitHub PAT/app token, GitLab token, …); used as the basic-auth password. */
  token?: string;
  /** Basic-auth user for the token: GitHub `x-access-token`, GitLab `oauth2`; default `x-access-token`. */
  username?: string;
}

export interface GitCallOptions extends GitAuth {
  signal?: AbortSignal;
  /** Kill git after this long (a retryable error). */
  timeoutMs?: number;
}

const DEFAULT_USERNAME = 'x-access-token';
const RESOLVE_TIMEOUT_MS = 60_000;
const CHECKOUT_TIMEOUT_MS = 15 * 60_000;
const DIFF_TIMEOUT_MS = 3 * 60_000;
const MAX_STDERR = 64 * 1024;
const MAX_STDOUT = 64 * 1024 * 1024;
const SHA_RE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
const ASKPASS = existsSync('/bin/true') ? '/bin/true' : 'true';

// ---------------------------------------------------------------------------------------------
// Secrets and environment

interface Remote {
  /** URL without credentials. */
  url: string;
  origin: string;
  token?: string;
  username: string;
}

function invalidSource(message: string): ApplicationFailure {
  return userFault('invalid_source', message);
}

function prepareRemote(rawUrl: string, auth: GitAuth): Remote {
  let u: URL;
  try {
    u = new URL(rawUrl);
  } catch {
    throw invalidSource('The source URL is not a valid URL');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw invalidSource(`Only http and https git URLs are supported, got ${u.protocol.replace(/:$/, '')}`);
  }
  let token = auth.token || undefined;
  let username = auth.username || DEFAULT_USERNAME;
  if (u.username || u.password) {
    // Credentials in the URL would end up in argv and in git's messages: move them to the header.
    if (!token && u.password) {
      token = decodeURIComponent(u.password);
      if (!auth.username && u.username) username = decodeURIComponent(u.username);
    } else if (!token && u.username) {
      token = decodeURIComponent(u.username); // `https://<token>@host/…` style
    }
    u.username = '';
    u.password = '';
  }
  u.hash = '';
  return { url: u.toString(), origin: u.origin, token, username };
}

function secretsOf(remote: Pick<Remote, 'token' | 'username'>): string[] {
  const t = remote.token;
  if (!t) return [];
  const out = new Set<string>([
    t,
    Buffer.from(`${remote.username}:${t}`).toString('base64'),
    Buffer.from(t).toString('base64'),
    encodeURIComponent(t),
  ]);
  return [...out].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
}

/** Removes the token (and its encodings), Authorization values and URL user-info from `text`. */
export function redactSecrets(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join('***');
  out = out.replace(/(authorization:\s*)(basic|bearer|token)?\s*[^\s'"]+/gi, (_m, h: string, scheme?: string) => `${h}${scheme ? `${scheme} ` : ''}***`);
  out = out.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/\s@'"]+@/gi, '$1***@');
  return out;
}

function gitEnv(remote: Remote | null): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    // Never inherit tracing (it prints headers), config injection or repository redirection.
    if (/^GIT_(TRACE|CURL_VERBOSE|CONFIG|DIR|WORK_TREE|INDEX_FILE|OBJECT_DIRECTORY|ALTERNATE|NAMESPACE|ASKPASS|SSH|PROXY_SSL|REDACT)/.test(k)) continue;
    if (k === 'SSH_ASKPASS') continue;
    env[k] = v;
  }
  env.GIT_TERMINAL_PROMPT = '0';
  env.GIT_ASKPASS = ASKPASS;
  env.GCM_INTERACTIVE = 'never';
  env.GIT_ALLOW_PROTOCOL = 'http:https';
  env.GIT_PROTOCOL_FROM_USER = '0';
  env.LC_ALL = 'C';
  const config: Array<[string, string]> = [
    ['credential.helper', ''], // reset any helper from system/global config
    ['core.askPass', ''],
    ['protocol.version', '2'],
    ['http.lowSpeedLimit', '1000'],
    ['http.lowSpeedTime', '60'],
    ['advice.detachedHead', 'false'],
    ['init.defaultBranch', 'main'],
  ];
  if (remote?.token) {
    const basic = Buffer.from(`${remote.username}:${remote.token}`).toString('base64');
    config.push([`http.${remote.origin}/.extraHeader`, `Authorization: Basic ${basic}`]);
  }
  env.GIT_CONFIG_COUNT = String(config.length);
  config.forEach(([k, v], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = k;
    env[`GIT_CONFIG_VALUE_${i}`] = v;
  });
  return env;
}

// ---------------------------------------------------------------------------------------------
// Running git

interface GitResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

class GitTimeoutError extends Error {}

function runGit(
  args: string[],
  opts: { remote: Remote | null; cwd?: string; signal?: AbortSignal; timeoutMs: number },
): Promise<GitResult> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new CancelledFailure('git canceled'));
      return;
    }
    // Own process group so git's helpers (git-remote-https, index-pack) die with it.
    const child = spawn('git', args, {
      cwd: opts.cwd,
      env: gitEnv(opts.remote),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const out: Buffer[] = [];
    let outLen = 0;
    let err = '';
    let settled = false;
    let reason: 'timeout' | 'abort' | null = null;
    const kill = (why: 'timeout' | 'abort') => {
      if (reason || child.exitCode !== null) return;
      reason = why;
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = setTimeout(() => kill('timeout'), opts.timeoutMs);
    const onAbort = () => kill('abort');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const done = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    child.stdout.on('data', (d: Buffer) => {
      outLen += d.length;
      if (outLen <= MAX_STDOUT) out.push(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString('utf8');
      if (err.length > MAX_STDERR) err = err.slice(-MAX_STDERR);
    });
    child.on('error', (e) => done(() => reject(new Error(`could not run git: ${e.message}`))));
    child.on('close', (code) => {
      done(() => {
        if (reason === 'abort') reject(new CancelledFailure('git canceled'));
        else if (reason === 'timeout') reject(new GitTimeoutError(`git ${args[0]} timed out after ${Math.round(opts.timeoutMs / 1000)}s`));
        else resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: err });
      });
    });
  });
}

function lastLines(text: string, n = 6): string {
  return text
    .split(/\r?\n|\r/)
    .map((l) => l.trim())
    .filter((l) => l && !/^(hint|warning):/i.test(l))
    .slice(-n)
    .join('; ');
}

/** Turns a failed git run into a redacted, classified error. */
function gitFailure(what: string, remote: Remote, res: GitResult): Error {
  const secrets = secretsOf(remote);
  const stderr = redactSecrets(res.stderr, secrets);
  const detail = lastLines(stderr) || `git exited with code ${res.code}`;
  const where = remote.url;
  if (/authentication failed|could not read (username|password)|terminal prompts disabled|returned error: 40[13]\b|invalid username or password|HTTP Basic: Access denied/i.test(stderr)) {
    const message = remote.token
      ? `Access to ${where} was denied: the access token is invalid, expired or lacks read access to the repository`
      : `${where} requires authentication: set an access token on the code source`;
    return userFault('source_auth_failed', message);
  }
  if (/repository .* not found|returned error: 404\b|not a git repository|does not appear to be a git repository/i.test(stderr)) {
    return userFault('source_not_found', `Repository ${where} was not found${remote.token ? ' or the access token cannot read it' : ' (if it is private, set an access token)'}`);
  }
  return new Error(redactSecrets(`${what} failed for ${where}: ${detail}`, secrets));
}

function rethrow(err: unknown, remote: Remote): never {
  if (err instanceof CancelledFailure || err instanceof ApplicationFailure) throw err;
  const message = err instanceof Error ? err.message : String(err);
  throw new Error(redactSecrets(message, secretsOf(remote)));
}

// ---------------------------------------------------------------------------------------------
// Ref names

/** Why `name` cannot be a branch or tag name (git check-ref-format rules), or null. */
export function refNameProblem(name: string): string | null {
  if (!name) return 'it is empty';
  if (name.length > 1024) return 'it is too long';
  if (/[\u0000-\u0020\u007f~^:?*[\\]/.test(name)) return 'it contains a space, control character or one of ~ ^ : ? * [ \\';
  if (name.startsWith('-')) return 'it starts with "-"';
  if (name.includes('..')) return 'it contains ".."';
  if (name.includes('@{') || name === '@') return 'it contains "@{"';
  if (name.startsWith('/') || name.endsWith('/') || name.includes('//')) return 'it has an empty path component';
  if (name.endsWith('.')) return 'it ends with "."';
  if (name.split('/').some((p) => p.startsWith('.') || p.endsWith('.lock'))) return 'a component starts with "." or ends with ".lock"';
  return null;
}

function shortRef(ref: string, refType: 'branch' | 'tag'): string {
  const prefix = refType === 'branch' ? 'refs/heads/' : 'refs/tags/';
  return ref.startsWith(prefix) ? ref.slice(prefix.length) : ref;
}

// ---------------------------------------------------------------------------------------------
// Activities' building blocks

/**
 * Resolves a branch or tag to a commit SHA with `git ls-remote`. Annotated tags resolve to the
 * commit they point at (the peeled `^{}` entry).
 */
export async function resolveRef(opts: RefQuery): Promise<string> {
  const head = await refHead(opts);
  if (!head) {
    const name = shortRef(opts.ref, opts.refType);
    throw userFault('ref_not_found', `${opts.refType === 'branch' ? 'Branch' : 'Tag'} "${name}" was not found in ${prepareRemote(opts.url, opts).url}`);
  }
  return head.commit;
}

interface RefQuery {
  url: string;
  ref: string;
  refType: 'branch' | 'tag';
  token?: string;
  username?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

/**
 * The ref's head as `git ls-remote` sees it now: the commit (peeled for an annotated tag) and
 * every object id the ref advertises (an annotated tag's own id too, which some hosts send as a
 * push's `after`). Null when the ref does not exist.
 */
export async function refHead(opts: RefQuery): Promise<{ commit: string; objects: string[] } | null> {
  const remote = prepareRemote(opts.url, opts);
  const name = shortRef(opts.ref, opts.refType);
  const problem = refNameProblem(name);
  if (problem) {
    throw userFault('ref_not_found', `${opts.refType === 'branch' ? 'Branch' : 'Tag'} "${name}" is not a valid ref name: ${problem}`);
  }
  const full = `refs/${opts.refType === 'branch' ? 'heads' : 'tags'}/${name}`;
  const patterns = opts.refType === 'tag' ? [full, `${full}^{}`] : [full];
  let res: GitResult;
  try {
    res = await runGit(['ls-remote', remote.url, ...patterns], {
      remote,
      signal: opts.signal,
      timeoutMs: opts.timeoutMs ?? RESOLVE_TIMEOUT_MS,
    });
  } catch (err) {
    rethrow(err, remote);
  }
  if (res.code !== 0) throw gitFailure('git ls-remote', remote, res);
  const refs = new Map<string, string>();
  for (const line of res.stdout.split('\n')) {
    const [sha, ref] = line.trim().split('\t');
    if (sha && ref && SHA_RE.test(sha)) refs.set(ref, sha);
  }
  const commit = refs.get(`${full}^{}`) ?? refs.get(full);
  if (!commit) return null;
  return { commit, objects: [...new Set([refs.get(full), refs.get(`${full}^{}`)].filter((x): x is string => !!x))] };
}

function commitNotFound(commit: string, remote: Remote): ApplicationFailure {
  return userFault('ref_not_found', `Commit ${commit} was not found in ${remote.url} (was it force-pushed away?)`);
}

const MISSING_OBJECT_RE = /not our ref|couldn't find remote ref|no such remote ref|unadvertised object|not a valid object|bad object|invalid refspec|remote error: .*(?:not found|unknown)/i;

/**
 * Fresh shallow checkout of exactly `commit` into `dir` (created if missing; should be empty):
 * `git init`, `git fetch --depth 1 origin <sha>`, `git checkout --detach`. Submodules are not
 * fetched. Needs a server that serves a commit by SHA (GitHub, GitLab, Gitea do;
 * `uploadpack.allowReachableSHA1InWant` for plain git).
 */
export async function checkoutCommit(opts: {
  url: string;
  commit: string;
  token?: string;
  username?: string;
  dir: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}): Promise<void> {
  const remote = prepareRemote(opts.url, opts);
  const commit = opts.commit.toLowerCase();
  if (!SHA_RE.test(commit)) throw invalidSource(`"${opts.commit}" is not a full commit SHA`);
  const started = Date.now();
  const remaining = () => Math.max(1_000, (opts.timeoutMs ?? CHECKOUT_TIMEOUT_MS) - (Date.now() - started));
  const local = { remote: null, cwd: opts.dir, signal: opts.signal, timeoutMs: 60_000 };
  try {
    await mkdir(opts.dir, { recursive: true });
    const init = await runGit(['init', '--quiet', '--template=', '.'], local);
    if (init.code !== 0) throw new Error(`git init failed: ${lastLines(init.stderr)}`);
    let add = await runGit(['remote', 'add', 'origin', remote.url], local);
    if (add.code !== 0) add = await runGit(['remote', 'set-url', 'origin', remote.url], local); // a retry in the same dir
    if (add.code !== 0) throw new Error(`git remote add failed: ${lastLines(add.stderr)}`);
    const fetch = await runGit(
      ['fetch', '--quiet', '--depth', '1', '--no-tags', '--no-recurse-submodules', '--no-write-commit-graph', 'origin', commit],
      { remote, cwd: opts.dir, signal: opts.signal, timeoutMs: remaining() },
    );
    if (fetch.code !== 0) {
      if (MISSING_OBJECT_RE.test(fetch.stderr)) throw commitNotFound(commit, remote);
      throw gitFailure('git fetch', remote, fetch);
    }
    const head = await runGit(['rev-parse', '--verify', '--quiet', 'FETCH_HEAD^{commit}'], local);
    if (head.code !== 0 || head.stdout.trim() !== commit) throw commitNotFound(commit, remote);
    const checkout = await runGit(['checkout', '--quiet', '--detach', commit], { ...local, timeoutMs: remaining() });
    if (checkout.code !== 0) throw new Error(`git checkout of ${commit} failed: ${lastLines(checkout.stderr)}`);
  } catch (err) {
    rethrow(err, remote);
  }
}

const ZERO_SHA_RE = /^0+$/;

/**
 * Paths changed between two commits (added, modified, deleted; a rename lists both paths), for
 * path filters when a webhook does not list them. Null when it cannot be known: `before` is the
 * all-zero SHA (a new branch), not a SHA, or no longer on the server. Fetches only commits and
 * trees (`--depth 1 --filter=blob:none`) into a temporary bare repository.
 */
export async function changedFiles(opts: {
  url: string;
  before: string;
  after: string;
  token?: string;
  username?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}): Promise<string[] | null> {
  const remote = prepareRemote(opts.url, opts);
  const before = (opts.before ?? '').toLowerCase();
  const after = (opts.after ?? '').toLowerCase();
  if (!SHA_RE.test(before) || ZERO_SHA_RE.test(before) || !SHA_RE.test(after) || ZERO_SHA_RE.test(after)) return null;
  if (before === after) return [];
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-diff-'));
  const local = { remote: null, cwd: dir, signal: opts.signal, timeoutMs: 60_000 };
  try {
    const init = await runGit(['init', '--quiet', '--bare', '--template=', '.'], local);
    if (init.code !== 0) throw new Error(`git init failed: ${lastLines(init.stderr)}`);
    const add = await runGit(['remote', 'add', 'origin', remote.url], local);
    if (add.code !== 0) throw new Error(`git remote add failed: ${lastLines(add.stderr)}`);
    const fetch = await runGit(
      ['fetch', '--quiet', '--depth', '1', '--filter=blob:none', '--no-tags', '--no-write-commit-graph', 'origin', before, after],
      { remote, cwd: dir, signal: opts.signal, timeoutMs: opts.timeoutMs ?? DIFF_TIMEOUT_MS },
    );
    if (fetch.code !== 0) {
      if (MISSING_OBJECT_RE.test(fetch.stderr)) return null;
      throw gitFailure('git fetch', remote, fetch);
    }
    const diff = await runGit(['diff-tree', '-r', '-z', '--name-only', '--no-renames', '--no-commit-id', before, after], {
      ...local,
      remote, // a partial clone may lazily fetch; it needs the same credentials
      timeoutMs: opts.timeoutMs ?? DIFF_TIMEOUT_MS,
    });
    if (diff.code !== 0) throw new Error(`git diff-tree failed: ${lastLines(diff.stderr)}`);
    return [...new Set(diff.stdout.split('\0').filter(Boolean))];
  } catch (err) {
    rethrow(err, remote);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Paths inside the repository

/**
 * Pure check for a context dir or Dockerfile path given at rule creation: null when acceptable,
 * else the reason. Paths are relative to the repository root; a leading `/` means the root
 * (`/`, `/svc`, `svc/` are all fine; `''` is the root). Refused: `..` segments, `.git`, NUL and
 * control characters, backslashes, drive letters, over-long paths.
 */
export function validateRepoPath(p: string): string | null {
  if (typeof p !== 'string') return 'path must be a string';
  if (p.length > 1024) return 'path is longer than 1024 characters';
  if (p.includes('\0')) return 'path contains a NUL character';
  if (/[\u0001-\u001f\u007f]/.test(p)) return 'path contains a control character';
  if (p.includes('\\')) return 'path contains a backslash; use "/" to separate directories';
  if (/^[A-Za-z]:/.test(p)) return 'path must be relative to the repository root, not a drive path';
  const segments = p.split('/');
  if (segments.includes('..')) return 'path must not contain ".." (it would leave the repository)';
  if (segments.some((s) => s.toLowerCase() === '.git')) return 'path must not point into .git';
  return null;
}

function fileNotFound(message: string): ApplicationFailure {
  return userFault('file_not_found', message);
}

function isInside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

function display(p: string): string {
  return `/${p.split('/').filter((s) => s && s !== '.').join('/')}`;
}

/** Real path of `rel` inside `root`, refusing anything (a symlink at any component) that leaves it. */
async function resolveInside(root: string, rel: string, what: string): Promise<string> {
  const joined = path.resolve(root, `.${path.sep}${rel}`);
  if (!isInside(root, joined)) throw invalidSource(`${what} ${display(rel)} leaves the repository`);
  let real: string;
  try {
    real = await realpath(joined);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      // A dangling symlink to outside is still an escape, not a missing file: say so.
      await assertNoEscapingLink(root, rel, what);
      throw fileNotFound(`${what} ${display(rel)} does not exist in the repository at this commit`);
    }
    if (code === 'ELOOP') throw invalidSource(`${what} ${display(rel)} is a symlink loop`);
    throw err;
  }
  if (!isInside(root, real)) throw invalidSource(`${what} ${display(rel)} is a symlink that points outside the repository`);
  return real;
}

async function assertNoEscapingLink(root: string, rel: string, what: string): Promise<void> {
  let cur = root;
  for (const seg of rel.split('/').filter((s) => s && s !== '.')) {
    cur = path.join(cur, seg);
    let st;
    try {
      st = await lstat(cur);
    } catch {
      return;
    }
    if (st.isSymbolicLink()) {
      const target = path.resolve(path.dirname(cur), await readlink(cur));
      if (!isInside(root, target)) throw invalidSource(`${what} ${display(rel)} goes through a symlink that points outside the repository`);
    }
  }
}

/**
 * Locates the build context and Dockerfile in a checkout. `contextDir` is relative to the repo
 * root (default `/`); `dockerfilePath` is relative to the context dir (default `Dockerfile`), or
 * to the repo root when it starts with `/`. Returns real paths for buildctl's `--local`s.
 */
export async function resolveBuildContext(
  checkoutDir: string,
  contextDir: string,
  dockerfilePath: string,
): Promise<{ contextDir: string; dockerfileDir: string; dockerfileName: string }> {
  const ctx = contextDir || '/';
  const df = dockerfilePath || 'Dockerfile';
  const ctxProblem = validateRepoPath(ctx);
  if (ctxProblem) throw invalidSource(`Context directory "${ctx}" is not allowed: ${ctxProblem}`);
  const dfProblem = validateRepoPath(df);
  if (dfProblem) throw invalidSource(`Dockerfile path "${df}" is not allowed: ${dfProblem}`);
  if (df.endsWith('/')) throw invalidSource(`Dockerfile path "${df}" names a directory, not a file`);

  const root = await realpath(checkoutDir);
  const ctxRel = ctx.replace(/^\/+/, '');
  const contextReal = await resolveInside(root, ctxRel, 'Context directory');
  if (!(await stat(contextReal)).isDirectory()) throw invalidSource(`Context directory ${display(ctxRel)} is a file, not a directory`);

  const dfRel = df.startsWith('/') ? df.replace(/^\/+/, '') : path.posix.join(ctxRel || '.', df);
  const dockerfileReal = await resolveInside(root, dfRel, 'Dockerfile');
  if (!(await stat(dockerfileReal)).isFile()) throw fileNotFound(`Dockerfile ${display(dfRel)} is not a regular file`);
  return { contextDir: contextReal, dockerfileDir: path.dirname(dockerfileReal), dockerfileName: path.basename(dockerfileReal) };
}
