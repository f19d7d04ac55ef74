// PushWorkflow against a real Temporal dev server, its activities replaced by plain objects: the
// stale-head check, a failed path diff, a duplicate delivery, superseding and child builds that
// outlive the push. The same bundle as production (workflows/index.ts), children included.
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import { Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlActivities } from '../../activities/control';
import type { PushActivities } from '../../activities/push';
import { createTemporalPushStarter } from '../../api/push-starter';
import type { BuildPlan } from '../../activities/build-plan';
import type { PushBuildRequest, PushResultItem, PushTarget, PushWorkflowInput, PushWorkflowResult } from '../../domain/push';
import { workflowBundle } from '../../infra/workers';
import { ImageBuildWorkflow } from '../../workflows/image-build';
import { PushWorkflow } from '../../workflows/push';

import { startLocalTemporalEnv } from '../support/temporal-env';

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await startLocalTemporalEnv();
}, 120_000);
afterAll(async () => {
  await env?.teardown();
});

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const REPO = randomUUID();

function target(rules: Partial<PushTarget['rules'][number]>[], over: Partial<PushTarget> = {}): PushTarget {
  return {
    repositoryId: REPO,
    repository: 'acme/app',
    autoBuild: true,
    rules: rules.map((r) => ({ id: randomUUID(), type: 'branch', match: 'main', paths: [], cancelSuperseded: true, ...r })),
    ...over,
  };
}

function input(over: Partial<PushWorkflowInput['updates'][number]> = {}): PushWorkflowInput {
  return {
    provider: 'github',
    deliveryId: randomUUID(),
    repositoryIds: [REPO],
    updates: [{ ref: { type: 'branch', name: 'main' }, before: B, after: A, deleted: false, changedFiles: ['src/x.ts'], ...over }],
  };
}

interface World {
  targets: PushTarget[];
  head?: { commit: string; objects: string[] } | null;
  listChangedFiles?: () => Promise<string[] | null>;
  superseded?: { id: string; workflowId: string }[];
  /** Build ids whose ImageBuildWorkflow keeps running (its platform queue has no worker). */
  hanging?: Set<string>;
}

interface Calls {
  created: PushBuildRequest[];
  outcome?: { status: string; results: PushResultItem[]; buildIds: string[] };
  failedBuilds: { buildId: string; code: string }[];
  headChecks: number;
}

function stubs(w: World, calls: Calls) {
  const push: PushActivities = {
    loadPushTargets: async () => w.targets,
    resolveRefHead: async () => {
      calls.headChecks += 1;
      return w.head === undefined ? { commit: A, objects: [A] } : w.head;
    },
    listChangedFiles: async () => (w.listChangedFiles ? w.listChangedFiles() : ['src/x.ts']),
    createPushBuilds: async (items) => {
      calls.created.push(...items);
      return items.map((i) => ({ buildId: i.buildId, workflowId: `build-${i.buildId}`, timeoutMinutes: 10, repository: 'acme/app', trigger: 'push' as const }));
    },
    failPushBuild: async () => undefined,
    listSupersededBuilds: async () => w.superseded ?? [],
    recordPushOutcome: async (o) => {
      calls.outcome = o;
    },
  };
  const control = {
    startBuild: async (buildId: string): Promise<BuildPlan | null> =>
      w.hanging?.has(buildId)
        ? {
            buildId,
            repositoryId: REPO,
            repository: 'acme/app',
            platforms: ['linux/amd64'],
            provenance: 'min',
            source: { kind: 'inline', dockerfile: 'FROM scratch' },
            buildArgs: {},
            labels: {},
            target: null,
            tags: ['x'],
            noCache: false,
            accelerated: false,
            immutableTags: false,
            overwriteTags: true,
            timeoutMinutes: 10,
            trigger: 'push',
            ref: 'refs/heads/main',
            // A queue no worker polls: the build waits there until it is canceled.
            buildPool: `nobody-${randomUUID()}`,
          }
        : null,
    recordBuildFailed: async (input: { buildId: string; code: string }) => {
      calls.failedBuilds.push({ buildId: input.buildId, code: input.code });
    },
  } as unknown as ControlActivities;
  return { ...push, ...control };
}

async function withWorker<T>(w: World, fn: (calls: Calls) => Promise<T>): Promise<T> {
  const calls: Calls = { created: [], failedBuilds: [], headChecks: 0 };
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: 'kiln-control',
    workflowBundle: await workflowBundle(),
    activities: stubs(w, calls),
  });
  return worker.runUntil(fn(calls));
}

const run = (i: PushWorkflowInput): Promise<PushWorkflowResult> =>
  env.client.workflow.execute(PushWorkflow, { taskQueue: 'kiln-control', workflowId: `push-test-${i.deliveryId}`, args: [i] });

describe('PushWorkflow', () => {
  it('skips a push whose commit is no longer the head of its ref, with reason "stale", and builds nothing', async () => {
    await withWorker({ targets: [target([{}])], head: { commit: B, objects: [B] } }, async (calls) => {
      const result = await run(input());
      expect(result.status).toBe('done');
      expect(result.buildIds).toEqual([]);
      expect(result.results).toEqual([expect.objectContaining({ outcome: 'skipped', code: 'stale', commit: A, reason: expect.stringMatching(/^stale: .*now b{40}/) })]);
      expect(calls.created).toEqual([]);
      expect(calls.outcome).toMatchObject({ status: 'done', results: result.results });
    });
  }, 60_000);

  it('a failed path diff is recorded as diff_failed and builds nothing for that rule, never "build anyway"', async () => {
    const world: World = {
      targets: [target([{ paths: ['svc/**'] }, {}])],
      listChangedFiles: async () => {
        throw ApplicationFailure.create({ type: 'source_auth_failed', message: 'git fetch: 403 from the git host', nonRetryable: true });
      },
    };
    await withWorker(world, async (calls) => {
      const result = await run(input({ changedFiles: null }));
      const [filtered, plain] = world.targets[0]!.rules;
      expect(result.status).toBe('failed');
      expect(result.results).toContainEqual(
        expect.objectContaining({ ruleId: filtered!.id, outcome: 'failed', code: 'diff_failed', reason: expect.stringContaining('403 from the git host') }),
      );
      // The rule without paths does not depend on the diff: it builds.
      expect(calls.created.map((c) => c.ruleId)).toEqual([plain!.id]);
      expect(calls.outcome?.status).toBe('failed');
    });
  }, 60_000);

  it('applies path filters from the payload; the pinned commit is the head ls-remote reports (a tag object peels)', async () => {
    const tagObject = 'c'.repeat(40);
    const world: World = {
      targets: [target([{ paths: ['docs/**'] }, { type: 'tag', match: 'v1' }])],
      head: { commit: A, objects: [tagObject, A] },
    };
    await withWorker(world, async (calls) => {
      const branch = await run(input());
      expect(branch.results).toEqual([expect.objectContaining({ outcome: 'skipped', code: 'paths' })]);
      const tag = await run(input({ ref: { type: 'tag', name: 'v1' }, after: tagObject, changedFiles: null }));
      expect(tag.results).toEqual([expect.objectContaining({ outcome: 'started', commit: A })]);
      expect(calls.created).toEqual([expect.objectContaining({ commit: A, ref: { type: 'tag', name: 'v1' } })]);
    });
  }, 60_000);

  it('the same delivery twice starts one workflow: Temporal refuses the second start, also after the first ended', async () => {
    // The API's client shares its native connection with a worker (eager start needs that).
    const starter = createTemporalPushStarter(new Client({ connection: env.nativeConnection }));
    await withWorker({ targets: [target([{}])] }, async () => {
      const i = input();
      const id = `push-github-${i.deliveryId}`;
      expect(await starter.start(id, i)).toBe('started');
      expect(await starter.start(id, i)).toBe('duplicate');
      await env.client.workflow.getHandle(id).result();
      expect(await starter.start(id, i)).toBe('duplicate');
      const runs = [];
      for await (const wf of env.client.workflow.list({ query: `WorkflowId = '${id}'` })) runs.push(wf);
      expect(runs).toHaveLength(1);
    });
  }, 60_000);

  it('starts builds as child workflows that outlive the push, and cancels older builds of the rule and ref as superseded', async () => {
    const oldId = randomUUID();
    const hanging = new Set<string>([oldId]);
    const world: World = {
      targets: [target([{}])],
      superseded: [
        { id: oldId, workflowId: `build-${oldId}` },
        { id: 'gone', workflowId: `build-gone-${randomUUID()}` },
      ],
      hanging,
    };
    await withWorker(world, async (calls) => {
      const old = await env.client.workflow.start(ImageBuildWorkflow, { taskQueue: 'kiln-control', workflowId: `build-${oldId}`, args: [{ buildId: oldId }] });
      // The new build hangs too, so it is still running when the push workflow has ended.
      const i = input();
      const originalCreate = calls.created;
      const result = await (async () => {
        const pending = run(i);
        // Its build id is made inside the workflow: mark every created build as hanging as it appears.
        const mark = setInterval(() => originalCreate.forEach((c) => hanging.add(c.buildId)), 5);
        try {
          return await pending;
        } finally {
          clearInterval(mark);
        }
      })();
      expect(result.buildIds).toHaveLength(1);
      const child = env.client.workflow.getHandle(`build-${result.buildIds[0]}`);
      const described = await child.describe();
      expect(described.parentExecution?.workflowId).toBe(`push-test-${i.deliveryId}`);
      expect((await env.client.workflow.getHandle(`push-test-${i.deliveryId}`).describe()).status.name).toBe('COMPLETED');

      await expect(old.result()).rejects.toThrow();
      expect(calls.failedBuilds).toContainEqual({ buildId: oldId, code: 'superseded' });
      // The build that could not be signaled (no such workflow) is a visible failure.
      expect(result.results).toContainEqual(expect.objectContaining({ buildId: 'gone', outcome: 'failed', code: 'supersede_failed' }));
      await child.terminate('test done').catch(() => undefined);
    });
  }, 90_000);
});
