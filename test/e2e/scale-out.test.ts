// Issue #10 point 3 on the real stack: two build-worker processes for one platform, each with its
// own buildkitd (started by `npm start` with KILN_COMPONENTS=build-linux-amd64), poll one task
// queue. Ten builds spread over both; one worker is SIGKILLed mid-build (with its buildkitd: a
// lost host) and the build finishes on the other. A worker started again on the lost one's data
// dir removes the work dir the killed process left behind.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { DEFAULT_NAMESPACE_QUOTAS } from '../../domain/quotas';
import { REPO_ROOT } from '../../infra/tools';
import { findProcesses, waitFor } from '../support/processes';
import { createPostgresDatabase, startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';

interface WorkerProcess {
  name: string;
  dataDir: string;
  child: ChildProcess;
  exited: Promise<void>;
}

const CONCURRENCY = 5;

describe('scale out: two build workers on one queue', () => {
  const stack = inject('stack');
  let databaseUrl: string;
  let main: TestKiln;
  const workers: WorkerProcess[] = [];

  /** `npm start` as one amd64 build worker, with its own data dir and so its own buildkitd. */
  async function startWorker(name: string, dataDir = path.join(stack.dataDir, `worker-${name}`)): Promise<WorkerProcess> {
    mkdirSync(dataDir, { recursive: true });
    const logFile = path.join(dataDir, `process-${workers.length}.log`);
    const out = openSync(logFile, 'a');
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'infra/start.ts')], {
      cwd: REPO_ROOT,
      stdio: ['ignore', out, out],
      env: {
        ...process.env,
        KILN_DATA_DIR: dataDir,
        DATABASE_URL: databaseUrl,
        TEMPORAL_ADDRESS: stack.temporalAddress,
        KILN_REGISTRY: stack.registry,
        KILN_COMPONENTS: 'build-linux-amd64',
        KILN_BUILDKIT_ARM64: 'none',
        KILN_BUILD_CONCURRENCY: String(CONCURRENCY),
        KILN_API_TOKEN: main.token,
        KILN_SECRET_KEY: main.secretKey,
        KILN_SKIP_TOOL_SETUP: '1',
        KILN_LOG_FORMAT: 'json',
      },
    });
    const w = { name, dataDir, child, exited: new Promise<void>((resolve) => child.once('exit', () => resolve())) };
    workers.push(w);
    await waitFor(
      `worker ${name} to start (${logFile})`,
      () => {
        if (child.exitCode !== null) throw new Error(`worker ${name} exited: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
        return readFileSync(logFile, 'utf8').includes('Kiln is running');
      },
      120_000,
      250,
    );
    return w;
  }

  async function stopWorker(w: WorkerProcess) {
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
    await w.exited;
  }

  const submit = async (run: string, repository = 'scale/app') => {
    const res = await main.api('/api/v1/builds', {
      json: { repository, dockerfile: `FROM ${main.registry}/base/busybox\nRUN ${run}`, platforms: ['linux/amd64'], tags: ['v1'], noCache: true },
    });
    expect(res.status).toBe(202);
    return (await res.json()).buildId as string;
  };
  const log = async (buildId: string) => (await main.api(`/api/v1/builds/${buildId}/logs`)).text();
  /** `pid@host` of the workers that took the build, in order (a retry adds one). */
  const takenBy = (text: string) => [...text.matchAll(/==> building linux\/amd64 on (\d+)@\S+/g)].map((m) => Number(m[1]));

  beforeAll(async () => {
    databaseUrl = await createPostgresDatabase();
    // API, control worker and arm64 in this process; amd64 only in the two worker processes.
    // Ten builds may run at once (the defaults, 4 per namespace and 8 in all, would release them in
    // waves that one worker could take alone), so the workers' own slots decide the spread.
    main = await startTestKiln({
      databaseUrl,
      components: ['api', 'control', 'build-linux-arm64'],
      quotaDefaults: { ...DEFAULT_NAMESPACE_QUOTAS, maxConcurrentBuilds: 10 },
      buildCapacity: 10,
    });
    await Promise.all([startWorker('a'), startWorker('b')]);
  }, 300_000);

  afterAll(async () => {
    await Promise.all(workers.map(stopWorker));
    await main?.close();
    // The killed buildkitd could not unmount the rootfs of the step it ran: what a lost host leaves.
    for (const dir of new Set(workers.map((w) => w.dataDir))) {
      for (const p of findProcesses(dir)) process.kill(p.pid, 'SIGKILL');
      const mounts = readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .map((line) => line.split(' ')[1] ?? '')
        .filter((mp) => mp.startsWith(`${dir}/`))
        .sort((a, b) => b.length - a.length);
      for (const mp of mounts) execFileSync('umount', ['-l', mp]);
    }
  }, 120_000);

  it('ten builds spread over both workers', async () => {
    const pids = workers.map((w) => w.child.pid!);
    // More builds than one worker has slots, each long enough that all ten are dispatched before
    // the first ends: the other worker must take the rest.
    const ids = await Promise.all(Array.from({ length: 10 }, (_, i) => submit(`sleep 15 && echo spread-${i}`)));
    const builds = await Promise.all(ids.map((id) => waitForBuild(main, id, 240_000)));
    for (const b of builds) expect(b.status, JSON.stringify(b.error)).toBe('succeeded');
    const by = await Promise.all(ids.map(async (id) => takenBy(await log(id))[0]));
    const counts = Object.fromEntries(pids.map((p) => [p, by.filter((x) => x === p).length]));
    expect(by.every((p) => pids.includes(p!)), `builds taken by ${by.join(', ')}; workers ${pids.join(', ')}`).toBe(true);
    expect(Math.min(...Object.values(counts)), JSON.stringify(counts)).toBeGreaterThanOrEqual(10 - CONCURRENCY);
  }, 300_000);

  it('a worker killed mid-build: its build finishes on the other; a restart there removes what the killed one left', async () => {
    const id = await submit('echo step-started && sleep 20 && echo step-finished', 'scale/long');
    const first = await waitFor('the build to start on a worker', async () => takenBy(await log(id))[0], 60_000, 250);
    const victim = workers.find((w) => w.child.pid === first)!;
    const survivor = workers.find((w) => w !== victim)!;
    await waitFor('the RUN step to start', async () => (await log(id)).includes('step-started'), 60_000, 250);
    const leftover = path.join(victim.dataDir, 'work', `${hostname()}-${victim.child.pid}`);
    expect(readdirSync(leftover).length, 'the killed worker has a work dir for the build').toBeGreaterThan(0);

    // The host is lost: the worker and its buildkitd die at once, nothing shuts down cleanly.
    const itsBuildkitd = findProcesses(victim.dataDir).filter((p) => p.argv[0]?.endsWith('buildkitd'));
    victim.child.kill('SIGKILL');
    for (const p of itsBuildkitd) process.kill(p.pid, 'SIGKILL');
    await victim.exited;

    const build = await waitForBuild(main, id, 240_000);
    expect(build.status, JSON.stringify(build.error)).toBe('succeeded');
    const text = await log(id);
    expect(takenBy(text)).toEqual([victim.child.pid, survivor.child.pid]);
    expect(text).toMatch(/on \d+@\S+ \(shared pool\) \(attempt 2\)/);
    expect(text).toContain('step-finished');

    // The lost worker's directory (its checkout and credentials) is still there until a worker starts.
    expect(existsSync(leftover)).toBe(true);
    const restarted = await startWorker('a-again', victim.dataDir);
    expect(existsSync(leftover)).toBe(false);
    expect(readFileSync(path.join(victim.dataDir, `process-${workers.indexOf(restarted)}.log`), 'utf8')).toContain(
      'removed work directories left by stopped workers',
    );
  }, 420_000);
});
