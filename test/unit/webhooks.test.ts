import { describe, expect, it } from 'vitest';
import { GITEE_MAX_AGE_MS, normalizeGitUrl, PROVIDERS } from '../../api/webhooks/providers';
import { bitbucketPush, giteePush, githubPush, gitlabPush } from '../support/webhooks';

const SECRET = 'the-webhook-secret-1234567890';
const SHA = 'd4ef3dc3b77a011a5779eec7efdd45e2cb1234ab';
const spec = { repoUrl: 'https://git.example.com/acme/app.git', ref: 'refs/heads/main', after: SHA, secret: SECRET, files: { modified: ['svc/a.go'] } };
const headersOf = (h: Record<string, string>) => new Headers(h);

describe.each([
  ['github', githubPush],
  ['gitlab', gitlabPush],
  ['gitee', giteePush],
  ['bitbucket', bitbucketPush],
] as const)('%s deliveries', (name, sign) => {
  const provider = PROVIDERS[name];

  it('verifies a correctly signed delivery and parses the pushed ref', async () => {
    const d = sign(spec);
    expect(await provider.verify(headersOf(d.headers), d.body, SECRET, Date.now())).toBe(true);
    const parsed = provider.parse(headersOf(d.headers), JSON.parse(d.body));
    expect(parsed.kind).toBe('push');
    if (parsed.kind !== 'push') return;
    expect(parsed.deliveryId).not.toBe('');
    expect(parsed.repoUrls.map(normalizeGitUrl)).toContain('git.example.com/acme/app');
    expect(parsed.updates).toHaveLength(1);
    expect(parsed.updates[0]).toMatchObject({ ref: { type: 'branch', name: 'main' }, after: SHA, deleted: false });
  });

  it('refuses the wrong secret', async () => {
    const d = sign({ ...spec, secret: 'another-secret-entirely-000' });
    expect(await provider.verify(headersOf(d.headers), d.body, SECRET, Date.now())).toBe(false);
  });

  it('reads tags and deletions', () => {
    const tag = sign({ ...spec, ref: 'refs/tags/v1.2.3' });
    const parsedTag = provider.parse(headersOf(tag.headers), JSON.parse(tag.body));
    expect(parsedTag.kind === 'push' && parsedTag.updates[0]!.ref).toEqual({ type: 'tag', name: 'v1.2.3' });
    const del = sign({ ...spec, before: SHA, after: null });
    const parsedDel = provider.parse(headersOf(del.headers), JSON.parse(del.body));
    expect(parsedDel.kind === 'push' && parsedDel.updates[0]!.deleted).toBe(true);
  });
});

describe('signatures over the body', () => {
  it.each(['github', 'bitbucket'] as const)('%s: a changed body no longer verifies', async (name) => {
    const d = (name === 'github' ? githubPush : bitbucketPush)(spec);
    expect(await PROVIDERS[name].verify(headersOf(d.headers), d.body.replace('main', 'evil'), SECRET, Date.now())).toBe(false);
  });

  it('gitee: a signature older than the freshness window is refused', async () => {
    const d = giteePush({ ...spec, timestamp: Date.now() - GITEE_MAX_AGE_MS - 1000 });
    expect(await PROVIDERS.gitee.verify(headersOf(d.headers), d.body, SECRET, Date.now())).toBe(false);
  });

  it('gitee: the plain password mode is accepted', async () => {
    const d = giteePush(spec);
    const headers = headersOf({ ...d.headers, 'x-gitee-token': SECRET });
    expect(await PROVIDERS.gitee.verify(headers, d.body, SECRET, Date.now())).toBe(true);
  });
});

describe('file lists', () => {
  it('uses the payload files when the host lists them, and none for Bitbucket', () => {
    const gh = githubPush(spec);
    const parsed = PROVIDERS.github.parse(headersOf(gh.headers), JSON.parse(gh.body));
    expect(parsed.kind === 'push' && parsed.updates[0]!.changedFiles).toEqual(['svc/a.go']);
    const bb = bitbucketPush(spec);
    const parsedBb = PROVIDERS.bitbucket.parse(headersOf(bb.headers), JSON.parse(bb.body));
    expect(parsedBb.kind === 'push' && parsedBb.updates[0]!.changedFiles).toBeNull();
  });

  it('treats a GitHub push of 20+ commits as an incomplete file list', () => {
    const d = githubPush(spec);
    const body = JSON.parse(d.body);
    body.commits = Array.from({ length: 20 }, () => body.commits[0]);
    const parsed = PROVIDERS.github.parse(headersOf(d.headers), body);
    expect(parsed.kind === 'push' && parsed.updates[0]!.changedFiles).toBeNull();
  });
});

describe('normalizeGitUrl', () => {
  it.each([
    ['https://GitHub.com/Acme/App.git', 'github.com/acme/app'],
    ['https://github.com/acme/app/', 'github.com/acme/app'],
    ['git@github.com:acme/app.git', 'github.com/acme/app'],
    ['ssh://git@github.com/acme/app.git', 'github.com/acme/app'],
    ['http://127.0.0.1:8080/repos/app.git', '127.0.0.1:8080/repos/app'],
  ])('%s → %s', (url, key) => expect(normalizeGitUrl(url)).toBe(key));
});
