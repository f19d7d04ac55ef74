// Issue #11: commit statuses to GitHub, GitLab, Gitee and Bitbucket, received by a local HTTP
// server standing in for their APIs (KILN_GIT_API_URLS points Kiln at it), on the real stack: a
// real git server, signed webhooks, real builds. The receiver checks method, path, auth and body;
// it can also be down (503) or refuse the token (403).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PushWorkflowResult } from '../../domain/push';
import { commitStatusWorkflowId } from '../../domain/temporal';
import { startGitServer, type GitServer } from '../support/git-server';
import { pushWorkflowResult, startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { waitFor } from '../support/processes';
import { bitbucketPush, giteePush, githubPush, gitlabPush, type PushSpec, type SignedDelivery } from '../support/webhooks';

const GIT_PASSWORD = 'git-secret-token-5d1e7a';
const SECRET = 'status-webhook-secret-0123456789';

interface Received {
  at: number;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: any;
  answered: number;
}

/** The git hosts' APIs, one prefix each; answers as `respond` says (201 unless told otherwise). */
class Receiver {
  received: Received[] = [];
  respond: (path: string) => { status: number; body?: unknown } = () => ({ status: 201, body: {} });
  private server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const answer = this.respond(req.url ?? '');
      let body: unknown = raw;
      try {
        body = JSON.parse(raw);
      } catch {
        /* recorded as text */
      }
      this.received.push({ at: Date.now(), method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, answered: answer.status });
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body ?? {}));
    });
  });
  url = '';
  async start() {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  close() {
    this.server.closeAllConnections();
    return new Promise<void>((r) => this.server.close(() => r()));
  }
  for(repo: string) {
    return this.received.filter((r) => r.path.includes(repo) || r.path.includes(encodeURIComponent(repo)));
  }
}

const receiver = new Receiver();
let kiln: TestKiln;
let git: GitServer;

beforeAll(async () => {
  await receiver.start();
  git = await startGitServer({ auth: { username: '*', password: GIT_PASSWORD } });
  kiln = await startTestKiln({
    gitApiUrls: {
      github: `${receiver.url}/github/api/v3`,
      gitlab: `${receiver.url}/gitlab/api/v4`,
      gitee: `${receiver.url}/gitee/api/v5`,
      bitbucket: `${receiver.url}/bitbucket/2.0`,
    },
  });
});
afterAll(async () => {
  await kiln?.close();
  await git?.close();
  await receiver.close();
});

type Provider = 'github' | 'gitlab' | 'gitee' | 'bitbucket';
const SIGNERS: Record<Provider, (s: PushSpec) => SignedDelivery> = { github: githubPush, gitlab: gitlabPush, gitee: giteePush, bitbucket: bitbucketPush };

/** A Kiln repository bound to `acme/<name>` on the git server, with a token and a rule for main. */
async function setUp(provider: Provider, name: string) {
  const repoName = `acme/${name}`;
  await git.createRepo(repoName);
  // The git server's password is the token: Kiln clones and sets statuses with the same one.
  const token = GIT_PASSWORD;
  const res = await kiln.api('/api/v1/repositories', {
    json: { namespace: 'status', name, source: { provider, url: git.url(repoName), token, webhookSecret: SECRET } },
  });
  expect(res.status).toBe(201);
  const repoId = (await res.json()).id as string;
  const rule = await kiln.api(`/api/v1/repositories/${repoId}/rules`, {
    json: { type: 'branch', match: 'main', platforms: ['linux/amd64'], tags: [{ template: 'latest' }] },
  });
  expect(rule.status).toBe(201);
  return { repoName, token, repoId };
}

/** Commits a Dockerfile, delivers the signed push, and returns the build id and commit. */
async function pushAndBuild(provider: Provider, repoName: string, dockerfile: string) {
  const commit = await git.commit(repoName, { branch: 'main', files: { Dockerfile: dockerfile, 'hello.txt': `${Date.now()}\n` } });
  const d = SIGNERS[provider]({ repoUrl: git.url(repoName), ref: 'refs/heads/main', after: commit, secret: SECRET, files: { modified: ['Dockerfile'] } });
  const res = await fetch(`${kiln.url}/webhooks/${provider}`, { method: 'POST', headers: d.headers, body: d.body });
  expect(res.status).toBe(202);
  // The push workflow does the rest: wait for it and take the build it started.
  const { workflowId } = (await res.json()) as any;
  const { buildIds }: PushWorkflowResult = await pushWorkflowResult(kiln, workflowId);
  expect(buildIds).toHaveLength(1);
  return { buildId: buildIds[0]!, commit };
}

const statusOutcome = (buildId: string) => kiln.client.workflow.getHandle(commitStatusWorkflowId(buildId)).result();
const GOOD = () => `FROM ${kiln.registry}/base/busybox\nCOPY hello.txt /hello.txt\n`;
const BAD = () => `FROM ${kiln.registry}/base/busybox\nRUN exit 3\n`;

/** What each host must receive: path, auth header, body for a Kiln state. */
const EXPECT: Record<
  Provider,
  {
    path: (repo: string, sha: string) => string;
    auth: (token: string) => Record<string, string>;
    body: (s: { state: 'pending' | 'success' | 'failure'; context: string; url: string; description: string; token: string }) => unknown;
  }
> = {
  github: {
    path: (repo, sha) => `/github/api/v3/repos/${repo}/statuses/${sha}`,
    auth: (token) => ({ authorization: `Bearer ${token}`, accept: 'application/vnd.github+json' }),
    body: (s) => ({ state: s.state, context: s.context, target_url: s.url, description: s.description }),
  },
  gitlab: {
    path: (repo, sha) => `/gitlab/api/v4/projects/${encodeURIComponent(repo)}/statuses/${sha}`,
    auth: (token) => ({ 'private-token': token }),
    body: (s) => ({ state: { pending: 'pending', success: 'success', failure: 'failed' }[s.state], name: s.context, target_url: s.url, description: s.description }),
  },
  gitee: {
    path: (repo, sha) => `/gitee/api/v5/repos/${repo}/statuses/${sha}`,
    auth: () => ({}),
    body: (s) => ({ access_token: s.token, state: s.state, context: s.context, target_url: s.url, description: s.description }),
  },
  bitbucket: {
    path: (repo, sha) => `/bitbucket/2.0/repositories/${repo}/commit/${sha}/statuses/build`,
    auth: (token) => ({ authorization: `Bearer ${token}` }),
    body: (s) => ({
      key: s.context,
      name: s.context,
      state: { pending: 'INPROGRESS', success: 'SUCCESSFUL', failure: 'FAILED' }[s.state],
      url: s.url,
      description: s.description,
    }),
  },
};

describe.each(['github', 'gitlab', 'gitee', 'bitbucket'] as const)('%s commit statuses', (provider) => {
  it('a successful build: pending, then success, with the token, the rule context and the build link', async () => {
    const { repoName, token } = await setUp(provider, `${provider}-ok`);
    const { buildId, commit } = await pushAndBuild(provider, repoName, GOOD());
    expect((await waitForBuild(kiln, buildId)).status).toBe('succeeded');
    expect(await statusOutcome(buildId)).toBe('posted');
    const url = `${kiln.url}/builds/${buildId}`;
    const got = receiver.for(repoName);
    expect(got.map((r) => [r.method, r.path])).toEqual([
      ['POST', EXPECT[provider].path(repoName, commit)],
      ['POST', EXPECT[provider].path(repoName, commit)],
    ]);
    for (const r of got) {
      expect(r.headers).toMatchObject({ 'content-type': 'application/json', ...EXPECT[provider].auth(token) });
    }
    const e = EXPECT[provider].body;
    expect(got[0]!.body).toEqual(e({ state: 'pending', context: 'kiln/main', url, description: 'Kiln is building the image', token }));
    expect(got[1]!.body).toEqual(e({ state: 'success', context: 'kiln/main', url, description: `Image built: status/${provider}-ok:latest`, token }));
  });

  it('a failing build: pending, then failure with the error code', async () => {
    const { repoName, token } = await setUp(provider, `${provider}-bad`);
    const { buildId, commit } = await pushAndBuild(provider, repoName, BAD());
    const build = await waitForBuild(kiln, buildId);
    expect(build.error?.code).toBe('step_failed');
    expect(await statusOutcome(buildId)).toBe('posted');
    const url = `${kiln.url}/builds/${buildId}`;
    const got = receiver.for(repoName);
    expect(got.map((r) => r.path)).toEqual([EXPECT[provider].path(repoName, commit), EXPECT[provider].path(repoName, commit)]);
    expect(got[1]!.body).toEqual(EXPECT[provider].body({ state: 'failure', context: 'kiln/main', url, description: 'step_failed', token }));
  });
});

describe('a git host that is down or refuses', () => {
  it('503s delay the status, not the build; the final status arrives once the host is back', async () => {
    const { repoName } = await setUp('github', 'down');
    let down = true;
    receiver.respond = (p) => (down && p.includes(repoName) ? { status: 503, body: { message: 'Service Unavailable' } } : { status: 201, body: {} });
    try {
      const { buildId } = await pushAndBuild('github', repoName, GOOD());
      const build = await waitForBuild(kiln, buildId);
      // The build finished while the host refused every status.
      expect(build.status).toBe('succeeded');
      await waitFor('a status attempt', () => receiver.for(repoName).length > 0, 30_000);
      expect(receiver.for(repoName).every((r) => r.answered === 503)).toBe(true);
      down = false;
      expect(await statusOutcome(buildId)).toBe('posted');
      const got = receiver.for(repoName);
      const accepted = got.filter((r) => r.answered === 201);
      // The final status landed, and nothing after it: a pending still retrying is dropped once the build ends.
      expect(accepted.at(-1)!.body.state).toBe('success');
      expect(accepted.map((r) => r.body.state).filter((s) => s !== 'pending' && s !== 'success')).toEqual([]);
      expect(accepted.filter((r) => r.body.state === 'success')).toHaveLength(1);
      expect(got.filter((r) => r.answered === 503).length).toBeGreaterThanOrEqual(1);
      expect(accepted.at(-1)!.at).toBeGreaterThan(new Date(build.finishedAt).getTime());
    } finally {
      receiver.respond = () => ({ status: 201, body: {} });
    }
  });

  it('403: one clear line in the build log, no retries, the build still succeeds', async () => {
    const { repoName } = await setUp('github', 'denied');
    receiver.respond = (p) =>
      p.includes(repoName) ? { status: 403, body: { message: 'Resource not accessible by personal access token' } } : { status: 201, body: {} };
    try {
      const { buildId } = await pushAndBuild('github', repoName, GOOD());
      expect((await waitForBuild(kiln, buildId)).status).toBe('succeeded');
      expect(await statusOutcome(buildId)).toBe('refused');
      expect(receiver.for(repoName)).toHaveLength(1);
      const log = await (await kiln.api(`/api/v1/builds/${buildId}/logs`)).text();
      const lines = log.split('\n').filter((l) => l.includes('commit status'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain('kiln/main');
      expect(lines[0]).toContain('HTTP 403');
      expect(lines[0]).toContain('Resource not accessible by personal access token');
      expect(lines[0]).toContain('repo:status');
      expect(log).not.toContain(GIT_PASSWORD);
    } finally {
      receiver.respond = () => ({ status: 201, body: {} });
    }
  });
});
