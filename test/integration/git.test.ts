// activities/git.ts against a real git server (git http-backend over HTTP on loopback).
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ApplicationFailure, CancelledFailure } from '@temporalio/activity';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changedFiles, checkoutCommit, resolveBuildContext, resolveRef } from '../../activities/git';
import { startGitServer, type GitServer } from '../support/git-server';

const execFileP = promisify(execFile);
const TOKEN = 's3cr3t-T0ken-for-kiln-tests';
const USER = 'x-access-token';

let server: GitServer;
let work: string;
const sha: Record<string, string> = {};

async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

/** Everything an error could carry into a log, an API answer or a Temporal payload. */
function serialized(err: Error): string {
  const e = err as Error & Record<string, unknown>;
  return [String(err), err.stack ?? '', JSON.stringify({ ...e, message: e.message, type: e.type, details: e.details, cause: String(e.cause) })].join('\n');
}

function expectSecretFree(text: string) {
  expect(text).not.toContain(TOKEN);
  expect(text).not.toContain(Buffer.from(`${USER}:${TOKEN}`).toString('base64'));
  expect(text).not.toContain(Buffer.from(TOKEN).toString('base64'));
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-git-test-'));
  server = await startGitServer({ auth: { username: USER, password: TOKEN } });
  await server.createRepo('team/app');
  sha.c1 = await server.commit('team/app', {
    branch: 'main',
    files: {
      Dockerfile: 'FROM busybox\nCOPY . /app\n',
      'README.md': 'v1\n',
      'svc/api/main.go': 'package main\n',
      'docker/Dockerfile.prod': 'FROM busybox\n',
      'escape-dir': { symlink: '../../../../../../../../../../etc' },
      'escape-df': { symlink: '/etc/passwd' },
      'inner-link': { symlink: 'svc' },
    },
  });
  sha.c2 = await server.commit('team/app', {
    branch: 'main',
    files: { 'README.md': 'v2\n', 'svc/api/main.go': 'package main // v2\n', 'docs/guide.md': 'hi\n', 'docker/Dockerfile.prod': null },
  });
  await server.tag('team/app', 'v1.0.0', sha.c1!);
  await server.tag('team/app', 'v2.0.0', sha.c2!, { annotated: true });
  sha.feature = await server.commit('team/app', { branch: 'feature/x', from: 'main', files: { 'feature.txt': 'x\n' } });

  await server.createRepo('team/secret', { private: true });
  sha.secret = await server.commit('team/secret', { branch: 'main', files: { Dockerfile: 'FROM busybox\n' } });
});

afterAll(async () => {
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('resolveRef', () => {
  it('resolves a branch, including one with a slash', async () => {
    expect(await resolveRef({ url: server.url('team/app'), ref: 'main', refType: 'branch' })).toBe(sha.c2);
    expect(await resolveRef({ url: server.url('team/app'), ref: 'feature/x', refType: 'branch' })).toBe(sha.feature);
    expect(await resolveRef({ url: server.url('team/app'), ref: 'refs/heads/main', refType: 'branch' })).toBe(sha.c2);
  });

  it('resolves a lightweight tag to its commit', async () => {
    expect(await resolveRef({ url: server.url('team/app'), ref: 'v1.0.0', refType: 'tag' })).toBe(sha.c1);
  });

  it('peels an annotated tag to the commit, not the tag object', async () => {
    const { stdout } = await execFileP('git', ['--git-dir', path.join(server.root, 'team/app.git'), 'rev-parse', 'refs/tags/v2.0.0']);
    const tagObject = stdout.trim();
    expect(tagObject).not.toBe(sha.c2);
    expect(await resolveRef({ url: server.url('team/app'), ref: 'v2.0.0', refType: 'tag' })).toBe(sha.c2);
  });

  it('answers ref_not_found (non-retryable) for a missing branch or tag, and for a branch asked as a tag', async () => {
    for (const [ref, refType] of [['nope', 'branch'], ['v9.9.9', 'tag'], ['main', 'tag']] as const) {
      const err = await failure(resolveRef({ url: server.url('team/app'), ref, refType }));
      expect(err).toBeInstanceOf(ApplicationFailure);
      expect((err as ApplicationFailure).type).toBe('ref_not_found');
      expect((err as ApplicationFailure).nonRetryable).toBe(true);
      expect(err.message).toContain(`"${ref}"`);
    }
  });

  it('refuses ref names git would never accept without calling the server', async () => {
    const before = server.requests.length;
    const err = await failure(resolveRef({ url: server.url('team/app'), ref: '--upload-pack=touch /tmp/x', refType: 'branch' }));
    expect((err as ApplicationFailure).type).toBe('ref_not_found');
    expect(server.requests.length).toBe(before);
  });

  it('answers source_not_found for a repository that does not exist', async () => {
    const err = await failure(resolveRef({ url: server.url('team/missing'), ref: 'main', refType: 'branch' }));
    expect((err as ApplicationFailure).type).toBe('source_not_found');
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
  });

  it('turns network faults into plain (retryable) errors', async () => {
    const err = await failure(resolveRef({ url: 'http://127.0.0.1:9/nothing.git', ref: 'main', refType: 'branch' }));
    expect(err).not.toBeInstanceOf(ApplicationFailure);
    expect(err.message).toMatch(/127\.0\.0\.1/);
  });

  it('accepts only http(s) remotes', async () => {
    for (const url of ['file:///etc', 'ext::sh -c touch% /tmp/pwned', 'ssh://git@example.com/x.git']) {
      const err = await failure(resolveRef({ url, ref: 'main', refType: 'branch' }));
      expect((err as ApplicationFailure).type).toBe('invalid_source');
    }
  });

  it('kills git on abort and on timeout when the server hangs', async () => {
    const sockets: net.Socket[] = [];
    const hang = net.createServer((s) => sockets.push(s)); // accepts, never answers
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(hang.address() as net.AddressInfo).port}/x.git`;
    try {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 300);
      const started = Date.now();
      const canceled = await failure(resolveRef({ url, ref: 'main', refType: 'branch', signal: ac.signal }));
      expect(canceled).toBeInstanceOf(CancelledFailure);
      expect(Date.now() - started).toBeLessThan(10_000);

      const timedOut = await failure(resolveRef({ url, ref: 'main', refType: 'branch', timeoutMs: 500 }));
      expect(timedOut).not.toBeInstanceOf(ApplicationFailure);
      expect(timedOut.message).toMatch(/timed out/);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => hang.close(r));
    }
  });

  it('stops at once when the signal is already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    const err = await failure(resolveRef({ url: server.url('team/app'), ref: 'main', refType: 'branch', signal: ac.signal }));
    expect(err).toBeInstanceOf(CancelledFailure);
  });
});

describe('private repositories', () => {
  it('without a token: source_auth_failed, non-retryable', async () => {
    const err = await failure(resolveRef({ url: server.url('team/secret'), ref: 'main', refType: 'branch' }));
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).type).toBe('source_auth_failed');
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
  });

  it('with the right token: works, the server sees basic auth', async () => {
    expect(await resolveRef({ url: server.url('team/secret'), ref: 'main', refType: 'branch', token: TOKEN })).toBe(sha.secret);
    expect(server.requests.some((r) => r.path.startsWith('/team/secret.git') && r.user === USER && r.status === 200)).toBe(true);
  });

  it('with a wrong token: source_auth_failed, and neither token is in anything thrown', async () => {
    const wrong = `${TOKEN}-wrong`;
    const err = await failure(resolveRef({ url: server.url('team/secret'), ref: 'main', refType: 'branch', token: wrong }));
    expect((err as ApplicationFailure).type).toBe('source_auth_failed');
    const text = serialized(err);
    expect(text).not.toContain(wrong);
    expectSecretFree(text);
  });

  it('moves credentials out of the URL into the header', async () => {
    const u = new URL(server.url('team/secret'));
    u.username = USER;
    u.password = TOKEN;
    expect(await resolveRef({ url: u.toString(), ref: 'main', refType: 'branch' })).toBe(sha.secret);
    const err = await failure(resolveRef({ url: u.toString(), ref: 'gone', refType: 'branch' }));
    expect((err as ApplicationFailure).type).toBe('ref_not_found');
    expectSecretFree(serialized(err));
  });

  it('never puts the token in git argv', async () => {
    const wrapperDir = await mkdtemp(path.join(work, 'bin-'));
    const log = path.join(wrapperDir, 'argv.log');
    const { stdout: realGit } = await execFileP('sh', ['-c', 'command -v git']);
    await writeFile(path.join(wrapperDir, 'git'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nexec '${realGit.trim()}' "$@"\n`);
    await chmod(path.join(wrapperDir, 'git'), 0o755);
    const oldPath = process.env.PATH;
    process.env.PATH = `${wrapperDir}:${oldPath}`;
    try {
      const dir = path.join(work, 'argv-checkout');
      await resolveRef({ url: server.url('team/secret'), ref: 'main', refType: 'branch', token: TOKEN });
      await checkoutCommit({ url: server.url('team/secret'), commit: sha.secret!, token: TOKEN, dir });
      await failure(resolveRef({ url: server.url('team/secret'), ref: 'nope', refType: 'branch', token: TOKEN }));
    } finally {
      process.env.PATH = oldPath;
    }
    const argv = await readFile(log, 'utf8');
    expect(argv).toContain('ls-remote');
    expect(argv).toContain('fetch');
    expectSecretFree(argv);
    expect(argv).not.toMatch(/authorization/i);
    // Nor in the checkout's config.
    expectSecretFree(await readFile(path.join(work, 'argv-checkout', '.git', 'config'), 'utf8'));
  });
});

describe('checkoutCommit', () => {
  it('fetches exactly an older commit after the branch moved on', async () => {
    const dir = path.join(work, 'old');
    await checkoutCommit({ url: server.url('team/app'), commit: sha.c1!, dir });
    const { stdout } = await execFileP('git', ['-C', dir, 'rev-parse', 'HEAD']);
    expect(stdout.trim()).toBe(sha.c1);
    expect(await readFile(path.join(dir, 'README.md'), 'utf8')).toBe('v1\n');
    expect(await readFile(path.join(dir, 'docker/Dockerfile.prod'), 'utf8')).toBe('FROM busybox\n');
    const { stdout: shallow } = await execFileP('git', ['-C', dir, 'rev-parse', '--is-shallow-repository']);
    expect(shallow.trim()).toBe('true');
  });

  it('fetches a commit whose branch was deleted', async () => {
    const gone = await server.commit('team/app', { branch: 'tmp', from: 'main', files: { 'tmp.txt': 'tmp\n' } });
    await server.deleteBranch('team/app', 'tmp');
    const dir = path.join(work, 'gone');
    await checkoutCommit({ url: server.url('team/app'), commit: gone, dir });
    expect(await readFile(path.join(dir, 'tmp.txt'), 'utf8')).toBe('tmp\n');
  });

  it('can be retried in the same directory', async () => {
    const dir = path.join(work, 'retry');
    await checkoutCommit({ url: server.url('team/app'), commit: sha.c1!, dir });
    await checkoutCommit({ url: server.url('team/app'), commit: sha.c2!, dir });
    expect(await readFile(path.join(dir, 'README.md'), 'utf8')).toBe('v2\n');
  });

  it('checks out a private repository with the token', async () => {
    const dir = path.join(work, 'secret');
    await checkoutCommit({ url: server.url('team/secret'), commit: sha.secret!, dir, token: TOKEN });
    expect(await readFile(path.join(dir, 'Dockerfile'), 'utf8')).toBe('FROM busybox\n');
    const err = await failure(checkoutCommit({ url: server.url('team/secret'), commit: sha.secret!, dir: path.join(work, 'secret2') }));
    expect((err as ApplicationFailure).type).toBe('source_auth_failed');
  });

  it('answers ref_not_found for a commit the server does not have, invalid_source for a non-SHA', async () => {
    const err = await failure(checkoutCommit({ url: server.url('team/app'), commit: 'ab'.repeat(20), dir: path.join(work, 'missing') }));
    expect((err as ApplicationFailure).type).toBe('ref_not_found');
    expect(err.message).toContain('ab'.repeat(20));
    const bad = await failure(checkoutCommit({ url: server.url('team/app'), commit: 'main', dir: path.join(work, 'bad') }));
    expect((bad as ApplicationFailure).type).toBe('invalid_source');
  });
});

describe('changedFiles', () => {
  it('lists added, modified and deleted files between two commits', async () => {
    const files = await changedFiles({ url: server.url('team/app'), before: sha.c1!, after: sha.c2! });
    expect(files?.sort()).toEqual(['README.md', 'docker/Dockerfile.prod', 'docs/guide.md', 'svc/api/main.go']);
  });

  it('works on a private repository with the token', async () => {
    const next = await server.commit('team/secret', { branch: 'main', files: { 'app/x.txt': 'x\n' } });
    expect(await changedFiles({ url: server.url('team/secret'), before: sha.secret!, after: next, token: TOKEN })).toEqual(['app/x.txt']);
  });

  it('is null when it cannot be known (new branch, unknown commit) and [] for the same commit', async () => {
    expect(await changedFiles({ url: server.url('team/app'), before: '0'.repeat(40), after: sha.c2! })).toBeNull();
    expect(await changedFiles({ url: server.url('team/app'), before: 'cd'.repeat(20), after: sha.c2! })).toBeNull();
    expect(await changedFiles({ url: server.url('team/app'), before: 'main', after: sha.c2! })).toBeNull();
    expect(await changedFiles({ url: server.url('team/app'), before: sha.c2!, after: sha.c2! })).toEqual([]);
  });
});

describe('resolveBuildContext', () => {
  let dir: string;
  beforeAll(async () => {
    dir = path.join(work, 'ctx');
    await checkoutCommit({ url: server.url('team/app'), commit: sha.c1!, dir });
  });

  async function reason(ctx: string, df: string): Promise<ApplicationFailure> {
    const err = await failure(resolveBuildContext(dir, ctx, df));
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
    return err as ApplicationFailure;
  }

  it('defaults to the repo root and ./Dockerfile', async () => {
    const real = await realpath(dir);
    expect(await resolveBuildContext(dir, '/', 'Dockerfile')).toEqual({ contextDir: real, dockerfileDir: real, dockerfileName: 'Dockerfile' });
    expect(await resolveBuildContext(dir, '', '')).toEqual({ contextDir: real, dockerfileDir: real, dockerfileName: 'Dockerfile' });
  });

  it('resolves a Dockerfile relative to the context dir, or to the root with a leading /', async () => {
    const real = await realpath(dir);
    expect(await resolveBuildContext(dir, '/', 'docker/Dockerfile.prod')).toEqual({
      contextDir: real,
      dockerfileDir: path.join(real, 'docker'),
      dockerfileName: 'Dockerfile.prod',
    });
    expect(await resolveBuildContext(dir, 'svc', '/docker/Dockerfile.prod')).toEqual({
      contextDir: path.join(real, 'svc'),
      dockerfileDir: path.join(real, 'docker'),
      dockerfileName: 'Dockerfile.prod',
    });
    // A symlink that stays inside the checkout is fine.
    expect((await resolveBuildContext(dir, 'inner-link', '/Dockerfile')).contextDir).toBe(path.join(real, 'svc'));
  });

  it('rejects .. escapes', async () => {
    expect((await reason('../x', 'Dockerfile')).type).toBe('invalid_source');
    expect((await reason('/', '../Dockerfile')).type).toBe('invalid_source');
    expect((await reason('/svc/../../etc', 'Dockerfile')).type).toBe('invalid_source');
  });

  it('treats an absolute path as inside the repository, never the host', async () => {
    const err = await reason('/etc', 'passwd');
    expect(err.type).toBe('file_not_found');
    expect(err.message).toContain('/etc');
  });

  it('rejects a symlinked context dir or Dockerfile that points outside the checkout', async () => {
    const ctx = await reason('escape-dir', 'passwd');
    expect(ctx.type).toBe('invalid_source');
    expect(ctx.message).toMatch(/symlink/);
    const df = await reason('/', 'escape-df');
    expect(df.type).toBe('invalid_source');
    // A symlink added after checkout (not from git) is caught the same way.
    const outside = await mkdtemp(path.join(work, 'outside-'));
    await mkdir(path.join(outside, 'sub'));
    await writeFile(path.join(outside, 'sub', 'Dockerfile'), 'FROM scratch\n');
    await symlink(outside, path.join(dir, 'late-link'));
    expect((await reason('late-link/sub', 'Dockerfile')).type).toBe('invalid_source');
  });

  it('names the path of a missing Dockerfile or context dir', async () => {
    const df = await reason('svc', 'Dockerfile');
    expect(df.type).toBe('file_not_found');
    expect(df.message).toContain('/svc/Dockerfile');
    const ctx = await reason('nope/deeper', 'Dockerfile');
    expect(ctx.type).toBe('file_not_found');
    expect(ctx.message).toContain('/nope/deeper');
  });

  it('rejects a context dir that is a file, and a Dockerfile that is a directory', async () => {
    expect((await reason('README.md', 'Dockerfile')).type).toBe('invalid_source');
    expect((await reason('/', 'svc')).type).toBe('file_not_found');
  });
});
