// The I/O of fair build slots: a build asks the scheduler workflow for a slot (signal-with-start),
// notes in its log that it waits, and the scheduler checks whether holders have ended.
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Db } from '../db/client';
import { getBuild, updateBuild } from '../db/queries/builds';
import { isTerminal } from '../domain/builds';
import { appendBuildLogs } from '../db/queries/logs';
import { getNamespaceOfRepository } from '../db/queries/namespaces';
import type { SlotRequest } from '../domain/build-slots';
import { DEFAULT_BUILD_CAPACITY, DEFAULT_NAMESPACE_QUOTAS, effectiveQuotas, type NamespaceQuotas } from '../domain/quotas';
import { userFault } from '../domain/errors';
import {
  BUILD_SCHEDULER_WORKFLOW_ID,
  BUILD_SCHEDULER_WORKFLOW_TYPE,
  CONTROL_TASK_QUEUE,
  REQUEST_BUILD_SLOT_SIGNAL,
} from '../domain/temporal';

export interface SchedulingDeps {
  db: Db;
  client: Client;
  /** KILN_NAMESPACE_MAX_*: what holds where a namespace has no value of its own. */
  quotaDefaults?: NamespaceQuotas;
  /** KILN_MAX_CONCURRENT_BUILDS: builds running at once per build pool. */
  capacity?: number;
  /** The scheduler's task queue (the control worker's). */
  taskQueue?: string;
  /** The scheduler's workflow id: one per deployment (default `kiln-build-scheduler`). */
  schedulerWorkflowId?: string;
  /** How often the scheduler checks its holders while builds wait (default 60 s). */
  holderCheckMs?: number;
}

/** What the build workflow needs to know once it asked: null when the build already ended. */
export interface SlotTicket {
  namespace: string;
  /** The namespace's maxTimeoutMinutes now: a rule written before a lower limit is capped to it. */
  maxTimeoutMinutes: number;
  /** Whom to tell when the slot is free again. */
  schedulerWorkflowId: string;
}

export function createSchedulingActivities(deps: SchedulingDeps) {
  const { db, client } = deps;
  const defaults = deps.quotaDefaults ?? DEFAULT_NAMESPACE_QUOTAS;
  const schedulerWorkflowId = deps.schedulerWorkflowId ?? BUILD_SCHEDULER_WORKFLOW_ID;
  return {
    /** Asks the scheduler for a slot for this build; the answer comes as a signal to the build. */
    async requestBuildSlot(input: { buildId: string; workflowId: string }): Promise<SlotTicket | null> {
      const build = await getBuild(db, input.buildId);
      if (!build) throw userFault('not_found', `build ${input.buildId} not found`);
      if (isTerminal(build.status)) return null;
      const ns = await getNamespaceOfRepository(db, build.repositoryId);
      if (!ns) throw userFault('not_found', 'repository was deleted');
      const quotas = effectiveQuotas(ns, defaults);
      // A retried request keeps its first time, so its place in the queue does not move.
      const requestedAt = build.slotRequestedAt ?? new Date();
      if (!build.slotRequestedAt) await updateBuild(db, build.id, { slotRequestedAt: requestedAt });
      const request: SlotRequest = {
        workflowId: input.workflowId,
        buildId: build.id,
        namespace: ns.name,
        pool: ns.buildPool,
        maxConcurrentBuilds: quotas.maxConcurrentBuilds,
        capacity: deps.capacity ?? DEFAULT_BUILD_CAPACITY,
        requestedAt: requestedAt.getTime(),
      };
      await client.workflow.signalWithStart(BUILD_SCHEDULER_WORKFLOW_TYPE, {
        workflowId: schedulerWorkflowId,
        taskQueue: deps.taskQueue ?? CONTROL_TASK_QUEUE,
        args: [deps.holderCheckMs ? { holderCheckMs: deps.holderCheckMs } : {}],
        signal: REQUEST_BUILD_SLOT_SIGNAL,
        signalArgs: [request],
      });
      return { namespace: ns.name, maxTimeoutMinutes: quotas.maxTimeoutMinutes, schedulerWorkflowId };
    },

    /** The build waits: say so in its log, with its place. */
    async recordSlotWait(input: { buildId: string; namespace: string; position: number }): Promise<void> {
      await appendBuildLogs(db, input.buildId, [
        { platform: null, line: `==> waiting for a build slot: position ${input.position} in namespace ${input.namespace}` },
      ]);
    },

    /** Of these workflows, the ones that are not running any more (or never existed). */
    async findEndedWorkflows(workflowIds: string[]): Promise<string[]> {
      const ended: string[] = [];
      for (const id of workflowIds) {
        try {
          const d = await client.workflow.getHandle(id).describe();
          if (d.status.name !== 'RUNNING') ended.push(id);
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) ended.push(id);
          else throw err;
        }
      }
      return ended;
    },
  };
}

export type SchedulingActivities = ReturnType<typeof createSchedulingActivities>;
