// Immutable tags on the real stack: an existing tag other than `latest` is never overwritten,
// whether Kiln pushed it, another build races for it, or someone pushed it by hand.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createControlActivities } from '../../activities/control';
import { RegistryClient } from '../../activities/registry';
import { claimImageTags } from '../../db/queries/tags';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { fetchManifest, listTags } from '../support/registry';

let kiln: TestKiln;
const nonce = randomBytes(3).toString('hex');
const repo = `immut-${nonce}/app`;

beforeAll(async () => {
  kiln = await startTestKiln({ db: 'postgres' });
  const res = await kiln.api('/api/v1/repositories', { json: { namespace: `immut-${nonce}`, name: 'app', immutableTags: true } });
  expect(res.status).toBe(201);
});
afterAll(async () => {
  await kiln?.close();
});

const dockerfile = (marker: string) => `FROM ${kiln.registry}/base/busybox\nRUN echo "${marker}" > /marker\n`;

async function submit(tags: string[], marker: string) {
  return kiln.api('/api/v1/builds', { json: { repository: repo, dockerfile: dockerfile(marker), platforms: ['linux/amd64', 'linux/arm64'], tags } });
}

async function build(tags: string[], marker: string): Promise<any> {
  const res = await submit(tags, marker);
  expect(res.status).toBe(202);
  return waitForBuild(kiln, (await res.json()).buildId);
}

/** Copies a manifest under a new tag through the registry API, as `crane tag` or a script would. */
async function tagByHand(from: string, to: string): Promise<string> {
  const src = (await fetchManifest(kiln.registry, repo, from))!;
  const res = await fetch(`http://${kiln.registry}/v2/${repo}/manifests/${to}`, {
    method: 'PUT',
    headers: { 'content-type': src.contentType },
    body: JSON.stringify(src.json),
  });
  expect(res.status).toBe(201);
  return res.headers.get('docker-content-digest')!;
}

let first: any;

describe('immutable tags', () => {
  it('an existing tag is refused at submit (409, nothing created); latest moves', async () => {
    first = await build(['v1', 'latest'], `one ${nonce}`);
    expect(first.status).toBe('succeeded');
    const before = (await (await kiln.api(`/api/v1/builds?repository=${repo}`)).json()).items.length;
    const again = await submit(['v1'], `two ${nonce}`);
    expect(again.status).toBe(409);
    expect((await again.json()).error).toMatchObject({ code: 'conflict', details: { tags: ['v1'] } });
    expect((await (await kiln.api(`/api/v1/builds?repository=${repo}`)).json()).items.length).toBe(before);

    const latest = await build(['latest'], `three ${nonce}`);
    expect(latest.status).toBe('succeeded');
    expect((await fetchManifest(kiln.registry, repo, 'latest'))!.digest).toBe(latest.manifestDigest);
    expect((await fetchManifest(kiln.registry, repo, 'v1'))!.digest).toBe(first.manifestDigest);
  });

  it('two builds racing for one new tag: exactly one pushes it, the other fails before pushing any tag', async () => {
    // Both are accepted (the tag does not exist yet), build at once, and meet at the final check.
    const [a, b] = await Promise.all([submit(['v2', `only-a-${nonce}`], `race a ${nonce}`), submit(['v2', `only-b-${nonce}`], `race b ${nonce}`)]);
    expect([a.status, b.status]).toEqual([202, 202]);
    const builds = await Promise.all([a, b].map(async (r) => waitForBuild(kiln, (await r.json()).buildId)));
    const winner = builds.find((x) => x.status === 'succeeded');
    const loser = builds.find((x) => x.status === 'failed');
    expect(winner && loser, builds.map((x) => `${x.status} ${JSON.stringify(x.error)}`).join('; ')).toBeTruthy();
    expect(loser.error.code).toBe('tag_immutable');
    // Whoever checks second sees the tag either claimed in the database or already in the registry.
    expect(loser.error.message).toMatch(
      new RegExp(`^Tags are immutable in ${repo} and these already exist: v2 \\((pushed by build ${winner.id}|in the registry)\\); no tag was pushed$`),
    );
    expect(loser.pushedTags).toEqual([]);
    expect((await fetchManifest(kiln.registry, repo, 'v2'))!.digest).toBe(winner.manifestDigest);
    // Not half-tagged: the loser's other tag was never pushed either.
    const loserOnly = winner.tags.includes(`only-a-${nonce}`) ? `only-b-${nonce}` : `only-a-${nonce}`;
    expect(await fetchManifest(kiln.registry, repo, loserOnly)).toBeNull();
    const repoId = (await (await kiln.api(`/api/v1/repositories?namespace=immut-${nonce}`)).json()).items[0].id;
    const versions = (await (await kiln.api(`/api/v1/repositories/${repoId}/tags`)).json()).items;
    expect(versions.find((t: any) => t.tag === 'v2')).toMatchObject({ digest: winner.manifestDigest, buildId: winner.id });
    expect(versions.find((t: any) => t.tag === loserOnly)).toBeUndefined();
  });

  it('the final check alone settles concurrent pushes of one tag (assembleImageIndex against Postgres and the registry)', async () => {
    // Two real sets of platform images from builds that already ran, pushed at once to one tag.
    const done = (await (await kiln.api(`/api/v1/builds?repository=${repo}&status=succeeded`)).json()).items.slice(0, 2);
    expect(done).toHaveLength(2);
    const control = createControlActivities({ db: kiln.db.db, registry: new RegistryClient(kiln.registry) });
    // The index must describe the platform manifests exactly: take their media type and size from the registry.
    const withSizes = async (b: any) =>
      Promise.all(
        b.platforms.map(async (p: any) => {
          const res = await fetch(`http://${kiln.registry}/v2/${repo}/manifests/${p.digest}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
          return { platform: p.platform, digest: p.digest, mediaType: res.headers.get('content-type')!, size: Number(res.headers.get('content-length')), cacheHits: 0 };
        }),
      );
    const inputs = await Promise.all(done.map(async (b: any) => ({ buildId: b.id, images: await withSizes(b) })));
    const results = await Promise.allSettled(
      inputs.map((i) => control.assembleImageIndex({ ...i, repository: repo, tags: [`race-${nonce}`], immutableTags: true })),
    );
    const ok = results.filter((r): r is PromiseFulfilledResult<{ digest: string }> => r.status === 'fulfilled');
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(ok).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.reason).toMatchObject({ type: 'tag_immutable', nonRetryable: true });
    expect((await fetchManifest(kiln.registry, repo, `race-${nonce}`))!.digest).toBe(ok[0]!.value.digest);

    // The database arbitrates on its own too: concurrent claims by different builds on Postgres, one winner.
    const repositoryId = (await (await kiln.api(`/api/v1/repositories?namespace=immut-${nonce}`)).json()).items[0].id;
    const all = (await (await kiln.api(`/api/v1/builds?repository=${repo}`)).json()).items;
    expect(all.length).toBeGreaterThanOrEqual(4);
    const claims = await Promise.all(
      all.map((b: any, i: number) =>
        claimImageTags(kiln.db.db, { repositoryId, tags: [`db-race-${nonce}`], digest: `sha256:${String(i % 10).repeat(64)}`, buildId: b.id, creationMethod: 'manual build' }),
      ),
    );
    expect(claims.filter((c) => c.length === 0)).toHaveLength(1);
  });

  it('a tag pushed by hand, unknown to Kiln, is never overwritten: the build fails with the reason, the tag is untouched', async () => {
    const handDigest = await tagByHand('v1', `hand-${nonce}`);
    const res = await submit([`hand-${nonce}`, `extra-${nonce}`], `over hand ${nonce}`);
    expect(res.status).toBe(202); // Kiln's records know nothing of it: the final check does
    const b = await waitForBuild(kiln, (await res.json()).buildId);
    expect(b.status).toBe('failed');
    expect(b.error).toEqual({
      code: 'tag_immutable',
      message: `Tags are immutable in ${repo} and these already exist: hand-${nonce} (in the registry); no tag was pushed`,
    });
    expect((await fetchManifest(kiln.registry, repo, `hand-${nonce}`))!.digest).toBe(handDigest);
    expect(await fetchManifest(kiln.registry, repo, `extra-${nonce}`)).toBeNull();
    const logs = await (await kiln.api(`/api/v1/builds/${b.id}/logs`)).text();
    expect(logs).toContain(`==> build failed: ${b.error.message}`);
    expect(await listTags(kiln.registry, repo)).not.toContain(`extra-${nonce}`);
  });
});
