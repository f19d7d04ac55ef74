import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KILN_USER_AGENT } from '../../../activities/registry';
import { registryNotificationToken } from '../../../api/routes/registry-events';
import { insertNamespace } from '../../../db/queries/namespaces';
import { getRepositoryByPath } from '../../../db/queries/repositories';
import { listImageTags, upsertImageTags } from '../../../db/queries/tags';
import { createHarness, DB_TIMEOUT, SECRET_KEY, type Harness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
  await insertNamespace(h.db, { name: 'hand' });
  await insertNamespace(h.db, { name: 'closed', autoCreateRepository: false });
}, DB_TIMEOUT);
afterAll(() => h?.close());

const TOKEN = registryNotificationToken(SECRET_KEY);
const digest = (c: string) => `sha256:${c.repeat(64)}`;

/** One event as CNCF Distribution 2.8 sends it (trimmed of fields Kiln ignores). */
function pushEvent(repository: string, tag: string | undefined, d: string, o: { mediaType?: string; useragent?: string; action?: string } = {}) {
  return {
    id: `ev-${Math.random()}`,
    timestamp: new Date().toISOString(),
    action: o.action ?? 'push',
    target: {
      mediaType: o.mediaType ?? 'application/vnd.oci.image.index.v1+json',
      size: 512,
      digest: d,
      length: 512,
      repository,
      url: `http://127.0.0.1:5000/v2/${repository}/manifests/${d}`,
      ...(tag ? { tag } : {}),
    },
    request: { id: 'r1', addr: '127.0.0.1:40000', host: '127.0.0.1:5000', method: 'PUT', useragent: o.useragent ?? 'docker/24.0.7 go/go1.20.10' },
    actor: {},
    source: { addr: 'host:5000', instanceID: 'i1' },
  };
}

const send = (events: unknown[], token: string | null = TOKEN) =>
  h.call('/webhooks/registry', {
    body: JSON.stringify({ events }),
    token,
    headers: { 'content-type': 'application/vnd.docker.distribution.events.v1+json' },
  });

async function tagsOf(path: string) {
  const [ns, name] = path.split('/');
  const repo = await getRepositoryByPath(h.db, ns!, name!);
  return repo ? (await listImageTags(h.db, repo.id)).map((t) => [t.tag, t.digest, t.creationMethod, t.buildId]) : null;
}

describe('POST /webhooks/registry', () => {
  it('records a tag pushed by hand as `user push`, creating the repository in a known namespace', async () => {
    const res = await send([pushEvent('hand/app', 'v1', digest('a'), { mediaType: 'application/vnd.docker.distribution.manifest.v2+json' })]);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ recorded: [{ repository: 'hand/app', tag: 'v1', digest: digest('a') }], ignored: 0, rebuilds: [] });
    expect(await tagsOf('hand/app')).toEqual([['v1', digest('a'), 'user push', null]]);
    // Redelivery is harmless; a later hand push moves the tag.
    await send([pushEvent('hand/app', 'v1', digest('a'))]);
    await send([pushEvent('hand/app', 'v1', digest('b'))]);
    expect(await tagsOf('hand/app')).toEqual([['v1', digest('b'), 'user push', null]]);
  });

  it("ignores Kiln's own pushes, pulls, pushes by digest, blobs, other artifacts and unknown namespaces", async () => {
    const res = await send([
      pushEvent('hand/own', 'v1', digest('c'), { useragent: KILN_USER_AGENT }),
      pushEvent('hand/own', 'v2', digest('c'), { action: 'pull' }),
      pushEvent('hand/own', undefined, digest('c')),
      pushEvent('hand/own', 'v3', digest('c'), { mediaType: 'application/octet-stream' }),
      pushEvent('hand/own', 'v4', digest('c'), { mediaType: 'application/vnd.example.sbom' }),
      pushEvent('base/busybox', 'latest', digest('c')),
      pushEvent('closed/app', 'v1', digest('c')),
      pushEvent('hand/deep/er', 'v1', digest('c')),
      pushEvent('hand/own', 'v5', 'sha256:short'),
    ]);
    expect(res.body).toEqual({ recorded: [], ignored: 9, rebuilds: [] });
    expect(await tagsOf('hand/own')).toBeNull();
    expect(await tagsOf('base/busybox')).toBeNull();
    expect(await tagsOf('closed/app')).toBeNull();
  });

  it("does not relabel a build's tag when its own push is reported late", async () => {
    await send([pushEvent('hand/built', 'seed', digest('d'))]);
    const [ns, name] = ['hand', 'built'];
    const repo = (await getRepositoryByPath(h.db, ns, name))!;
    const { body } = await h.call('/api/v1/builds', {
      json: { repository: 'hand/built', dockerfile: 'FROM scratch', platforms: ['linux/amd64'], tags: ['v1'] },
    });
    await upsertImageTags(h.db, { repositoryId: repo.id, tags: ['v1'], digest: digest('e'), buildId: body.buildId, creationMethod: 'manual build' });
    expect((await send([pushEvent('hand/built', 'v1', digest('e'), { useragent: 'Go-http-client/1.1' })])).body.recorded).toEqual([]);
    expect((await tagsOf('hand/built'))!.find((t) => t[0] === 'v1')).toEqual(['v1', digest('e'), 'manual build', body.buildId]);
    // The same tag pushed by hand with other content is a user push.
    await send([pushEvent('hand/built', 'v1', digest('f'))]);
    expect((await tagsOf('hand/built'))!.find((t) => t[0] === 'v1')).toEqual(['v1', digest('f'), 'user push', null]);
  });

  it('401 without the notification token or with another one (the API token is not it)', async () => {
    for (const token of [null, 'wrong', 'test-admin-token-0123456789']) {
      const res = await send([pushEvent('hand/x', 'v1', digest('a'))], token);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    }
    expect(await tagsOf('hand/x')).toBeNull();
  });

  it('400 for a body that is not an event envelope', async () => {
    expect((await h.call('/webhooks/registry', { body: '{nope', token: TOKEN })).body.error.code).toBe('invalid_json');
    expect((await h.call('/webhooks/registry', { body: '{"events": 3}', token: TOKEN })).status).toBe(400);
  });

  it('the token is derived from the secret key and differs from it', () => {
    expect(TOKEN).toBe(registryNotificationToken(SECRET_KEY));
    expect(TOKEN).not.toBe(registryNotificationToken(`${SECRET_KEY}x`));
    expect(TOKEN).not.toContain(SECRET_KEY);
    expect(TOKEN.length).toBeGreaterThanOrEqual(40);
  });
});
