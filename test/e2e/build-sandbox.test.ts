// Issue #8 point 1 on the real stack: a RUN step lives in its own network namespace on buildkitd's
// bridge behind Kiln's firewall. It reaches no address of the build host (the bridge gateway, a host
// address the test adds on a dummy interface, its own loopback) whatever a service binds to, reaches
// an allow-listed host:port, and reaches a "public" host (a network namespace the test makes)
// through NAT. Insecure entitlements are refused. Traffic goes only to addresses made here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { run } from '../../infra/process-run';
import { TEST_PORTS } from '../support/global-setup';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { createDummyHostAddress, createPublicHost, hostCanConnect, listenEverywhere } from '../support/netns';
import { startBuildHost } from '../support/oci';

type Cleanup = () => Promise<unknown>;

/** Runs `targets` (host:port) from a RUN step; returns host:port → what the step read, or null. */
async function probeFromRunStep(kiln: TestKiln, repo: string, targets: string[]): Promise<Map<string, string | null>> {
  const dockerfile = [
    `FROM ${kiln.registry}/base/busybox`,
    'ARG TARGETS',
    // nc exits non-zero when the connection is refused or times out; the server's greeting is read.
    'RUN for t in $TARGETS; do out=$(timeout 6 nc -w 3 ${t%:*} ${t##*:} </dev/null 2>/dev/null); echo "PROBE $t rc=$? out=$out"; done',
  ].join('\n');
  const submit = await kiln.api('/api/v1/builds', {
    json: { repository: repo, dockerfile, platforms: ['linux/amd64'], buildArgs: { TARGETS: targets.join(' ') }, tags: ['probe'], noCache: true },
  });
  expect(submit.status).toBe(202);
  const { buildId } = await submit.json();
  const build = await waitForBuild(kiln, buildId);
  expect(build.status, JSON.stringify(build.error)).toBe('succeeded');
  const log = await (await kiln.api(`/api/v1/builds/${buildId}/logs`)).text();
  const results = new Map<string, string | null>();
  for (const m of log.matchAll(/PROBE (\S+) rc=(\d+) out=(.*)$/gm)) results.set(m[1]!, m[2] === '0' && m[3] ? m[3].trim() : null);
  expect([...results.keys()].sort()).toEqual([...targets].sort());
  return results;
}

describe('build sandbox: RUN steps behind the build firewall', () => {
  let kiln: TestKiln;
  let gateway: string;
  let dummy: string;
  let pub: { address: string; port: number };
  let openToAll: { port: number };
  let allowed: { port: number };
  const cleanups: Cleanup[] = [];

  beforeAll(async () => {
    const d = await createDummyHostAddress();
    cleanups.push(d.remove);
    dummy = d.address;
    const p = await createPublicHost('hello from the public host');
    cleanups.push(p.remove);
    pub = p;
    const l1 = await listenEverywhere('a host service bound to 0.0.0.0');
    cleanups.push(l1.close);
    openToAll = l1;
    const l2 = await listenEverywhere('an allow-listed mirror');
    cleanups.push(l2.close);
    allowed = l2;
    const host = await startBuildHost({ networkAllow: [{ host: dummy, port: allowed.port }] });
    cleanups.push(() => host.handle.stop());
    gateway = host.network.gateway;
    kiln = await startTestKiln({ host: '0.0.0.0', buildkit: { 'linux/amd64': host.address, 'linux/arm64': host.address } });
    cleanups.push(() => kiln.close());
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  it('the build host is unreachable on every address; allow-listed and public addresses are reachable', async () => {
    const apiPort = Number(new URL(kiln.url).port);
    const services: Record<string, number> = {
      api: apiPort,
      registry: Number(inject('stack').registry.split(':')[1]),
      temporal: TEST_PORTS.temporal,
      'temporal-ui': TEST_PORTS.temporalUi,
      postgres: TEST_PORTS.postgres,
      'service on 0.0.0.0': openToAll.port,
    };
    // The controls: from the host itself the 0.0.0.0 services answer on the test's host address,
    // so only the firewall can be what stops the step.
    expect(await hostCanConnect(dummy, openToAll.port)).toBe('a host service bound to 0.0.0.0');
    expect((await fetch(`http://${dummy}:${apiPort}/healthz`)).status).toBe(200);
    expect(await hostCanConnect(dummy, allowed.port)).toBe('an allow-listed mirror');

    const blocked = Object.values(services).flatMap((port) => [`${gateway}:${port}`, `${dummy}:${port}`, `127.0.0.1:${port}`]);
    const expectedOpen = {
      [`${dummy}:${allowed.port}`]: 'an allow-listed mirror',
      [`${pub.address}:${pub.port}`]: 'hello from the public host',
    };
    // The allow-list names one host:port, not the whole host: the same port on the gateway stays shut.
    blocked.push(`${gateway}:${allowed.port}`);
    const results = await probeFromRunStep(kiln, 'sandbox/probe', [...blocked, ...Object.keys(expectedOpen)]);
    for (const t of blocked) expect({ target: t, read: results.get(t) }).toEqual({ target: t, read: null });
    for (const [t, greeting] of Object.entries(expectedOpen)) expect({ target: t, read: results.get(t) }).toEqual({ target: t, read: greeting });
  });

  it('buildkitd listens on no TCP port (only its unix socket)', async () => {
    const r = await run('ss', ['-Hltnp'], { timeoutMs: 10_000 });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/"buildkitd"/);
  });

  it.each([
    ['RUN --network=host', 'RUN --network=host true'],
    ['RUN --security=insecure', 'RUN --security=insecure true'],
  ])('%s is refused as a user fault', async (_name, step) => {
    const submit = await kiln.api('/api/v1/builds', {
      json: { repository: 'sandbox/entitlement', dockerfile: `FROM ${kiln.registry}/base/busybox\n${step}`, platforms: ['linux/amd64'], tags: ['x'], noCache: true },
    });
    expect(submit.status).toBe(202);
    const build = await waitForBuild(kiln, (await submit.json()).buildId);
    expect(build.status).toBe('failed');
    expect(build.error.code, build.error.message).toBe('entitlement_denied');
    expect(build.error.message).toMatch(/not allowed/i);
  });

  it('cache mounts are per namespace: what one writes, another never sees', async () => {
    // No `noCache` here: BuildKit gives a --no-cache build fresh cache mounts. A nonce in each
    // command keeps the steps from being cache hits of an earlier run instead.
    const nonce = Date.now();
    const run = async (repository: string, step: string) => {
      const submit = await kiln.api('/api/v1/builds', {
        json: { repository, dockerfile: `FROM ${kiln.registry}/base/busybox\n${step} # ${repository} ${nonce}`, platforms: ['linux/amd64'], tags: ['c'] },
      });
      expect(submit.status).toBe(202);
      const build = await waitForBuild(kiln, (await submit.json()).buildId);
      expect(build.status, JSON.stringify(build.error)).toBe('succeeded');
      return (await kiln.api(`/api/v1/builds/${build.id}/logs`)).text();
    };
    const mounts = 'RUN --mount=type=cache,target=/cache --mount=type=cache,id=gocache,target=/go';
    const read = `${mounts} echo "SEEN $(cat /cache/s 2>/dev/null) $(cat /go/s 2>/dev/null) END"`;
    const wrote = await run('tenant-a/app', `${mounts} echo a-secret > /cache/s && echo a-go > /go/s`);
    // The control: the same namespace finds its cache again (so the mount does persist)...
    expect(await run('tenant-a/other', read), wrote).toContain('SEEN a-secret a-go END');
    // ...and another namespace, with the same target and the same explicit id, finds it empty.
    const b = await run('tenant-b/app', read);
    expect(b).toContain('SEEN   END');
    expect(b).not.toContain('a-secret');
  });

  it('a build arg cannot choose the cache-mount namespace', async () => {
    const before = (await (await kiln.api('/api/v1/builds')).json()).items.length;
    const res = await kiln.api('/api/v1/builds', {
      json: {
        repository: 'tenant-b/app',
        dockerfile: `FROM ${kiln.registry}/base/busybox`,
        platforms: ['linux/amd64'],
        tags: ['x'],
        buildArgs: { BUILDKIT_CACHE_MOUNT_NS: 'kiln-ns/tenant-a' },
      },
    });
    expect(res.status).toBe(400);
    expect(JSON.stringify(await res.json())).toContain('BUILDKIT_CACHE_MOUNT_NS');
    expect((await (await kiln.api('/api/v1/builds')).json()).items.length).toBe(before);
  });
});

