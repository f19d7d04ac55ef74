// Issue #3 on real parts: a git server over HTTP (git http-backend), the real stack, webhooks
// signed as each platform signs them, images checked through the registry's own API.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PushWorkflowResult } from '../../domain/push';
import { formatBuildTime } from '../../domain/time-zones';
import { startGitServer, type GitServer } from '../support/git-server';
import { pushWorkflowResult, startTestKiln, waitForBuild, type ApiResponse, type TestKiln } from '../support/kiln';
import { fetchManifest, listTags, unpackImage } from '../support/registry';
import { bitbucketPush, giteePush, githubPush, gitlabPush, type SignedDelivery } from '../support/webhooks';

const GIT_PASSWORD = 'git-secret-token-7f3a9c1e5b';
let kiln: TestKiln;
let git: GitServer;

beforeAll(async () => {
  kiln = await startTestKiln();
  git = await startGitServer({ auth: { username: '*', password: GIT_PASSWORD } });
});
afterAll(async () => {
  await kiln?.close();
  await git?.close();
});

const SECRET = 'webhook-secret-0123456789abcdef';

async function bindRepository(name: string, provider: string, repoName: string, extra: Record<string, unknown> = {}) {
  const res = await kiln.api('/api/v1/repositories', {
    json: { namespace: 'git', name, source: { provider, url: git.url(repoName), webhookSecret: SECRET, ...extra } },
  });
  expect(res.status).toBe(201);
  return (await res.json()).id as string;
}

async function addRule(repoId: string, rule: Record<string, unknown>) {
  const res = await kiln.api(`/api/v1/repositories/${repoId}/rules`, { json: { platforms: ['linux/amd64'], ...rule } });
  const body = await res.json();
  expect(res.status, JSON.stringify(body)).toBe(201);
  return body.id as string;
}

async function deliver(provider: string, d: SignedDelivery): Promise<ApiResponse> {
  return fetch(`${kiln.url}/webhooks/${provider}`, { method: 'POST', headers: d.headers, body: d.body }) as Promise<ApiResponse>;
}

/** Sends a delivery, expects 202, and waits for its PushWorkflow: what it built and skipped. */
async function push(provider: string, d: SignedDelivery): Promise<PushWorkflowResult & { workflowId: string }> {
  const res = await deliver(provider, d);
  const body = await res.json();
  expect(res.status, JSON.stringify(body)).toBe(202);
  expect(body.status).toBe('received');
  const result: PushWorkflowResult = await pushWorkflowResult(kiln, body.workflowId);
  return { ...result, workflowId: body.workflowId };
}

/** The delivery as GET /repositories/:id/deliveries shows it. */
async function deliveryRecord(repoId: string, deliveryId: string) {
  const list = await (await kiln.api(`/api/v1/repositories/${repoId}/deliveries`)).json();
  return list.items.find((d: any) => d.deliveryId === deliveryId);
}

const dockerfile = (extra = '') => `FROM ${kiln.registry}/base/busybox\nCOPY hello.txt /hello.txt\n${extra}`;

async function fileInImage(repo: string, tag: string, file: string): Promise<string> {
  const index = (await fetchManifest(kiln.registry, repo, tag))!;
  const amd64 = index.json.manifests.find((m: any) => m.platform.architecture === 'amd64');
  const { rootfs } = await unpackImage(kiln.registry, repo, amd64.digest);
  return readFile(path.join(rootfs, file), 'utf8');
}

describe('git sources, rules and webhooks', () => {
  it('GitHub: a push to release-v7 builds exactly the pushed commit under the rendered tag', async () => {
    await git.createRepo('app');
    const repoId = await bindRepository('app', 'github', 'app');
    await addRule(repoId, {
      type: 'branch',
      match: 'release-(?<imageTag>\\w*)',
      contextDir: 'svc',
      dockerfile: 'Dockerfile.release',
      tags: [{ template: '${imageTag}', buildTime: 'yyyyMMddHHmm', commitIdLength: 30 }],
    });
    const pushed = await git.commit('app', {
      branch: 'release-v7',
      files: { 'svc/Dockerfile.release': dockerfile(), 'svc/hello.txt': 'from the pushed commit\n' },
    });

    const { buildIds, workflowId } = await push('github', githubPush({ repoUrl: git.url('app'), ref: 'refs/heads/release-v7', after: pushed, secret: SECRET, files: { added: ['svc/hello.txt'] } }));
    expect(buildIds).toHaveLength(1);
    // The build is a child of the push workflow, which it outlives.
    const child = await kiln.client.workflow.getHandle(`build-${buildIds[0]}`).describe();
    expect(child.type).toBe('ImageBuildWorkflow');
    expect(child.parentExecution?.workflowId).toBe(workflowId);
    expect((await kiln.client.workflow.getHandle(workflowId).describe()).type).toBe('PushWorkflow');
    // The branch moves on once the push was taken: the build still uses the pushed commit.
    await git.commit('app', { branch: 'release-v7', files: { 'svc/hello.txt': 'a later commit\n' } });
    const build = await waitForBuild(kiln, buildIds[0]!);
    expect(build.error).toBeUndefined();
    expect(build.status).toBe('succeeded');
    expect(build.trigger).toBe('push');
    expect(build.creationMethod).toBe('auto build');
    expect(build.source).toEqual({ url: git.url('app'), ref: 'refs/heads/release-v7', commit: pushed });

    const expectedTag = `v7-${formatBuildTime(new Date(build.createdAt), 'yyyyMMddHHmm', 'UTC+8')}-${pushed.slice(0, 30)}`;
    expect(build.tags).toEqual([expectedTag]);
    expect(await listTags(kiln.registry, 'git/app')).toEqual([expectedTag]);
    expect(await fileInImage('git/app', expectedTag, 'hello.txt')).toBe('from the pushed commit\n');

    const tags = await (await kiln.api(`/api/v1/repositories/${repoId}/tags`)).json();
    expect(tags.items.map((t: any) => [t.tag, t.creationMethod])).toEqual([[expectedTag, 'auto build']]);
  });

  it('GitLab: a tag push with semver expansion pushes every version tag', async () => {
    await git.createRepo('lib');
    const repoId = await bindRepository('lib', 'gitlab', 'lib');
    await addRule(repoId, { type: 'tag', match: 'v\\d+\\.\\d+\\.\\d+.*', tags: [{ template: '${tag}' }], semver: true });
    const sha = await git.commit('lib', { branch: 'main', files: { Dockerfile: dockerfile(), 'hello.txt': 'lib 1.4.2\n' } });
    await git.tag('lib', 'v1.4.2', sha, { annotated: true });
    const { buildIds } = await push('gitlab', gitlabPush({ repoUrl: git.url('lib'), ref: 'refs/tags/v1.4.2', after: sha, secret: SECRET }));
    const build = await waitForBuild(kiln, buildIds[0]!);
    expect(build.status).toBe('succeeded');
    expect(build.trigger).toBe('tag');
    expect([...build.tags].sort()).toEqual(['1', '1.4', '1.4.2', 'v1.4.2']);
    expect((await listTags(kiln.registry, 'git/lib')).sort()).toEqual(['1', '1.4', '1.4.2', 'v1.4.2']);
    const digests = await Promise.all(['1', '1.4', '1.4.2', 'v1.4.2'].map(async (t) => (await fetchManifest(kiln.registry, 'git/lib', t))!.digest));
    expect(new Set(digests).size).toBe(1);
  });

  it('Gitee: the same delivery five times starts one push workflow and one build; a stale or wrong signature starts none', async () => {
    await git.createRepo('gitee-app');
    const repoId = await bindRepository('gitee-app', 'gitee', 'gitee-app');
    await addRule(repoId, { type: 'branch', match: 'main', tags: [{ template: 'latest' }] });
    const sha = await git.commit('gitee-app', { branch: 'main', files: { Dockerfile: dockerfile(), 'hello.txt': 'gitee\n' } });
    const delivery = giteePush({ repoUrl: git.url('gitee-app'), ref: 'refs/heads/main', after: sha, secret: SECRET, files: { added: ['hello.txt'] } });
    const answers = await Promise.all(Array.from({ length: 5 }, () => deliver('gitee', delivery)));
    const bodies = await Promise.all(answers.map((a) => a.json()));
    expect(answers.filter((a) => a.status === 202)).toHaveLength(1);
    expect(answers.filter((a) => a.status === 200)).toHaveLength(4);
    expect(bodies.filter((b: any) => b.duplicate)).toHaveLength(4);
    const workflowIds = new Set(bodies.map((b: any) => b.workflowId));
    expect(workflowIds.size).toBe(1);
    const [workflowId] = workflowIds as Set<string>;
    const runs = [];
    for await (const wf of kiln.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) runs.push(wf);
    expect(runs).toHaveLength(1);
    const { buildIds }: PushWorkflowResult = await pushWorkflowResult(kiln, workflowId!);
    expect(buildIds).toHaveLength(1);
    await waitForBuild(kiln, buildIds[0]!);
    const list = await (await kiln.api(`/api/v1/builds?repositoryId=${repoId}`)).json();
    expect(list.items).toHaveLength(1);
    // A copy after the workflow ended is still refused, and names the build it started.
    const late = await deliver('gitee', delivery);
    expect(late.status).toBe(200);
    expect(await late.json()).toMatchObject({ duplicate: true, workflowId, status: 'done', builds: [{ buildId: buildIds[0] }] });

    const stale = giteePush({ repoUrl: git.url('gitee-app'), ref: 'refs/heads/main', after: sha, secret: SECRET, timestamp: Date.now() - 3_600_000, hookId: 2 });
    expect((await deliver('gitee', stale)).status).toBe(401);
    const forged = giteePush({ repoUrl: git.url('gitee-app'), ref: 'refs/heads/main', after: sha, secret: 'not-the-secret-at-all', hookId: 3 });
    expect((await deliver('gitee', forged)).status).toBe(401);
    expect((await (await kiln.api(`/api/v1/builds?repositoryId=${repoId}`)).json()).items).toHaveLength(1);
  });

  it('Bitbucket: a path filter skips a push that touches no matching file (files from git)', async () => {
    await git.createRepo('mono');
    const repoId = await bindRepository('mono', 'bitbucket', 'mono');
    await addRule(repoId, { type: 'branch', match: 'main', contextDir: 'svc', paths: ['svc/**'], tags: [{ template: 'svc', commitId: true }] });
    const first = await git.commit('mono', { branch: 'main', files: { 'svc/Dockerfile': dockerfile(), 'svc/hello.txt': 'svc\n', 'docs/readme.md': 'v1' } });
    const docsOnly = await git.commit('mono', { branch: 'main', files: { 'docs/readme.md': 'v2' } });
    const skipDelivery = bitbucketPush({ repoUrl: git.url('mono'), ref: 'refs/heads/main', before: first, after: docsOnly, secret: SECRET });
    const skipped = await push('bitbucket', skipDelivery);
    expect(skipped.buildIds).toEqual([]);
    expect(skipped.results).toEqual([expect.objectContaining({ outcome: 'skipped', code: 'paths', reason: expect.stringMatching(/no changed file matches paths svc\/\*\*/) })]);
    expect(await deliveryRecord(repoId, skipDelivery.headers['x-request-uuid']!)).toMatchObject({
      status: 'done',
      results: [{ code: 'paths', reason: expect.stringContaining('svc/**') }],
    });

    const svc = await git.commit('mono', { branch: 'main', files: { 'svc/hello.txt': 'svc v2\n' } });
    const started = await push('bitbucket', bitbucketPush({ repoUrl: git.url('mono'), ref: 'refs/heads/main', before: docsOnly, after: svc, secret: SECRET }));
    expect(started.buildIds).toHaveLength(1);
    const done = await waitForBuild(kiln, started.buildIds[0]!);
    expect(done.status).toBe('succeeded');
    expect(done.tags).toEqual([`svc-${svc.slice(0, 6)}`]);
    expect(await fileInImage('git/mono', `svc-${svc.slice(0, 6)}`, 'hello.txt')).toBe('svc v2\n');
  });

  it('a newer push to the same rule and ref cancels the older running build, naming the newer one', async () => {
    await git.createRepo('busy');
    const repoId = await bindRepository('busy', 'github', 'busy');
    await addRule(repoId, { type: 'branch', match: 'main', tags: [{ template: 'main', commitId: true }] });
    const slow = await git.commit('busy', { branch: 'main', files: { Dockerfile: dockerfile('RUN sleep 60\n'), 'hello.txt': 'slow\n' } });
    const first = await push('github', githubPush({ repoUrl: git.url('busy'), ref: 'refs/heads/main', after: slow, secret: SECRET, files: { added: ['Dockerfile'] } }));
    const oldId = first.buildIds[0]!;
    for (let i = 0; ; i++) {
      const b = await (await kiln.api(`/api/v1/builds/${oldId}`)).json();
      if (b.platforms[0].status === 'running') break;
      if (i > 200) throw new Error('old build never started');
      await new Promise((r) => setTimeout(r, 100));
    }
    const fast = await git.commit('busy', { branch: 'main', files: { Dockerfile: dockerfile(), 'hello.txt': 'fast\n' } });
    const second = await push('github', githubPush({ repoUrl: git.url('busy'), ref: 'refs/heads/main', before: slow, after: fast, secret: SECRET, files: { modified: ['Dockerfile'] } }));
    const newId = second.buildIds[0]!;
    expect(second.results.filter((r) => r.outcome === 'failed')).toEqual([]);

    const old = await waitForBuild(kiln, oldId, 30_000);
    expect(old.status).toBe('canceled');
    expect(old.error.code).toBe('superseded');
    expect(old.error.message).toContain(newId);
    expect((await waitForBuild(kiln, newId)).status).toBe('succeeded');
    expect(await listTags(kiln.registry, 'git/busy')).toEqual([`main-${fast.slice(0, 6)}`]);
    // Checkouts live in per-build work dirs, removed after success and after cancel alike.
    expect(await readdir(kiln.workRoot)).toEqual([]);
  });

  it('a private repository builds with its token, which shows up in no log, response or workflow payload', async () => {
    await git.createRepo('secret-app', { private: true });
    const repoId = await bindRepository('private', 'git', 'secret-app', { token: GIT_PASSWORD });
    const ruleId = await addRule(repoId, { type: 'branch', match: 'main', tags: [{ template: 'private' }] });
    await git.commit('secret-app', { branch: 'main', files: { Dockerfile: dockerfile(), 'hello.txt': 'private\n' } });

    const res = await kiln.api(`/api/v1/rules/${ruleId}/builds`, { json: {} });
    expect(res.status).toBe(202);
    const { buildId, workflowId } = await res.json();
    const build = await waitForBuild(kiln, buildId);
    expect(build.error).toBeUndefined();
    expect(build.status).toBe('succeeded');
    expect(build.trigger).toBe('manual');
    expect(build.creationMethod).toBe('manual build');
    expect(git.requests.some((r) => r.user !== null && r.status === 200)).toBe(true);

    const seen = [
      await (await kiln.api(`/api/v1/builds/${buildId}/logs`)).text(),
      JSON.stringify(build),
      JSON.stringify(await (await kiln.api(`/api/v1/repositories/${repoId}`)).json()),
      JSON.stringify(await kiln.client.workflow.getHandle(workflowId).fetchHistory()),
    ];
    for (const text of seen) expect(text).not.toContain(GIT_PASSWORD);
  });

  it('refuses a bad signature (401), an unknown repository (404), and builds nothing for a deleted branch', async () => {
    await git.createRepo('guarded');
    const repoId = await bindRepository('guarded', 'github', 'guarded');
    await addRule(repoId, { type: 'branch', match: 'main', tags: [{ template: 'x' }] });
    const sha = await git.commit('guarded', { branch: 'main', files: { Dockerfile: dockerfile(), 'hello.txt': 'x\n' } });
    const bad = githubPush({ repoUrl: git.url('guarded'), ref: 'refs/heads/main', after: sha, secret: 'wrong-secret-wrong-secret' });
    expect((await deliver('github', bad)).status).toBe(401);
    const tampered = githubPush({ repoUrl: git.url('guarded'), ref: 'refs/heads/main', after: sha, secret: SECRET });
    expect((await deliver('github', { ...tampered, body: tampered.body.replace('refs/heads/main', 'refs/heads/mainx') })).status).toBe(401);
    const unsigned = githubPush({ repoUrl: git.url('guarded'), ref: 'refs/heads/main', after: sha, secret: SECRET });
    delete unsigned.headers['x-hub-signature-256'];
    expect((await deliver('github', unsigned)).status).toBe(401);
    const unknown = githubPush({ repoUrl: git.url('nobody'), ref: 'refs/heads/main', after: sha, secret: SECRET });
    expect((await deliver('github', unknown)).status).toBe(404);
    const deleted = await push('github', githubPush({ repoUrl: git.url('guarded'), ref: 'refs/heads/main', before: sha, after: null, secret: SECRET }));
    expect(deleted.buildIds).toEqual([]);
    expect(deleted.results).toEqual([expect.objectContaining({ outcome: 'skipped', code: 'ref_deleted' })]);
    expect((await (await kiln.api(`/api/v1/builds?repositoryId=${repoId}`)).json()).items).toEqual([]);
  });

  it('a captured delivery replayed with a new delivery id after the branch moved is skipped as stale and builds nothing', async () => {
    await git.createRepo('replayed');
    const repoId = await bindRepository('replayed', 'github', 'replayed');
    await addRule(repoId, { type: 'branch', match: 'main', tags: [{ template: 'main', commitId: true }] });
    const old = await git.commit('replayed', { branch: 'main', files: { Dockerfile: dockerfile(), 'hello.txt': 'old\n' } });
    const captured = githubPush({ repoUrl: git.url('replayed'), ref: 'refs/heads/main', after: old, secret: SECRET, files: { added: ['hello.txt'] } });
    const original = await push('github', captured);
    expect(original.buildIds).toHaveLength(1);
    expect((await waitForBuild(kiln, original.buildIds[0]!)).status).toBe('succeeded');

    const moved = await git.commit('replayed', { branch: 'main', files: { 'hello.txt': 'new\n' } });
    // Same signed body, a fresh delivery id: the signature still verifies (it covers the body only).
    const replay = { ...captured, headers: { ...captured.headers, 'x-github-delivery': `replay-${Date.now()}` } };
    const replayed = await push('github', replay);
    expect(replayed.buildIds).toEqual([]);
    expect(replayed.results).toEqual([
      expect.objectContaining({ outcome: 'skipped', code: 'stale', commit: old, reason: expect.stringContaining(`now ${moved}`) }),
    ]);
    expect(await deliveryRecord(repoId, replay.headers['x-github-delivery'])).toMatchObject({
      status: 'done',
      buildIds: [],
      results: [{ code: 'stale', reason: expect.stringMatching(/^stale: /) }],
    });
    expect((await (await kiln.api(`/api/v1/builds?repositoryId=${repoId}`)).json()).items).toHaveLength(1);
  });

  it('manual builds of a regex rule need a matching ref', async () => {
    await git.createRepo('manual');
    const repoId = await bindRepository('manual', 'git', 'manual');
    const ruleId = await addRule(repoId, { type: 'branch', match: 'feature/(?<name>[a-z]+)', tags: [{ template: '${name}', commitId: true }] });
    expect((await kiln.api(`/api/v1/rules/${ruleId}/builds`, { json: {} })).status).toBe(422); // unprocessable since the document-is-the-API merge
    expect((await kiln.api(`/api/v1/rules/${ruleId}/builds`, { json: { ref: 'main' } })).status).toBe(422); // unprocessable since the document-is-the-API merge
    const sha = await git.commit('manual', { branch: 'feature/login', files: { Dockerfile: dockerfile(), 'hello.txt': 'login\n' } });
    const res = await kiln.api(`/api/v1/rules/${ruleId}/builds`, { json: { ref: 'feature/login' } });
    expect(res.status).toBe(202);
    const build = await waitForBuild(kiln, (await res.json()).buildId);
    expect(build.status).toBe('succeeded');
    expect(build.tags).toEqual([`login-${sha.slice(0, 6)}`]);
    const missing = await kiln.api(`/api/v1/rules/${ruleId}/builds`, { json: { ref: 'feature/nothere' } });
    const failed = await waitForBuild(kiln, (await missing.json()).buildId);
    expect(failed.status).toBe('failed');
    expect(failed.error.code).toBe('ref_not_found');
  });
});
