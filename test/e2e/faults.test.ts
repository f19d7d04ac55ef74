// Transient faults on real processes: a dedicated buildkitd and registry (this file stops, kills
// and restarts them; the shared stack's stay untouched), the shared Temporal and Postgres. Each
// fault is retried with backoff and the build still succeeds.
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startStack, type Stack } from '../../infra/stack';
import { TEST_PORT_OFFSET } from '../support/global-setup';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { findProcesses, waitFor } from '../support/processes';
import { fetchManifest } from '../support/registry';

const FAULT_REGISTRY_PORT = 26_500 + TEST_PORT_OFFSET;

let stack: Stack;
let kiln: TestKiln;
let dataDir: string;
const nonce = randomBytes(3).toString('hex');

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'kiln-faults-'));
  stack = await startStack({
    dataDir,
    temporalAddress: inject('stack').temporalAddress,
    ports: { registry: FAULT_REGISTRY_PORT },
    ensureTools: false,
    log: (m) => console.log(`[fault-stack] ${m}`),
  });
  kiln = await startTestKiln({ db: 'postgres', registry: stack.registry, buildkit: stack.buildkit });
});

afterAll(async () => {
  await kiln?.close();
  await stack?.stop();
  if (!dataDir) return;
  // A buildkitd killed mid-RUN cannot unmount that RUN's root file system; nobody else will.
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(`${dataDir}/`))
    .reverse();
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
});

const buildkitd = () => stack.components.buildkitd!;
const registry = () => stack.components.registry!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function submit(repository: string, dockerfile: string, tags: string[]): Promise<string> {
  const res = await kiln.api('/api/v1/builds', { json: { repository, dockerfile, platforms: ['linux/amd64'], tags } });
  expect(res.status).toBe(202);
  return (await res.json()).buildId;
}

const logsOf = async (buildId: string) => (await kiln.api(`/api/v1/builds/${buildId}/logs`)).text();

async function expectPushed(repo: string, tag: string, build: any) {
  expect(build.status, JSON.stringify(build.error)).toBe('succeeded');
  const index = await fetchManifest(stack.registry, repo, tag);
  expect(index?.digest).toBe(build.manifestDigest);
}

describe('transient faults are retried and the build succeeds', () => {
  it('buildkitd down when the build starts, back a few seconds later', async () => {
    const repo = `faults/bk-down-${nonce}`;
    await buildkitd().stop();
    const buildId = await submit(repo, `FROM ${stack.registry}/base/busybox\nRUN echo "built while bk came back ${nonce}"\n`, ['v1']);
    await waitFor('a failed first attempt', async () => /transient failure, will retry/.test(await logsOf(buildId)), 30_000, 250);
    await sleep(2_000);
    await buildkitd().start();
    const build = await waitForBuild(kiln, buildId, 120_000);
    await expectPushed(repo, 'v1', build);
    const logs = await logsOf(buildId);
    expect(logs).toMatch(/connect: (connection refused|no such file or directory)/);
    expect(logs).toMatch(/\(attempt [2-9]\)/);
    expect(logs).toContain(`built while bk came back ${nonce}`);
  });

  it('buildkitd killed mid-RUN (a dropped connection): its RUN dies with it, the supervisor restarts it, the retry succeeds', async () => {
    const repo = `faults/bk-crash-${nonce}`;
    const arg = String(200_000 + randomBytes(2).readUInt16BE(0));
    const buildId = await submit(repo, `FROM ${stack.registry}/base/busybox\nRUN sleep 4 && echo "slept ${arg}"\n`, ['v1']);
    await waitFor('the RUN process', () => findProcesses(`slept ${arg}`).length > 0, 60_000);
    const restarts = buildkitd().restarts;
    buildkitd().kill('SIGKILL');
    await waitFor('the orphaned RUN to be gone', () => findProcesses(`slept ${arg}`).length === 0, 10_000);
    const build = await waitForBuild(kiln, buildId, 120_000);
    await expectPushed(repo, 'v1', build);
    expect(buildkitd().restarts).toBe(restarts + 1);
    const logs = await logsOf(buildId);
    expect(logs).toMatch(/transient failure, will retry: .*(Unavailable|EOF|connection)/);
    expect(logs).toMatch(/\(attempt [2-9]\)/);
  });

  it('registry down when the build pulls its base, back a few seconds later', async () => {
    const repo = `faults/reg-down-${nonce}`;
    await registry().stop();
    const buildId = await submit(repo, `FROM ${stack.registry}/base/busybox\nRUN echo "registry came back ${nonce}"\n`, ['v1']);
    await waitFor('a failed first attempt', async () => /transient failure, will retry/.test(await logsOf(buildId)), 30_000, 250);
    await sleep(2_000);
    await registry().start();
    const build = await waitForBuild(kiln, buildId, 120_000);
    await expectPushed(repo, 'v1', build);
    expect(await logsOf(buildId)).toMatch(/connection refused/);
  });

  it('registry going away while the image is pushed', async () => {
    const repo = `faults/reg-push-${nonce}`;
    const arg = String(300_000 + randomBytes(2).readUInt16BE(0));
    const buildId = await submit(repo, `FROM ${stack.registry}/base/busybox\nRUN sleep 2 && echo "pushing ${arg}" > /out\n`, ['v1', 'latest']);
    await waitFor('the RUN process', () => findProcesses(`pushing ${arg}`).length > 0, 60_000);
    await registry().stop(); // the RUN finishes into a registry that is gone
    await waitFor('a failed attempt', async () => /transient failure, will retry/.test(await logsOf(buildId)), 30_000, 250);
    await registry().start();
    const build = await waitForBuild(kiln, buildId, 120_000);
    await expectPushed(repo, 'v1', build);
    expect((await fetchManifest(stack.registry, repo, 'latest'))?.digest).toBe(build.manifestDigest);
  });
});
