// Gitea and Forgejo deliveries: real payloads captured from Gitea v1.26.0 (test/support/gitea.ts,
// a hook with the secret recorded next to each), verified and parsed as Kiln reads them.
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { normalizeGitUrl, PROVIDERS } from '../../api/webhooks/providers';

interface Captured {
  secret: string;
  headers: Record<string, string>;
  body: string;
}

const fixture = (name: string): Captured =>
  JSON.parse(readFileSync(path.join(import.meta.dirname, '../fixtures/gitea', `${name}.json`), 'utf8')) as Captured;
const branch = fixture('push-branch');
const first = fixture('push-branch-first');
const tag = fixture('push-tag');
const create = fixture('create-tag');
const now = Date.now();

/** The same delivery as Forgejo sends it: X-Forgejo-* headers only. */
function asForgejo(d: Captured, secret = d.secret): Record<string, string> {
  return {
    'content-type': 'application/json',
    'x-forgejo-event': d.headers['x-gitea-event']!,
    'x-forgejo-delivery': d.headers['x-gitea-delivery']!,
    'x-forgejo-signature': createHmac('sha256', secret).update(d.body).digest('hex'),
  };
}

describe('Gitea signatures (X-Gitea-Signature: hex HMAC-SHA256 of the body)', () => {
  it('verifies the deliveries Gitea signed', async () => {
    for (const d of [branch, first, tag, create]) {
      expect(await PROVIDERS.gitea.verify(new Headers(d.headers), d.body, d.secret, now)).toBe(true);
    }
  });

  it('refuses another secret, a changed body and a missing signature', async () => {
    expect(await PROVIDERS.gitea.verify(new Headers(branch.headers), branch.body, 'another-secret-0123456789', now)).toBe(false);
    expect(await PROVIDERS.gitea.verify(new Headers(branch.headers), branch.body.replace('refs/heads/main', 'refs/heads/evil'), branch.secret, now)).toBe(false);
    const headers = new Headers(branch.headers);
    headers.delete('x-gitea-signature');
    expect(await PROVIDERS.gitea.verify(headers, branch.body, branch.secret, now)).toBe(false);
  });

  it('does not take the GitHub-style headers Gitea also sends as a Gitea signature', async () => {
    const headers = new Headers(branch.headers);
    headers.delete('x-gitea-signature');
    expect(headers.get('x-hub-signature-256')).toMatch(/^sha256=/);
    expect(await PROVIDERS.gitea.verify(headers, branch.body, branch.secret, now)).toBe(false);
  });
});

describe('Forgejo signatures (X-Forgejo-Signature)', () => {
  it('verifies X-Forgejo-Signature, and X-Gitea-Signature as the fallback Forgejo also sends', async () => {
    expect(await PROVIDERS.forgejo.verify(new Headers(asForgejo(branch)), branch.body, branch.secret, now)).toBe(true);
    expect(await PROVIDERS.forgejo.verify(new Headers(branch.headers), branch.body, branch.secret, now)).toBe(true);
  });

  it('refuses a wrong or missing signature', async () => {
    expect(await PROVIDERS.forgejo.verify(new Headers(asForgejo(branch, 'wrong-secret-0123456789')), branch.body, branch.secret, now)).toBe(false);
    const headers = new Headers(asForgejo(branch));
    headers.delete('x-forgejo-signature');
    expect(await PROVIDERS.forgejo.verify(headers, branch.body, branch.secret, now)).toBe(false);
  });

  it('parses with X-Forgejo-Event and X-Forgejo-Delivery', () => {
    const parsed = PROVIDERS.forgejo.parse(new Headers(asForgejo(branch)), JSON.parse(branch.body));
    expect(parsed).toMatchObject({ kind: 'push', deliveryId: branch.headers['x-gitea-delivery'] });
  });
});

describe('Gitea payloads', () => {
  it('a branch push: the ref, the commits and the files they touched', () => {
    const body = JSON.parse(branch.body);
    const parsed = PROVIDERS.gitea.parse(new Headers(branch.headers), body);
    expect(parsed.kind).toBe('push');
    if (parsed.kind !== 'push') return;
    expect(parsed.deliveryId).toBe(branch.headers['x-gitea-delivery']);
    expect(parsed.repoUrls.map(normalizeGitUrl)).toContain('127.0.0.1:13000/kiln/app');
    expect(parsed.updates).toEqual([
      { ref: { type: 'branch', name: 'main' }, before: body.before, after: body.after, deleted: false, changedFiles: ['hello.txt'] },
    ]);
  });

  it('the first push of a branch: no before, every added file', () => {
    const parsed = PROVIDERS.gitea.parse(new Headers(first.headers), JSON.parse(first.body));
    expect(parsed.kind === 'push' && parsed.updates[0]).toMatchObject({ before: null, deleted: false });
    expect(parsed.kind === 'push' && [...parsed.updates[0]!.changedFiles!].sort()).toEqual(['Dockerfile', 'hello.txt']);
  });

  it('an annotated tag push builds the tagged commit, not the tag object; its files are unknown', () => {
    const body = JSON.parse(tag.body);
    expect(body.after).not.toBe(body.head_commit.id); // Gitea names the tag object in `after`
    const parsed = PROVIDERS.gitea.parse(new Headers(tag.headers), body);
    expect(parsed.kind === 'push' && parsed.updates).toEqual([
      { ref: { type: 'tag', name: 'v1.2.3' }, before: null, after: body.head_commit.id, deleted: false, changedFiles: null },
    ]);
  });

  it('a create event is ignored (the push of the same tag builds it)', () => {
    const parsed = PROVIDERS.gitea.parse(new Headers(create.headers), JSON.parse(create.body));
    expect(parsed).toMatchObject({ kind: 'ignored', reason: expect.stringContaining('create') });
  });

  it('a deletion is a deleted ref', () => {
    const body = { ...JSON.parse(branch.body), before: JSON.parse(branch.body).after, after: '0'.repeat(40), commits: [], head_commit: null };
    const parsed = PROVIDERS.gitea.parse(new Headers(branch.headers), body);
    expect(parsed.kind === 'push' && parsed.updates[0]!.deleted).toBe(true);
  });

  it('a delivery without X-Gitea-Delivery or X-Gitea-Event is malformed', () => {
    for (const h of ['x-gitea-delivery', 'x-gitea-event']) {
      const headers = new Headers(branch.headers);
      headers.delete(h);
      expect(() => PROVIDERS.gitea.parse(headers, JSON.parse(branch.body))).toThrow(/missing X-gitea/i);
    }
  });
});
