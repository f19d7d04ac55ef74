// Issue #8 point 4 on the real stack: an admin binds a namespace to a dedicated build pool; its
// builds go to `kiln-build-<os>-<arch>@<pool>`, served only by workers started with that pool, and
// other namespaces' builds never land there.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';

describe('dedicated build pools', () => {
  let main: TestKiln;
  let gold: TestKiln | undefined;

  beforeAll(async () => {
    main = await startTestKiln(); // API, control worker and the shared pool's build workers
    gold = await startTestKiln({ components: ['build-linux-amd64', 'build-linux-arm64'], buildPool: 'gold', shareDatabaseOf: main });
    for (const name of ['vip', 'std']) expect((await main.api('/api/v1/namespaces', { json: { name } })).status).toBe(201);
    const bind = await main.api('/api/v1/namespaces/vip', { method: 'PATCH', json: { buildPool: 'gold' } });
    expect(bind.status).toBe(200);
    expect((await bind.json()).buildPool).toBe('gold');
  });
  afterAll(async () => {
    await gold?.close();
    await main?.close();
  });

  async function buildLog(repository: string): Promise<string> {
    const res = await main.api('/api/v1/builds', {
      json: { repository, dockerfile: `FROM ${main.registry}/base/busybox\nRUN echo built-for ${repository}`, platforms: ['linux/amd64', 'linux/arm64'], tags: ['v1'] },
    });
    expect(res.status).toBe(202);
    const build = await waitForBuild(main, (await res.json()).buildId);
    expect(build.status, JSON.stringify(build.error)).toBe('succeeded');
    return (await main.api(`/api/v1/builds/${build.id}/logs`)).text();
  }

  it("a pool-bound namespace builds only on its pool's workers; others only on the shared pool", async () => {
    const vip = await buildLog('vip/app');
    expect(vip.match(/==> building linux\/(amd64|arm64) on \S+ \(pool gold\)/g)).toHaveLength(2);
    expect(vip).not.toContain('(shared pool)');
    const std = await buildLog('std/app');
    expect(std.match(/==> building linux\/(amd64|arm64) on \S+ \(shared pool\)/g)).toHaveLength(2);
    expect(std).not.toContain('pool gold');
  });

  it('with its pool down, a bound namespace waits: the shared workers never take its build', async () => {
    await gold!.close();
    gold = undefined;
    const res = await main.api('/api/v1/builds', {
      json: { repository: 'vip/app', dockerfile: `FROM ${main.registry}/base/busybox\nRUN echo waiting`, platforms: ['linux/amd64'], tags: ['v2'] },
    });
    const { buildId } = await res.json();
    // The shared workers are idle and poll all the while; the build's platform must stay queued.
    await new Promise((r) => setTimeout(r, 5000));
    const view = await (await main.api(`/api/v1/builds/${buildId}`)).json();
    expect(view.status).toBe('running');
    expect(view.platforms[0].status).toBe('queued');
    expect((await main.api(`/api/v1/builds/${buildId}/cancel`, { method: 'POST' })).status).toBe(202);
    expect((await waitForBuild(main, buildId)).status).toBe('canceled');
  });

  it('pool names are validated and binding is admin-only', async () => {
    const bad = await main.api('/api/v1/namespaces/std', { method: 'PATCH', json: { buildPool: 'Not A Pool!' } });
    expect(bad.status).toBe(400);
    const token = (await (await main.api('/api/v1/namespaces/std/tokens', { json: { name: 't' } })).json()).token;
    const self = await fetch(`${main.url}/api/v1/namespaces/std`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ buildPool: 'gold' }),
    });
    expect(self.status).toBe(403);
    const ns = (await (await main.api('/api/v1/namespaces')).json()).items.find((n: any) => n.name === 'std');
    expect(ns.buildPool).toBeNull();
  });
});
