// The build scheduler workflow with real ImageBuildWorkflows on a real Temporal dev server, the
// activities replaced by plain objects: order within a namespace, the next slot to another
// namespace, a canceled waiting build, and a holder that dies without releasing its slot.
import { randomUUID } from 'node:crypto';
import { CancelledFailure, Context } from '@temporalio/activity';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlActivities } from '../../activities/control';
import { createSchedulingActivities, type SchedulingActivities } from '../../activities/scheduling';
import type { Db } from '../../db/client';
import type { BuildPlan, PlatformBuildRequest } from '../../activities/build-plan';
import type { PlatformImage } from '../../domain/images';
import { BUILD_HEARTBEAT_THROTTLE, workflowBundle } from '../../infra/workers';

import { startLocalTemporalEnv } from '../support/temporal-env';

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await startLocalTemporalEnv();
}, 120_000);
afterAll(async () => {
  await env?.teardown();
});

async function until(what: string, check: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('BuildSchedulerWorkflow', () => {
  it('FIFO within a namespace, the next free slot to another namespace, a canceled waiting build frees its place, a dead holder its slot', async () => {
    const schedulerId = `scheduler-${randomUUID()}`;
    const namespaceOf = new Map<string, string>();
    const requested: string[] = [];
    const started: string[] = [];
    const waits: { buildId: string; namespace: string; position: number }[] = [];
    const failed: { buildId: string; status: string }[] = [];
    const finish = new Map<string, () => void>();
    let active = 0;
    let maxActive = 0;

    const plan = (buildId: string): BuildPlan => ({
      buildId,
      repositoryId: randomUUID(),
      repository: `${namespaceOf.get(buildId)}/app`,
      platforms: ['linux/amd64'],
      provenance: 'min',
      source: { kind: 'inline', dockerfile: 'FROM scratch' },
      buildArgs: {},
      labels: {},
      target: null,
      tags: ['v1'],
      noCache: false,
      accelerated: false,
      immutableTags: false,
      overwriteTags: true,
      timeoutMinutes: 60,
      trigger: 'api',
      ref: null,
    });
    const control = {
      startBuild: async (buildId: string) => {
        started.push(buildId);
        return plan(buildId);
      },
      assembleImageIndex: async () => ({ digest: 'sha256:index' }),
      recordBuildSucceeded: async () => {},
      recordBuildFailed: async (input: { buildId: string; status: string }) => {
        failed.push({ buildId: input.buildId, status: input.status });
      },
    } as unknown as ControlActivities;
    const real = createSchedulingActivities({ db: null as unknown as Db, client: env.client });
    const scheduling: SchedulingActivities = {
      requestBuildSlot: async ({ buildId, workflowId }) => {
        const namespace = namespaceOf.get(buildId)!;
        await env.client.workflow.signalWithStart('BuildSchedulerWorkflow', {
          workflowId: schedulerId,
          taskQueue: 'kiln-control',
          args: [{ holderCheckMs: 500 }],
          signal: 'requestBuildSlot',
          signalArgs: [{ workflowId, buildId, namespace, pool: null, maxConcurrentBuilds: 2, capacity: 2, requestedAt: Date.now() }],
        });
        requested.push(buildId);
        return { namespace, maxTimeoutMinutes: 1440, schedulerWorkflowId: schedulerId };
      },
      recordSlotWait: async (input) => {
        waits.push(input);
      },
      findEndedWorkflows: real.findEndedWorkflows,
    };
    const buildPlatformImage = async (req: PlatformBuildRequest): Promise<PlatformImage> => {
      active++;
      maxActive = Math.max(maxActive, active);
      const ctx = Context.current();
      const beat = setInterval(() => ctx.heartbeat(), 200);
      try {
        await Promise.race([new Promise<void>((resolve) => finish.set(req.buildId, resolve)), ctx.cancelled]);
        return { platform: req.platform, digest: `sha256:${'a'.repeat(64)}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1, cacheHits: 0 };
      } catch (err) {
        if (err instanceof CancelledFailure) throw err;
        throw err;
      } finally {
        clearInterval(beat);
        active--;
      }
    };

    const workers = [
      await Worker.create({
        connection: env.nativeConnection,
        taskQueue: 'kiln-control',
        workflowBundle: await workflowBundle(),
        activities: { ...control, ...scheduling },
      }),
      await Worker.create({
        connection: env.nativeConnection,
        taskQueue: 'kiln-build-linux-amd64',
        maxHeartbeatThrottleInterval: BUILD_HEARTBEAT_THROTTLE,
        defaultHeartbeatThrottleInterval: BUILD_HEARTBEAT_THROTTLE,
        activities: { buildPlatformImage },
      }),
    ];
    const running = workers.map((w) => w.run());
    /** Lets a build's platform activity finish (once it runs). */
    const done = async (name: string) => {
      await until(`${name}'s build activity runs`, () => finish.has(name));
      finish.get(name)!();
    };
    try {
      const submit = async (namespace: string, name: string) => {
        namespaceOf.set(name, namespace);
        const handle = await env.client.workflow.start('ImageBuildWorkflow', {
          taskQueue: 'kiln-control',
          workflowId: `build-${name}-${randomUUID()}`,
          args: [{ buildId: name }],
        });
        // One at a time, so the order they asked in is known.
        await until(`${name} asked for a slot`, () => requested.includes(name));
        return handle;
      };
      const a1 = await submit('a', 'a1');
      const a2 = await submit('a', 'a2');
      const a3 = await submit('a', 'a3');
      const a4 = await submit('a', 'a4');
      await until('a1 and a2 run', () => started.length === 2);
      await until('a3 and a4 hear their places', () => waits.length === 2);
      expect(started).toEqual(['a1', 'a2']);
      expect(waits).toEqual([
        { buildId: 'a3', namespace: 'a', position: 1 },
        { buildId: 'a4', namespace: 'a', position: 2 },
      ]);
      const b1 = await submit('b', 'b1');
      await until('b1 hears its place', () => waits.length === 3);
      expect(waits[2]).toEqual({ buildId: 'b1', namespace: 'b', position: 1 });

      // a4 is canceled while it waits: recorded as canceled, never started.
      await a4.cancel();
      await expect(a4.result()).rejects.toThrow();
      expect(failed).toContainEqual({ buildId: 'a4', status: 'canceled' });

      // The first slot that frees goes to b, though a3 asked earlier.
      await done('a1');
      await a1.result();
      await until('a third build starts', () => started.length === 3);
      expect(started[2]).toBe('b1');

      // a2 dies without releasing (terminated): the scheduler's holder check frees its slot for a3.
      await a2.terminate('the test kills it');
      await until('a3 starts', () => started.length === 4);
      expect(started[3]).toBe('a3');

      await done('b1');
      await done('a3');
      await Promise.all([b1.result(), a3.result()]);
      expect(started).not.toContain('a4');
      expect(maxActive).toBeLessThanOrEqual(2);
      // The scheduler holds nothing now: a new build starts at once.
      const a5 = await submit('a', 'a5');
      await until('a5 starts', () => started.includes('a5'));
      await done('a5');
      await a5.result();
    } finally {
      for (const w of workers) w.shutdown();
      await Promise.all(running);
      await env.client.workflow.getHandle(schedulerId).terminate('test over').catch(() => undefined);
    }
  });
});
