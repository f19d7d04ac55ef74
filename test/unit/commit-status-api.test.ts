import { describe, expect, it } from 'vitest';
import { classifyStatusAnswer, commitStatusRequest, deriveApiBase, locateRepository, type CommitStatus } from '../../activities/commit-status-api';

const SHA = 'c0ffee'.padEnd(40, '0');
const status: CommitStatus = { state: 'pending', context: 'kiln/main', description: 'Kiln is building the image', targetUrl: 'https://kiln.example/builds/b1' };
const req = (provider: Parameters<typeof commitStatusRequest>[0]['provider'], cloneUrl: string, over: Partial<CommitStatus> = {}) =>
  commitStatusRequest({ provider, cloneUrl, commit: SHA, token: 'tok', status: { ...status, ...over } });

describe('API bases derived from clone URLs', () => {
  it.each([
    ['github', 'https://github.com/acme/app.git', 'https://api.github.com'],
    ['github', 'git@github.com:acme/app.git', 'https://api.github.com'],
    ['github', 'https://ghe.corp.example/acme/app.git', 'https://ghe.corp.example/api/v3'],
    ['gitlab', 'https://gitlab.com/group/sub/app.git', 'https://gitlab.com/api/v4'],
    ['gitlab', 'ssh://git@git.corp.example/group/app.git', 'https://git.corp.example/api/v4'],
    ['gitee', 'https://gitee.com/acme/app.git', 'https://gitee.com/api/v5'],
    ['bitbucket', 'https://bitbucket.org/team/app.git', 'https://api.bitbucket.org/2.0'],
    ['gitea', 'http://127.0.0.1:3000/kiln/app.git', 'http://127.0.0.1:3000/api/v1'],
    ['gitea', 'https://git.example/gitea/kiln/app.git', 'https://git.example/gitea/api/v1'],
    ['forgejo', 'https://codeberg.org/kiln/app.git', 'https://codeberg.org/api/v1'],
  ] as const)('%s %s → %s', (provider, url, base) => {
    expect(deriveApiBase(provider, locateRepository(url))).toBe(base);
  });

  it('a URL without owner and repository is refused', () => {
    expect(() => locateRepository('https://github.com/app.git')).toThrow(/owner and repository/);
  });
});

describe('status requests', () => {
  it('GitHub: POST /repos/o/r/statuses/sha, bearer token, GitHub states', () => {
    const r = req('github', 'https://github.com/acme/app.git', { state: 'canceled', description: 'superseded' });
    expect(r.url).toBe(`https://api.github.com/repos/acme/app/statuses/${SHA}`);
    expect(r.headers.authorization).toBe('Bearer tok');
    expect(JSON.parse(r.body)).toEqual({ state: 'error', target_url: status.targetUrl, description: 'superseded', context: 'kiln/main' });
  });

  it('GitLab: the whole project path, sub-groups included, PRIVATE-TOKEN, GitLab states', () => {
    const r = req('gitlab', 'https://gitlab.com/group/sub/app.git', { state: 'failure', description: 'step_failed' });
    expect(r.url).toBe(`https://gitlab.com/api/v4/projects/group%2Fsub%2Fapp/statuses/${SHA}`);
    expect(r.headers['private-token']).toBe('tok');
    expect(r.headers.authorization).toBeUndefined();
    expect(JSON.parse(r.body)).toMatchObject({ state: 'failed', name: 'kiln/main' });
  });

  it('Gitea: token auth under its sub-path', () => {
    const r = req('gitea', 'https://git.example/gitea/kiln/app.git');
    expect(r.url).toBe(`https://git.example/gitea/api/v1/repos/kiln/app/statuses/${SHA}`);
    expect(r.headers.authorization).toBe('token tok');
  });

  it('Bitbucket: a key of at most 40 characters, the full context as the name', () => {
    const context = `kiln/${'release-'.repeat(8)}`;
    const body = JSON.parse(req('bitbucket', 'https://bitbucket.org/team/app.git', { context, state: 'success' }).body);
    expect(body.key.length).toBeLessThanOrEqual(40);
    expect(body.key).toMatch(/^kiln\//);
    expect(body).toMatchObject({ name: context, state: 'SUCCESSFUL' });
  });

  it('descriptions are capped at 140 characters', () => {
    expect(JSON.parse(req('github', 'https://github.com/a/b.git', { description: 'x'.repeat(500) }).body).description).toHaveLength(140);
  });

  it('an override replaces the derived base', () => {
    const r = commitStatusRequest({ provider: 'github', cloneUrl: 'https://github.com/a/b.git', commit: SHA, token: 't', status, apiBase: 'http://127.0.0.1:9/gh/' });
    expect(r.url).toBe(`http://127.0.0.1:9/gh/repos/a/b/statuses/${SHA}`);
  });
});

describe('answers', () => {
  it.each([
    [201, 'posted'],
    [401, 'refused'],
    [403, 'refused'],
    [404, 'refused'],
    [422, 'refused'],
    [408, 'retry'],
    [429, 'retry'],
    [502, 'retry'],
    [503, 'retry'],
  ] as const)('%i → %s', (code, outcome) => {
    expect(classifyStatusAnswer('github', code, '')).toBe(outcome);
  });

  it('GitLab: a status already in that state (a retried request that landed) counts as posted', () => {
    expect(classifyStatusAnswer('gitlab', 400, '{"message":"Cannot transition status via :enqueue from :pending"}')).toBe('posted');
    expect(classifyStatusAnswer('gitlab', 400, '{"message":"name is invalid"}')).toBe('refused');
  });
});
