// SPEC §5: killing Kiln (API and workers, one process here) in the middle of a build loses no
// build and no record. Kiln runs as a real `npm start` process on Postgres, against the shared
// Temporal, buildkitd and registry; it is SIGKILLed mid-RUN, with its buildctl, and a fresh
// process takes over: Temporal retries the build activity once its heartbeat times out.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createPostgresDatabase } from '../support/kiln';
import { freePort } from '../support/oci';
import { findProcesses, waitFor } from '../support/processes';
import { fetchManifest } from '../support/registry';

const ROOT = path.resolve(import.meta.dirname, '../..');
let env: NodeJS.ProcessEnv;
let base: string;
let running: ChildProcess | null = null;
const token = randomBytes(24).toString('hex');

function startKilnProcess(): ChildProcess {
  // Its own process group, so a kill takes buildctl down with it, as losing the host would.
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'infra/start.ts')], {
    cwd: ROOT,
    env,
    detached: true,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  running = child;
  return child;
}

async function api(pathname: string, json?: unknown): Promise<any> {
  const res = await fetch(`${base}${pathname}`, {
    method: json ? 'POST' : 'GET',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: json ? JSON.stringify(json) : undefined,
  });
  return res.json();
}

const ready = () =>
  waitFor('kiln to be ready', async () => (await fetch(`${base}/readyz`).catch(() => null))?.status === 200, 90_000, 250);

beforeAll(async () => {
  const stack = inject('stack');
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  env = {
    ...process.env,
    PORT: String(port),
    KILN_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'kiln-crash-')),
    DATABASE_URL: await createPostgresDatabase(),
    TEMPORAL_ADDRESS: stack.temporalAddress,
    KILN_REGISTRY: stack.registry,
    KILN_BUILDKIT_AMD64: stack.buildkit['linux/amd64'],
    KILN_BUILDKIT_ARM64: stack.buildkit['linux/arm64'],
    KILN_API_TOKEN: token,
    KILN_SECRET_KEY: randomBytes(32).toString('hex'),
    KILN_SKIP_TOOL_SETUP: '1',
  };
});

afterAll(() => {
  if (running?.pid && running.exitCode === null) process.kill(-running.pid, 'SIGKILL');
});

describe('a Kiln process killed mid-build', () => {
  it('loses nothing: a new process finishes the build', async () => {
    const first = startKilnProcess();
    await ready();
    const marker = `crash-${randomBytes(4).toString('hex')}`;
    const { buildId } = await api('/api/v1/builds', {
      repository: 'crash/app',
      dockerfile: `FROM ${inject('stack').registry}/base/busybox\nRUN echo ${marker} && sleep 6 && echo ${marker} > /done\n`,
      platforms: ['linux/amd64'],
      tags: [marker],
    });
    // Wait until the RUN is really executing, then take the whole process group down.
    // The RUN shell's command line carries the marker; buildctl's carries the build's work dir.
    await waitFor('the RUN step to start', () => findProcesses(`echo ${marker} && sleep 6`).length > 0, 60_000);
    process.kill(-first.pid!, 'SIGKILL');
    await waitFor('the first process to exit', () => first.exitCode !== null || first.signalCode !== null, 10_000);
    const buildctlOf = () => findProcesses(buildId.slice(0, 8)).filter((p) => p.argv.some((a) => a.endsWith('buildctl')));
    expect(buildctlOf()).toEqual([]);

    startKilnProcess();
    await ready();
    const build = await waitFor(
      'the build to finish under the new process',
      async () => {
        const b = await api(`/api/v1/builds/${buildId}`);
        return ['succeeded', 'failed', 'canceled', 'timed_out'].includes(b.status) ? b : null;
      },
      150_000,
      500,
    );
    expect(build.error).toBeUndefined();
    expect(build.status).toBe('succeeded');
    const logs = await (await fetch(`${base}/api/v1/builds/${buildId}/logs`, { headers: { authorization: `Bearer ${token}` } })).text();
    expect(logs).toMatch(/attempt 2/);
    expect((await fetchManifest(inject('stack').registry, 'crash/app', marker))!.digest).toBe(build.manifestDigest);
  });
});
