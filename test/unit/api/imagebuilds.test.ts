import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decryptRegistryAuths } from '../../../activities/registry-auth';
import { parseImageUri } from '../../../api/routes/imagebuilds';
import { finishBuild, updateBuild } from '../../../db/queries/builds';
import { upsertImageTags } from '../../../db/queries/tags';
import { builds, repositories } from '../../../db/schema';
import { PAI_EXAMPLE_CLIENT_TOKEN, PAI_EXAMPLE_REGISTRY, paiDocumentExample } from '../../support/pai-example';
import { createHarness, DB_TIMEOUT, DOCKERFILE, SECRET_KEY, type Harness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, DB_TIMEOUT);
afterAll(() => h?.close());
beforeEach(() => h.starter.reset());

const AUTH = Buffer.from('puller:s3cret-pass').toString('base64');

function paiBody(overrides: Record<string, unknown> = {}) {
  return {
    Accessibility: 'PRIVATE',
    WorkspaceId: '12345',
    RegionId: 'cn-hangzhou',
    Resource: { EcsSpec: 'ecs.c6.large' },
    ImageBuildJobName: 'nightly',
    Image: {
      Name: 'trainer',
      Description: 'The training image',
      Uri: '127.0.0.1:5000/pai/trainer:v1',
      Labels: [{ Key: 'team', Value: 'ml' }, { Key: 'org.opencontainers.image.version', Value: '1.0' }],
    },
    BuildConfig: { Dockerfile: DOCKERFILE, BuildType: 'DOCKERFILE' },
    TargetRegistry: { Type: 'ACREE', InstanceId: 'cri-x', OverwriteImageTag: true },
    ...overrides,
  };
}

const create = (body: unknown, query = '') => h.call(`/api/v1/imagebuilds${query}`, { json: body });

describe('parseImageUri', () => {
  it('takes [registry/]namespace/repository[:tag]; the registry part is recorded, the path is what Kiln pushes to', () => {
    expect(parseImageUri('127.0.0.1:5000/a/b:v1')).toEqual({ namespace: 'a', name: 'b', tag: 'v1', registry: '127.0.0.1:5000' });
    expect(parseImageUri('a/b')).toEqual({ namespace: 'a', name: 'b', tag: 'latest', registry: null });
    expect(parseImageUri(`${PAI_EXAMPLE_REGISTRY}/pai-test/pai-test:test-v1`)).toEqual({ namespace: 'pai-test', name: 'pai-test', tag: 'test-v1', registry: PAI_EXAMPLE_REGISTRY });
  });

  it.each([
    ['a digest', '127.0.0.1:5000/a/b@sha256:abc', /not a digest/],
    ['one component', 'b:v1', /namespace\/repository/],
    ['three components', '127.0.0.1:5000/a/b/c:v1', /namespace\/repository/],
    ['upper case', 'A/b:v1', /lowercase/],
    ['a bad tag', 'a/b:-x', /not a valid tag/],
  ])('rejects %s', (_what, uri, message) => {
    expect(() => parseImageUri(uri)).toThrow(expect.objectContaining({ details: [expect.objectContaining({ message: expect.stringMatching(message) })] }));
  });
});

describe("the PAI document's example request, verbatim", () => {
  it('is accepted: builds its Dockerfile to pai-test/pai-test:test-v1 in Kiln\'s registry; GET shows every field it stored', async () => {
    const res = await create(paiDocumentExample(), `?ClientToken=${PAI_EXAMPLE_CLIENT_TOKEN}`);
    expect(res.status, res.text).toBe(200);
    const [row] = await h.db.select().from(builds).where(eq(builds.id, res.body.ImageBuildId));
    expect(row).toMatchObject({
      dockerfile: 'FROM ubuntu:18:04 RUN pip3 install numpy==1.19.5',
      tags: ['test-v1'],
      labels: { key1: 'value1' },
      clientToken: PAI_EXAMPLE_CLIENT_TOKEN,
      overwriteTags: true,
      provenance: 'min',
    });
    expect(decryptRegistryAuths(SECRET_KEY, row!.registryAuthsEnc!)).toEqual({ [PAI_EXAMPLE_REGISTRY]: { auth: 'dXNlcjp0ZXN0' } });
    const [repo] = await h.db.select().from(repositories).where(eq(repositories.id, row!.repositoryId));
    expect(repo).toMatchObject({ name: 'pai-test', visibility: 'public', description: '构建测试镜像' });
    expect(h.starter.starts).toEqual([expect.objectContaining({ buildId: res.body.ImageBuildId, repository: 'pai-test/pai-test' })]);

    const view = await h.call(`/api/v1/imagebuilds/${res.body.ImageBuildId}`);
    expect(view.status).toBe(200);
    const example = paiDocumentExample();
    expect(view.body).toMatchObject({
      BuildType: 'PackageInstallation',
      ImageBuildJobName: 'build-my-image',
      WorkspaceId: '12345',
      RegionId: 'cn-wulanchabu',
      Accessibility: 'PUBLIC',
      Resource: example.Resource,
      UserVpc: example.UserVpc,
      TargetRegistry: { Type: 'AcrEnterprise', InstanceId: 'cri-**abcd' },
      Image: {
        Name: 'test-v1',
        Description: '构建测试镜像',
        Uri: '127.0.0.1:5000/pai-test/pai-test:test-v1',
        RequestedUri: example.Image.Uri,
        Digest: null,
      },
    });
    expect(view.text).not.toContain('dXNlcjp0ZXN0');
    // The document's idempotency: the same token and request, the same build.
    const again = await create(paiDocumentExample(), `?ClientToken=${PAI_EXAMPLE_CLIENT_TOKEN}`);
    expect(again.body.ImageBuildId).toBe(res.body.ImageBuildId);
  });

  it.each([
    ['PackageInstallation', 'PackageInstallation'],
    ['packageinstallation', 'PackageInstallation'],
    ['PACKAGEINSTALLATION', 'PackageInstallation'],
    ['CustomDockerfile', 'CustomDockerfile'],
    ['customDockerFile', 'CustomDockerfile'],
    ['DOCKERFILE', 'CustomDockerfile'],
    [undefined, 'CustomDockerfile'],
  ])('BuildType %s is taken as %s', async (given, stored) => {
    const body = paiDocumentExample();
    const res = await create({ ...body, BuildConfig: { ...body.BuildConfig, BuildType: given }, Image: { ...body.Image, Uri: `pai/types:${stored}-${String(given)}`.slice(0, 60) } });
    expect(res.status, res.text).toBe(200);
    expect((await h.call(`/api/v1/imagebuilds/${res.body.ImageBuildId}`)).body.BuildType).toBe(stored);
  });

  it('takes UserVpc inside Resource and OverwriteImageTag inside TargetRegistry or at the top level', async () => {
    const { UserVpc, ...body } = paiDocumentExample();
    const res = await create({ ...body, Resource: { ...body.Resource, UserVpc }, Image: { ...body.Image, Uri: 'pai/vpc:v1' }, OverwriteImageTag: false, TargetRegistry: { ...body.TargetRegistry, OverwriteImageTag: false } });
    expect(res.status, res.text).toBe(200);
    const view = (await h.call(`/api/v1/imagebuilds/${res.body.ImageBuildId}`)).body;
    expect(view.UserVpc).toEqual(UserVpc);
    const [row] = await h.db.select().from(builds).where(eq(builds.id, res.body.ImageBuildId));
    expect(row!.overwriteTags).toBe(false);
  });

  it.each([
    ['OverwriteImageTag in two places that disagree', (b: any) => ({ ...b, OverwriteImageTag: true, TargetRegistry: { ...b.TargetRegistry, OverwriteImageTag: false } })],
    ['RegistryAuths in BuildConfig and at the top level', (b: any) => ({ ...b, RegistryAuths: b.BuildConfig.RegistryAuths })],
  ])('422 with %s, creating nothing', async (_what, change) => {
    const before = await h.counts();
    const res = await create(change({ ...paiDocumentExample(), Image: { Uri: 'pai/twice:v1' } }));
    expect(res.status).toBe(422);
    expect(await h.counts()).toEqual(before);
  });

  it('the OpenAPI document states the BuildType values (any case), the Resource and UserVpc shapes and the Image.Name rule', async () => {
    const doc = (await h.call('/api/v1/openapi.json')).body;
    const schema = doc.components.schemas.PaiCreateImageBuild;
    const buildType = schema.properties.BuildConfig.properties.BuildType;
    const pattern = new RegExp(buildType.pattern);
    for (const ok of ['PackageInstallation', 'packageINSTALLATION', 'CustomDockerfile', 'Dockerfile']) expect(pattern.test(ok)).toBe(true);
    for (const bad of ['Buildpack', 'PackageInstallation2', '']) expect(pattern.test(bad)).toBe(false);
    expect(buildType.description).toMatch(/PackageInstallation.*CustomDockerfile/s);
    expect(doc.components.schemas.PaiResource.properties.ResourceConfig.properties).toHaveProperty('Memory');
    expect(doc.components.schemas.PaiUserVpc.properties).toHaveProperty('ExtendedCidrs');
    expect(new RegExp(schema.properties.Image.properties.Name.pattern).test('test-v1')).toBe(true);
    expect(new RegExp(schema.properties.Image.properties.Uri.pattern).test(paiDocumentExample().Image.Uri)).toBe(true);
  });
});

describe('POST /imagebuilds (PAI CreateImageBuild)', () => {
  it('answers {ImageBuildId, ImageBuildJobId} and stores a Kiln build for the Uri with the labels', async () => {
    const res = await create(paiBody());
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ RequestId: expect.any(String), ImageBuildId: expect.any(String), ImageBuildJobId: `build-${res.body.ImageBuildId}` });
    const [row] = await h.db.select().from(builds).where(eq(builds.id, res.body.ImageBuildId));
    expect(row).toMatchObject({
      dockerfile: DOCKERFILE,
      platforms: ['linux/amd64'],
      tags: ['v1'],
      labels: { team: 'ml', 'org.opencontainers.image.version': '1.0' },
      trigger: 'api',
      registryAuthsEnc: null,
    });
    // The repository was created on demand with the request's visibility and description.
    const [repo] = await h.db.select().from(repositories).where(eq(repositories.id, row!.repositoryId));
    expect(repo).toMatchObject({ name: 'trainer', visibility: 'private', description: 'The training image' });
    expect(h.starter.starts).toEqual([
      { buildId: res.body.ImageBuildId, workflowId: res.body.ImageBuildJobId, timeoutMinutes: 60, repository: 'pai/trainer', trigger: 'api' },
    ]);
  });

  it('GET /imagebuilds/:id reports the status in the PAI style', async () => {
    const { body } = await create(paiBody({ Image: { Uri: 'pai/status:v2' } }));
    let view = await h.call(`/api/v1/imagebuilds/${body.ImageBuildId}`);
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({
      ImageBuildId: body.ImageBuildId,
      ImageBuildJobId: body.ImageBuildJobId,
      Status: 'Queuing',
      KilnStatus: 'queued',
      ReasonCode: null,
      Image: { Uri: '127.0.0.1:5000/pai/status:v2', Digest: null },
      GmtStartTime: null,
      GmtFinishTime: null,
      TemporalUiUrl: `http://temporal-ui.test:8233/namespaces/default/workflows/${body.ImageBuildJobId}`,
    });
    await updateBuild(h.db, body.ImageBuildId, { status: 'running', startedAt: new Date() });
    expect((await h.call(`/api/v1/imagebuilds/${body.ImageBuildId}`)).body.Status).toBe('Running');
    await finishBuild(h.db, body.ImageBuildId, { status: 'timed_out', errorCode: 'timed_out', errorMessage: 'The build exceeded its time limit' });
    view = await h.call(`/api/v1/imagebuilds/${body.ImageBuildId}`);
    expect(view.body).toMatchObject({ Status: 'Failed', KilnStatus: 'timed_out', ReasonCode: 'timed_out', GmtFinishTime: expect.any(String) });
    expect((await h.call('/api/v1/imagebuilds/not-a-uuid')).status).toBe(404);
  });

  it('stores RegistryAuths encrypted and never returns them', async () => {
    const res = await create(paiBody({ Image: { Uri: 'pai/private:v1' }, RegistryAuths: { '127.0.0.1:5001': { Auth: AUTH } } }));
    expect(res.status).toBe(200);
    const [row] = await h.db.select().from(builds).where(eq(builds.id, res.body.ImageBuildId));
    expect(row!.registryAuthsEnc).toMatch(/^v1:/);
    expect(row!.registryAuthsEnc).not.toContain(AUTH);
    expect(decryptRegistryAuths(SECRET_KEY, row!.registryAuthsEnc!)).toEqual({ '127.0.0.1:5001': { auth: AUTH } });
    expect(row!.requestHash).not.toContain(AUTH);
    for (const path of [`/api/v1/imagebuilds/${res.body.ImageBuildId}`, `/api/v1/builds/${res.body.ImageBuildId}`]) {
      const text = (await h.call(path)).text;
      expect(text).not.toContain(AUTH);
      expect(text).not.toContain('s3cret-pass');
    }
  });

  it.each([
    ['duplicate label keys', (b: any) => ({ ...b, Image: { Uri: 'a/b', Labels: [{ Key: 'k', Value: '1' }, { Key: 'k', Value: '2' }] } })],
    ['a RegistryAuths value that is base64 but not of user:password', (b: any) => ({ ...b, RegistryAuths: { 'r.example.com': { Auth: 'bm9jb2xvbg==' } } })],
  ])('422 (the document cannot state it) with %s, creating nothing', async (_what, change) => {
    const before = await h.counts();
    const res = await create(change(paiBody()));
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('unprocessable');
    expect(await h.counts()).toEqual(before);
    expect(h.starter.starts).toHaveLength(0);
  });

  it('returns the same build for the same ClientToken, body or query; a different request with it is a 409', async () => {
    const body = paiBody({ ClientToken: 'pai-token-1', Image: { Uri: 'pai/idem:v1' }, RegistryAuths: { 'r.example.com': { Auth: AUTH } } });
    const first = await create(body);
    const again = await create(body);
    expect(again.status).toBe(200);
    expect(again.body.ImageBuildId).toBe(first.body.ImageBuildId);
    const { ClientToken: _omit, ...withoutToken } = body as typeof body & { ClientToken: string };
    const viaQuery = await create(withoutToken, '?ClientToken=pai-token-1');
    expect(viaQuery.body.ImageBuildId).toBe(first.body.ImageBuildId);
    // A replay of a still-queued build starts it again, idempotently (same workflow id).
    expect(new Set(h.starter.starts.map((s) => s.workflowId))).toEqual(new Set([first.body.ImageBuildJobId]));

    const before = await h.counts();
    const other = await create({ ...body, RegistryAuths: { 'r.example.com': { Auth: Buffer.from('puller:other').toString('base64') } } });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('conflict');
    expect(await h.counts()).toEqual(before);
    expect((await create(body, '?ClientToken=another')).status).toBe(422);
  });

  it('OverwriteImageTag false refuses a tag that exists (latest too); true overwrites', async () => {
    const first = await create(paiBody({ Image: { Uri: 'pai/keep:latest' } }));
    const [row] = await h.db.select().from(builds).where(eq(builds.id, first.body.ImageBuildId));
    await upsertImageTags(h.db, { repositoryId: row!.repositoryId, tags: ['latest'], digest: `sha256:${'c'.repeat(64)}`, buildId: row!.id, creationMethod: 'manual build' });
    const before = await h.counts();
    const refused = await create(paiBody({ Image: { Uri: 'pai/keep:latest' }, TargetRegistry: { OverwriteImageTag: false } }));
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'conflict', details: { tags: ['latest'] } });
    expect(refused.body.error.message).toMatch(/OverwriteImageTag is false/);
    expect(await h.counts()).toEqual(before);
    expect((await create(paiBody({ Image: { Uri: 'pai/keep:latest' }, TargetRegistry: { OverwriteImageTag: true } }))).status).toBe(200);
    expect((await create(paiBody({ Image: { Uri: 'pai/keep:fresh' }, TargetRegistry: { OverwriteImageTag: false } }))).status).toBe(200);
  });

  it.each([
    ['no Image', (b: any) => ({ ...b, Image: undefined })],
    ['no Dockerfile', (b: any) => ({ ...b, BuildConfig: {} })],
    ['another BuildType', (b: any) => ({ ...b, BuildConfig: { ...b.BuildConfig, BuildType: 'BUILDPACK' } })],
    ['an unknown field', (b: any) => ({ ...b, Platform: 'x' })],
    ['a bad Accessibility', (b: any) => ({ ...b, Accessibility: 'WORLD' })],
    ['an Image.Name the document does not allow', (b: any) => ({ ...b, Image: { ...b.Image, Name: 'Trainer_1' } })],
    ['a Resource field the document does not have', (b: any) => ({ ...b, Resource: { InstanceType: 'ecs.g6.large' } })],
    ['a RegistryAuths value that is not base64 user:pass', (b: any) => ({ ...b, RegistryAuths: { 'r.example.com': { Auth: 'not base64!' } } })],
    ['a RegistryAuths host with a path', (b: any) => ({ ...b, RegistryAuths: { 'r.example.com/v2': { Auth: AUTH } } })],
  ])('400 with %s, creating nothing', async (_what, change) => {
    const before = await h.counts();
    const res = await create(change(paiBody()));
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('validation_failed');
    expect(res.text).not.toContain(AUTH);
    expect(await h.counts()).toEqual(before);
    expect(h.starter.starts).toHaveLength(0);
  });

  it('401 without a token; documented in the OpenAPI document', async () => {
    expect((await h.call('/api/v1/imagebuilds', { json: paiBody(), token: null })).status).toBe(401);
    const doc = (await h.call('/api/v1/openapi.json')).body;
    expect(doc.paths['/api/v1/imagebuilds'].post).toBeDefined();
    expect(doc.paths['/api/v1/imagebuilds/{id}'].get).toBeDefined();
    expect(doc.components.schemas.PaiCreateImageBuild).toBeDefined();
  });
});
