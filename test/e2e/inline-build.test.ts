// Issue #2's user story on the real stack: POST an inline Dockerfile for two platforms, watch it
// succeed, then check the registry's own view of the image and run what it built.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { fetchManifest, listTags, runInRootfs, unpackImage, platformEntries } from '../support/registry';

describe.each(['pglite', 'postgres'] as const)('inline multi-arch build (%s)', (dbKind) => {
  let kiln: TestKiln;
  const repo = `demo/hello-${dbKind}`;

  beforeAll(async () => {
    kiln = await startTestKiln({ db: dbKind });
  });
  afterAll(async () => {
    await kiln?.close();
  });

  it('builds linux/amd64 and linux/arm64 into one OCI index pushed under every tag', async () => {
    const submit = await kiln.api('/api/v1/builds', {
      json: {
        repository: repo,
        dockerfile: `FROM ${kiln.registry}/base/busybox\nARG GREETING\nRUN echo "$GREETING $(uname -m)" > /greeting\nCMD ["cat","/greeting"]`,
        platforms: ['linux/amd64', 'linux/arm64'],
        buildArgs: { GREETING: 'hi' },
        tags: ['v1', 'latest'],
      },
    });
    expect(submit.status).toBe(202);
    const { buildId, workflowId } = await submit.json();
    expect(workflowId).toBe(`build-${buildId}`);

    const build = await waitForBuild(kiln, buildId);
    expect(build.error).toBeUndefined();
    expect(build.status).toBe('succeeded');
    expect(build.platforms.map((p: any) => [p.platform, p.status])).toEqual([
      ['linux/amd64', 'succeeded'],
      ['linux/arm64', 'succeeded'],
    ]);
    for (const p of build.platforms) expect(p.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(build.manifestDigest).toMatch(/^sha256:[0-9a-f]{64}$/);

    // The registry's own view.
    const index = (await fetchManifest(kiln.registry, repo, 'v1'))!;
    expect(index.contentType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.json.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.digest).toBe(build.manifestDigest);
    expect((await fetchManifest(kiln.registry, repo, 'latest'))!.digest).toBe(index.digest);
    expect((await listTags(kiln.registry, repo)).sort()).toEqual(['latest', 'v1']);
    const platforms = platformEntries(index.json).map((m: any) => `${m.platform.os}/${m.platform.architecture}`).sort();
    expect(platforms).toEqual(['linux/amd64', 'linux/arm64']);

    const expected: Record<string, string> = { amd64: 'hi x86_64', arm64: 'hi aarch64' };
    for (const entry of platformEntries(index.json)) {
      const arch = entry.platform.architecture as string;
      expect(entry.digest).toBe(build.platforms.find((p: any) => p.platform === `linux/${arch}`).digest);
      const { rootfs, config } = await unpackImage(kiln.registry, repo, entry.digest);
      expect(config.architecture).toBe(arch);
      expect(config.os).toBe('linux');
      expect(config.config.Cmd).toEqual(['cat', '/greeting']);
      // Run the image's own command in its unpacked root file system (arm64 through QEMU).
      expect((await runInRootfs(rootfs, config.config.Cmd)).trim()).toBe(expected[arch]);
    }

    // Steps and logs are recorded as BuildKit reported them.
    const amd64 = build.platforms.find((p: any) => p.platform === 'linux/amd64');
    expect(amd64.steps.some((s: any) => /RUN echo/.test(s.name))).toBe(true);
    const logs = await (await kiln.api(`/api/v1/builds/${buildId}/logs`)).text();
    expect(logs).toMatch(/\[linux\/amd64\] #\d+ \[2\/2\] RUN echo/);
    expect(logs).toMatch(/\[linux\/arm64\] #\d+ \[2\/2\] RUN echo/);
    expect(logs).toContain('build succeeded');

    // The image versions are recorded with their creation method.
    const repos = await (await kiln.api(`/api/v1/repositories?namespace=demo`)).json();
    const repoId = repos.items.find((r: any) => `${r.namespace}/${r.name}` === repo).id;
    const tags = await (await kiln.api(`/api/v1/repositories/${repoId}/tags`)).json();
    expect(tags.items.map((t: any) => [t.tag, t.digest, t.creationMethod])).toEqual([
      ['latest', index.digest, 'manual build'],
      ['v1', index.digest, 'manual build'],
    ]);
  });

  it('returns the same build for a retried clientToken and starts one workflow', async () => {
    const body = {
      repository: repo,
      dockerfile: `FROM ${kiln.registry}/base/busybox\nRUN echo idempotent > /x`,
      platforms: ['linux/amd64'],
      tags: ['idem'],
      clientToken: `tok-${dbKind}-${Date.now()}`,
    };
    const first = await (await kiln.api('/api/v1/builds', { json: body })).json();
    const second = await kiln.api('/api/v1/builds', { json: body });
    expect(second.status).toBe(202);
    expect(await second.json()).toEqual(first);
    await waitForBuild(kiln, first.buildId);
    const runs = [];
    for await (const wf of kiln.client.workflow.list({ query: `WorkflowId = '${first.workflowId}'` })) runs.push(wf);
    expect(runs).toHaveLength(1);
    const list = await (await kiln.api(`/api/v1/builds?repository=${repo}`)).json();
    expect(list.items.filter((b: any) => b.id === first.buildId)).toHaveLength(1);
  });

  it('fails at once, without retrying, when a RUN step fails, naming the line and exit code', async () => {
    const submit = await kiln.api('/api/v1/builds', {
      json: {
        repository: repo,
        dockerfile: `FROM ${kiln.registry}/base/busybox\nRUN echo before\nRUN echo "about to fail"; exit 3\n`,
        platforms: ['linux/amd64', 'linux/arm64'],
        tags: ['broken'],
      },
    });
    const { buildId } = await submit.json();
    const build = await waitForBuild(kiln, buildId);
    expect(build.status).toBe('failed');
    expect(build.error).toEqual({ code: 'step_failed', message: 'RUN at Dockerfile:3 exited with code 3' });
    const logs = await (await kiln.api(`/api/v1/builds/${buildId}/logs`)).text();
    expect(logs).toContain('about to fail');
    expect(logs).not.toContain('attempt 2');
    expect(await fetchManifest(kiln.registry, repo, 'broken')).toBeNull();
  });
});
