// Issue #11 on a real git host: a Gitea built from the Go module proxy (infra/tools/gitea), its own
// webhook starting Kiln's builds after a `git push`, and Kiln's commit statuses read back through
// Gitea's API. Everything on 127.0.0.1.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitStatusWorkflowId } from '../../domain/temporal';
import { startGitea, type Gitea } from '../support/gitea';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { waitFor } from '../support/processes';
import { listTags } from '../support/registry';

const SECRET = 'gitea-webhook-secret-0123456789';
let kiln: TestKiln;
let gitea: Gitea;
let work: string;
let repoId: string;

const git = (...args: string[]) =>
  promisify(execFile)('git', args, {
    cwd: work,
    env: {
      ...process.env,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_AUTHOR_NAME: 'Kiln Test',
      GIT_AUTHOR_EMAIL: 'test@kiln.invalid',
      GIT_COMMITTER_NAME: 'Kiln Test',
      GIT_COMMITTER_EMAIL: 'test@kiln.invalid',
    },
  }).then((r) => r.stdout.trim());

beforeAll(async () => {
  kiln = await startTestKiln();
  gitea = await startGitea();
  work = await mkdtemp(path.join(tmpdir(), 'kiln-gitea-work-'));

  // A private repository: Kiln clones it with the same token it sets statuses with.
  const created = await gitea.api('/user/repos', { json: { name: 'app', private: true } });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const repo = await kiln.api('/api/v1/repositories', {
    json: { namespace: 'gitea', name: 'app', source: { provider: 'gitea', url: created.body.clone_url, token: gitea.token, webhookSecret: SECRET } },
  });
  expect(repo.status).toBe(201);
  repoId = (await repo.json()).id;
  const rule = await kiln.api(`/api/v1/repositories/${repoId}/rules`, {
    json: { type: 'branch', match: 'main', platforms: ['linux/amd64'], tags: [{ template: 'latest' }] },
  });
  expect(rule.status).toBe(201);
  const hook = await gitea.api(`/repos/${gitea.user}/app/hooks`, {
    json: { type: 'gitea', active: true, events: ['push'], config: { url: `${kiln.url}/webhooks/gitea`, content_type: 'json', secret: SECRET } },
  });
  expect(hook.status, JSON.stringify(hook.body)).toBe(201);
  await git('init', '-q', '-b', 'main');
});
afterAll(async () => {
  await kiln?.close();
  await gitea?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Commits `files`, pushes main to Gitea with git, and returns the commit. */
async function push(files: Record<string, string>, message: string): Promise<string> {
  for (const [name, content] of Object.entries(files)) await writeFile(path.join(work, name), content);
  await git('add', '-A');
  await git('commit', '-q', '-m', message);
  await git('push', '-q', gitea.authUrl(gitea.user, 'app'), 'main');
  return git('rev-parse', 'HEAD');
}

/** The build Gitea's webhook started for `commit`. */
async function buildOf(commit: string): Promise<string> {
  return waitFor(
    `a build of ${commit} started by Gitea's webhook`,
    async () => {
      const list = await (await kiln.api(`/api/v1/builds?repositoryId=${repoId}`)).json();
      return list.items.find((b: any) => b.source?.commit === commit)?.id as string | undefined;
    },
    60_000,
    250,
  );
}

/** Gitea's statuses of a commit, oldest first. */
async function statusesOf(commit: string): Promise<any[]> {
  const res = await gitea.api(`/repos/${gitea.user}/app/commits/${commit}/statuses?limit=50`);
  expect(res.status).toBe(200);
  return [...res.body].sort((a: any, b: any) => a.id - b.id);
}

describe('a real Gitea', () => {
  it("git push → Gitea's webhook → a Kiln build → pending, then success on the commit", async () => {
    const dockerfile = `FROM ${kiln.registry}/base/busybox\nCOPY hello.txt /hello.txt\n`;
    const commit = await push({ Dockerfile: dockerfile, 'hello.txt': 'from gitea\n' }, 'first');
    const buildId = await buildOf(commit);
    const build = await waitForBuild(kiln, buildId);
    expect(build.status, JSON.stringify(build.error)).toBe('succeeded');
    expect(build.trigger).toBe('push');
    expect(build.source).toMatchObject({ ref: 'refs/heads/main', commit });
    expect(await listTags(kiln.registry, 'gitea/app')).toEqual(['latest']);

    // The commit-status workflow outlives the build; it ends once the final status is in.
    expect(await kiln.client.workflow.getHandle(commitStatusWorkflowId(buildId)).result()).toBe('posted');
    const statuses = await statusesOf(commit);
    expect(statuses.map((s) => [s.status, s.context, s.target_url])).toEqual([
      ['pending', 'kiln/main', `${kiln.url}/builds/${buildId}`],
      ['success', 'kiln/main', `${kiln.url}/builds/${buildId}`],
    ]);
    expect(statuses[1].description).toContain('gitea/app:latest');
    expect(statuses.every((s) => s.creator.login === gitea.user)).toBe(true);
  });

  it('a failing build ends as failure with its error code', async () => {
    const commit = await push({ Dockerfile: `FROM ${kiln.registry}/base/busybox\nRUN exit 3\n` }, 'broken');
    const buildId = await buildOf(commit);
    const build = await waitForBuild(kiln, buildId);
    expect(build.status).toBe('failed');
    expect(build.error.code).toBe('step_failed');
    expect(await kiln.client.workflow.getHandle(commitStatusWorkflowId(buildId)).result()).toBe('posted');
    expect((await statusesOf(commit)).map((s) => [s.status, s.context, s.description])).toEqual([
      ['pending', 'kiln/main', 'Kiln is building the image'],
      ['failure', 'kiln/main', 'step_failed'],
    ]);
  });
});
