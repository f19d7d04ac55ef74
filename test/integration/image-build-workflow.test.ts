// ImageBuildWorkflow against a real Temporal dev server with activities replaced by plain
// objects: fan-out per platform queue, one platform failing, cancellation, timeout, retries.
import { randomUUID } from 'node:crypto';
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { WorkflowFailedError } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildActivities } from '../../activities/build';
import type { ControlActivities } from '../../activities/control';
import type { SchedulingActivities } from '../../activities/scheduling';
import { BUILD_HEARTBEAT_THROTTLE, workflowBundle } from '../../infra/workers';
import type { BuildPlan, PlatformBuildRequest } from '../../activities/build-plan';
import type { PlatformImage } from '../../domain/images';
import type { Platform } from '../../domain/platforms';
import { ImageBuildWorkflow } from '../../workflows/image-build';

import { startLocalTemporalEnv } from '../support/temporal-env';

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await startLocalTemporalEnv();
}, 120_000);

afterAll(async () => {
  await env?.teardown();
});

function plan(overrides: Partial<BuildPlan> = {}): BuildPlan {
  return {
    buildId: randomUUID(),
    repositoryId: randomUUID(),
    repository: 'demo/hello',
    platforms: ['linux/amd64', 'linux/arm64'],
    source: { kind: 'inline', dockerfile: 'FROM scratch' },
    buildArgs: {},
    labels: {},
    target: null,
    tags: ['v1', 'latest'],
    noCache: false,
    accelerated: false,
    immutableTags: false,
    provenance: 'min',
    overwriteTags: true,
    timeoutMinutes: 60,
    trigger: 'api',
    ref: null,
    ...overrides,
  };
}

interface Recorder {
  /** Every control activity called, and whether it ran as a local activity. */
  calls: { name: string; args: unknown[]; local: boolean }[];
}

function controlStub(p: BuildPlan, rec: Recorder): ControlActivities {
  const record = (name: string) => async (...args: unknown[]) => {
    rec.calls.push({ name, args, local: Context.current().info.isLocal });
  };
  return {
    startBuild: async (id: string) => {
      rec.calls.push({ name: 'startBuild', args: [id], local: Context.current().info.isLocal });
      return p;
    },
    pinSource: async (unpinned: BuildPlan) => {
      rec.calls.push({ name: 'pinSource', args: [unpinned], local: Context.current().info.isLocal });
      if (unpinned.source.kind !== 'git') throw new Error('pinSource called for a non-git source');
      if (unpinned.ref === 'refs/heads/missing') {
        throw ApplicationFailure.create({ type: 'ref_not_found', message: 'refs/heads/missing does not exist', nonRetryable: true });
      }
      return { ...unpinned, source: { ...unpinned.source, commit: 'c'.repeat(40) } };
    },
    assembleImageIndex: async (input: { images: PlatformImage[] }) => {
      rec.calls.push({ name: 'assembleImageIndex', args: [input], local: Context.current().info.isLocal });
      return { digest: 'sha256:index' };
    },
    recordBuildSucceeded: record('recordBuildSucceeded'),
    recordBuildFailed: record('recordBuildFailed'),
    // activities/notify.ts: the announcements of the build's status (enqueued, never awaited).
    notifyBuildStatus: record('notifyBuildStatus'),
    // activities/commit-status.ts: these builds report no commit status.
    commitStatusReporting: async () => null,
    // activities/accelerate.ts, registered on the same control worker.
    prepareAcceleratedIndex: async (input: unknown) => {
      rec.calls.push({ name: 'prepareAcceleratedIndex', args: [input], local: Context.current().info.isLocal });
      return { digest: 'sha256:accelerated', tags: [] };
    },
    pushAcceleratedIndex: async (input: unknown) => {
      rec.calls.push({ name: 'pushAcceleratedIndex', args: [input], local: Context.current().info.isLocal });
      return { digest: 'sha256:accelerated', tags: [] };
    },
  } as unknown as ControlActivities;
}

/**
 * The build asks the real scheduler workflow for its slot (plenty of room here): what the
 * scheduling activities do, without the database that tells them the namespace.
 */
function slotsFromTheRealScheduler(): Partial<SchedulingActivities> {
  return {
    requestBuildSlot: async ({ buildId, workflowId }) => {
      await env.client.workflow.signalWithStart('BuildSchedulerWorkflow', {
        workflowId: 'kiln-build-scheduler',
        taskQueue: 'kiln-control',
        args: [{}],
        signal: 'requestBuildSlot',
        signalArgs: [{ workflowId, buildId, namespace: 'demo', pool: null, maxConcurrentBuilds: 100, capacity: 100, requestedAt: Date.now() }],
      });
      return { namespace: 'demo', maxTimeoutMinutes: 1440, schedulerWorkflowId: 'kiln-build-scheduler' };
    },
    recordSlotWait: async () => {},
    findEndedWorkflows: async () => [],
  };
}

type BuildFn = (req: PlatformBuildRequest) => Promise<PlatformImage>;

async function withWorkers<T>(p: BuildPlan, builds: Record<Platform, BuildFn>, rec: Recorder, fn: () => Promise<T>): Promise<T> {
  const bundle = await workflowBundle();
  const control = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: 'kiln-control',
    workflowBundle: bundle,
    activities: { ...controlStub(p, rec), ...slotsFromTheRealScheduler() },
  });
  const buildWorkers = await Promise.all(
    (Object.keys(builds) as Platform[]).map((platform) =>
      Worker.create({
        connection: env.nativeConnection,
        taskQueue: `kiln-build-${platform.replace('/', '-')}`,
        maxHeartbeatThrottleInterval: BUILD_HEARTBEAT_THROTTLE,
        defaultHeartbeatThrottleInterval: BUILD_HEARTBEAT_THROTTLE,
        activities: { buildPlatformImage: builds[platform] } satisfies Partial<BuildActivities>,
      }),
    ),
  );
  const all = [control, ...buildWorkers];
  const running = all.map((w) => w.run());
  try {
    return await fn();
  } finally {
    for (const w of all) w.shutdown();
    await Promise.all(running);
  }
}

const image = (platform: Platform): PlatformImage => ({
  platform,
  digest: `sha256:${platform === 'linux/amd64' ? 'a'.repeat(64) : 'b'.repeat(64)}`,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  size: 100,
  cacheHits: 0,
});

/** Waits for cancellation while heartbeating, as a real build does. */
async function waitForCancel(marker: { canceled: boolean }): Promise<never> {
  const ctx = Context.current();
  const beat = setInterval(() => ctx.heartbeat(), 200);
  try {
    await ctx.cancelled;
    throw new Error('unreachable');
  } catch (err) {
    if (err instanceof CancelledFailure) marker.canceled = true;
    throw err;
  } finally {
    clearInterval(beat);
  }
}

describe('ImageBuildWorkflow', () => {
  it('fans out one activity per platform on its own queue, in parallel, then assembles and records', async () => {
    const p = plan();
    const rec: Recorder = { calls: [] };
    const entered = new Set<string>();
    let release!: () => void;
    const bothEntered = new Promise<void>((r) => (release = r));
    const build = (platform: Platform): BuildFn => async (req) => {
      expect(req.platform).toBe(platform);
      entered.add(platform);
      if (entered.size === 2) release();
      // Only finishes once the other platform has started: proves the two run at the same time.
      await Promise.race([bothEntered, new Promise((_, rej) => setTimeout(() => rej(new Error('not parallel')), 20_000))]);
      return image(platform);
    };
    const result = await withWorkers(p, { 'linux/amd64': build('linux/amd64'), 'linux/arm64': build('linux/arm64') }, rec, () =>
      env.client.workflow.execute(ImageBuildWorkflow, {
        taskQueue: 'kiln-control',
        workflowId: `build-${p.buildId}`,
        args: [{ buildId: p.buildId }],
      }),
    );
    expect(result).toMatchObject({ status: 'succeeded', manifestDigest: 'sha256:index', tags: ['v1', 'latest'] });
    const assemble = rec.calls.find((c) => c.name === 'assembleImageIndex')!.args[0] as { images: PlatformImage[] };
    expect(assemble.images.map((i) => i.platform).sort()).toEqual(['linux/amd64', 'linux/arm64']);
    expect(rec.calls.map((c) => c.name)).toContain('recordBuildSucceeded');
    expect(rec.calls.map((c) => c.name)).not.toContain('recordBuildFailed');
  }, 60_000);

  it('accelerated: asks each platform for an eStargz variant, checks its tags before the anchors are pushed, pushes it after', async () => {
    const p = plan({ accelerated: true });
    const rec: Recorder = { calls: [] };
    const variant = { digest: `sha256:${'c'.repeat(64)}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 200, steps: 1, cacheHits: 1 };
    const build: BuildFn = async (req) => {
      expect(req.accelerated).toBe(true);
      return { ...image(req.platform), accelerated: variant };
    };
    await withWorkers(p, { 'linux/amd64': build, 'linux/arm64': build }, rec, () =>
      env.client.workflow.execute(ImageBuildWorkflow, { taskQueue: 'kiln-control', workflowId: `build-${p.buildId}`, args: [{ buildId: p.buildId }] }),
    );
    expect(rec.calls.map((c) => c.name)).toEqual([
      'startBuild',
      'notifyBuildStatus',
      'prepareAcceleratedIndex',
      'assembleImageIndex',
      'pushAcceleratedIndex',
      'recordBuildSucceeded',
      'notifyBuildStatus',
    ]);
    expect(rec.calls.filter((c) => !c.local).map((c) => c.name)).toEqual(['prepareAcceleratedIndex', 'assembleImageIndex', 'pushAcceleratedIndex']);
    const push = rec.calls.find((c) => c.name === 'pushAcceleratedIndex')!.args[0] as { images: PlatformImage[]; tags: string[] };
    expect(push.tags).toEqual(['v1', 'latest']);
    expect(push.images.map((i) => i.accelerated?.digest)).toEqual([variant.digest, variant.digest]);
  }, 60_000);

  it('fails the build when one platform fails and cancels the other platform', async () => {
    const p = plan();
    const rec: Recorder = { calls: [] };
    const amd64 = { canceled: false };
    let arm64Attempts = 0;
    const err = await withWorkers(
      p,
      {
        'linux/amd64': () => waitForCancel(amd64),
        'linux/arm64': async () => {
          arm64Attempts++;
          await new Promise((r) => setTimeout(r, 300));
          throw ApplicationFailure.create({ type: 'step_failed', message: 'RUN at Dockerfile:3 exited with code 3', nonRetryable: true });
        },
      },
      rec,
      () =>
        env.client.workflow
          .execute(ImageBuildWorkflow, { taskQueue: 'kiln-control', workflowId: `build-${p.buildId}`, args: [{ buildId: p.buildId }] })
          .catch((e) => e),
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause).toBeInstanceOf(ApplicationFailure);
    expect(((err as WorkflowFailedError).cause as ApplicationFailure).type).toBe('step_failed');
    expect(amd64.canceled).toBe(true);
    expect(arm64Attempts).toBe(1); // a user fault is never retried
    const failed = rec.calls.find((c) => c.name === 'recordBuildFailed')!.args[0];
    expect(failed).toMatchObject({ status: 'failed', code: 'step_failed', message: 'RUN at Dockerfile:3 exited with code 3' });
    expect(rec.calls.map((c) => c.name)).not.toContain('assembleImageIndex');
  }, 60_000);

  it('cancels every running build activity when the workflow is cancelled', async () => {
    const p = plan();
    const rec: Recorder = { calls: [] };
    const marks = { amd64: { canceled: false }, arm64: { canceled: false } };
    let started = 0;
    const build = (m: { canceled: boolean }): BuildFn => async () => {
      started++;
      return waitForCancel(m);
    };
    const err = await withWorkers(p, { 'linux/amd64': build(marks.amd64), 'linux/arm64': build(marks.arm64) }, rec, async () => {
      const handle = await env.client.workflow.start(ImageBuildWorkflow, {
        taskQueue: 'kiln-control',
        workflowId: `build-${p.buildId}`,
        args: [{ buildId: p.buildId }],
      });
      while (started < 2) await new Promise((r) => setTimeout(r, 100));
      await handle.cancel();
      return handle.result().catch((e) => e);
    });
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
    expect(marks.amd64.canceled && marks.arm64.canceled).toBe(true);
    expect(rec.calls.find((c) => c.name === 'recordBuildFailed')!.args[0]).toMatchObject({ status: 'canceled' });
    expect(rec.calls.map((c) => c.name)).not.toContain('assembleImageIndex');
  }, 60_000);

  it('ends as timed_out when the per-build limit passes', async () => {
    const p = plan({ timeoutMinutes: 0.03, platforms: ['linux/amd64'] }); // ~1.8 s
    const rec: Recorder = { calls: [] };
    const mark = { canceled: false };
    const err = await withWorkers(p, { 'linux/amd64': () => waitForCancel(mark), 'linux/arm64': async () => image('linux/arm64') }, rec, () =>
      env.client.workflow
        .execute(ImageBuildWorkflow, { taskQueue: 'kiln-control', workflowId: `build-${p.buildId}`, args: [{ buildId: p.buildId }] })
        .catch((e) => e),
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(((err as WorkflowFailedError).cause as ApplicationFailure).type).toBe('timed_out');
    expect(mark.canceled).toBe(true);
    expect(rec.calls.find((c) => c.name === 'recordBuildFailed')!.args[0]).toMatchObject({ status: 'timed_out' });
  }, 60_000);

  it('pins a git source in its own activity before any platform builds, and records a pinning fault', async () => {
    const gitSource = { kind: 'git' as const, url: 'http://127.0.0.1:1/demo.git', commit: '', repositoryId: randomUUID(), contextDir: '.', dockerfilePath: 'Dockerfile' };
    const p = plan({ platforms: ['linux/amd64'], source: gitSource, ref: 'refs/heads/main' });
    const rec: Recorder = { calls: [] };
    const commits: string[] = [];
    const build: BuildFn = async (req) => {
      commits.push(req.source.kind === 'git' ? req.source.commit : '');
      return image(req.platform);
    };
    await withWorkers(p, { 'linux/amd64': build, 'linux/arm64': build }, rec, () =>
      env.client.workflow.execute(ImageBuildWorkflow, { taskQueue: 'kiln-control', workflowId: `build-${p.buildId}`, args: [{ buildId: p.buildId }] }),
    );
    // The announcements to subscribers (notifyBuildStatus) are checked elsewhere; the steps here.
    const steps = (r: Recorder, onlyLocal = false) => r.calls.filter((c) => c.name !== 'notifyBuildStatus' && (!onlyLocal || c.local)).map((c) => c.name);
    expect(steps(rec)).toEqual(['startBuild', 'pinSource', 'assembleImageIndex', 'recordBuildSucceeded']);
    expect(commits).toEqual(['c'.repeat(40)]);
    // Only the database steps are local activities; the git host is reached from a normal one.
    expect(steps(rec, true)).toEqual(['startBuild', 'recordBuildSucceeded']);

    const missing = plan({ platforms: ['linux/amd64'], source: gitSource, ref: 'refs/heads/missing' });
    const failed: Recorder = { calls: [] };
    const err = await withWorkers(missing, { 'linux/amd64': build, 'linux/arm64': build }, failed, () =>
      env.client.workflow
        .execute(ImageBuildWorkflow, { taskQueue: 'kiln-control', workflowId: `build-${missing.buildId}`, args: [{ buildId: missing.buildId }] })
        .catch((e) => e),
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(steps(failed)).toEqual(['startBuild', 'pinSource', 'recordBuildFailed']);
    expect(failed.calls.find((c) => c.name === 'recordBuildFailed')!.args[0]).toMatchObject({ status: 'failed', code: 'ref_not_found' });
  }, 60_000);

  it('retries a transient fault and still succeeds', async () => {
    const p = plan({ platforms: ['linux/arm64'] });
    const rec: Recorder = { calls: [] };
    let attempts = 0;
    const result = await withWorkers(
      p,
      {
        'linux/amd64': async () => image('linux/amd64'),
        'linux/arm64': async () => {
          attempts++;
          if (attempts === 1) throw new Error('dial unix buildkitd.sock: connect: connection refused');
          return image('linux/arm64');
        },
      },
      rec,
      () =>
        env.client.workflow.execute(ImageBuildWorkflow, {
          taskQueue: 'kiln-control',
          workflowId: `build-${p.buildId}`,
          args: [{ buildId: p.buildId }],
        }),
    );
    expect(attempts).toBe(2);
    expect(result).toMatchObject({ status: 'succeeded' });
  }, 60_000);
});
