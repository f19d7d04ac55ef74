import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../../db/client';
import { insertBuild } from '../../db/queries/builds';
import { ensureNamespace } from '../../db/queries/namespaces';
import { ensureRepository } from '../../db/queries/repositories';
import { claimImageTags, listImageTags, releaseImageTagClaims, upsertImageTags } from '../../db/queries/tags';

let handle: DbHandle;
let repositoryId: string;
beforeAll(async () => {
  handle = await openDatabase({ dataDir: 'memory://' });
  repositoryId = (await ensureRepository(handle.db, await ensureNamespace(handle.db, 'claims'), 'app')).id;
}, 60_000);
afterAll(() => handle?.close());

const digest = (c: string) => `sha256:${c.repeat(64)}`;

async function newBuild(): Promise<string> {
  const id = randomUUID();
  await insertBuild(handle.db, {
    id, repositoryId, trigger: 'api', creationMethod: 'manual build', dockerfile: 'FROM scratch', platforms: ['linux/amd64'],
    tags: ['v1'], workflowId: `build-${id}`,
  });
  return id;
}

const claim = (buildId: string, tags: string[], d: string) =>
  claimImageTags(handle.db, { repositoryId, tags, digest: d, buildId, creationMethod: 'manual build' });

const rows = async () => (await listImageTags(handle.db, repositoryId)).map((t) => [t.tag, t.digest, t.buildId]);

describe('claimImageTags', () => {
  it('the first build claims; another build with other content is refused and claims nothing', async () => {
    const a = await newBuild();
    const b = await newBuild();
    expect(await claim(a, ['v1', 'v1.0'], digest('a'))).toEqual([]);
    const refused = await claim(b, ['v2', 'v1'], digest('b'));
    expect(refused.map((t) => [t.tag, t.buildId])).toEqual([['v1', a]]);
    // All or none: v2 was not claimed by the loser.
    expect(await rows()).toEqual([['v1', digest('a'), a], ['v1.0', digest('a'), a]]);
  });

  it('a retried claim by the same build, or identical content, is no conflict', async () => {
    const a = await newBuild();
    expect(await claim(a, ['r1'], digest('c'))).toEqual([]);
    expect(await claim(a, ['r1'], digest('c'))).toEqual([]);
    expect(await claim(await newBuild(), ['r1'], digest('c'))).toEqual([]);
  });

  it('a tag pushed by hand counts as taken', async () => {
    await upsertImageTags(handle.db, { repositoryId, tags: ['hand'], digest: digest('d'), buildId: null, creationMethod: 'user push' });
    expect((await claim(await newBuild(), ['hand'], digest('e'))).map((t) => t.creationMethod)).toEqual(['user push']);
  });

  it('releasing frees the tags of a build that did not finish', async () => {
    const a = await newBuild();
    await claim(a, ['rel'], digest('f'));
    await releaseImageTagClaims(handle.db, a);
    expect(await claim(await newBuild(), ['rel'], digest('0'))).toEqual([]);
  });

  it('of many concurrent claimers of one tag, exactly one wins', async () => {
    const ids = await Promise.all(Array.from({ length: 6 }, () => newBuild()));
    const results = await Promise.all(ids.map((id, i) => claim(id, ['race'], digest(String(i + 1)))));
    expect(results.filter((r) => r.length === 0)).toHaveLength(1);
  });
});
