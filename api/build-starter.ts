import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { BUILD_SCHEDULER_WORKFLOW_ID, CONTROL_TASK_QUEUE, KilnRepository, KilnStatus, KilnTrigger, SET_NAMESPACE_LIMIT_SIGNAL } from '../domain/temporal';
import type { CancelReason, Trigger } from '../domain/builds';
// The API is the workflow's client: it starts the workflow by its function and signals it by its
// signal definition, so the name, the arguments and the signal's payload are type-checked. It never
// runs that code (workers do).
import { cancelBuildSignal, ImageBuildWorkflow } from '../workflows/image-build';

export interface StartBuildRequest {
  buildId: string;
  workflowId: string;
  timeoutMinutes: number;
  /** namespace/name */
  repository: string;
  trigger: Trigger;
}

export interface BuildStarter {
  /** Idempotent: starting a workflow id that already ran or runs is a success. */
  start(req: StartBuildRequest): Promise<void>;
  /**
   * Throws BuildNotRunningError when the engine has no such workflow (it never started). With a
   * reason (e.g. superseded by a newer push) the workflow records that reason as the outcome.
   */
  cancel(workflowId: string, reason?: CancelReason): Promise<void>;
  /** Tells the build scheduler a namespace's new maxConcurrentBuilds, so waiting builds see it at once. */
  setNamespaceLimit?(namespace: string, maxConcurrentBuilds: number): Promise<void>;
}

export class BuildNotRunningError extends Error {
  override readonly name = 'BuildNotRunningError';
  constructor(readonly workflowId: string) {
    super(`No workflow ${workflowId} in the build engine`);
  }
}


export function createTemporalBuildStarter(client: Client, opts: { taskQueue?: string; schedulerWorkflowId?: string } = {}): BuildStarter {
  const taskQueue = opts.taskQueue ?? CONTROL_TASK_QUEUE;
  return {
    async start(req) {
      try {
        await client.workflow.start(ImageBuildWorkflow, {
          taskQueue,
          workflowId: req.workflowId,
          // Only the id: the workflow reads everything else, secrets included, from the database.
          args: [{ buildId: req.buildId }],
          // No execution timeout: a build may wait for a slot (queued) as long as it takes. The
          // workflow enforces timeoutMinutes itself from the moment it has a slot.
          // A build id runs at most once, so a retried start never re-runs a finished build.
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
          // Served by a control worker in this process when there is one; harmless otherwise.
          requestEagerStart: true,
          typedSearchAttributes: [
            { key: KilnRepository, value: req.repository },
            { key: KilnTrigger, value: req.trigger },
            { key: KilnStatus, value: 'queued' },
          ],
        });
      } catch (err) {
        if (err instanceof WorkflowExecutionAlreadyStartedError) return;
        throw err;
      }
    },
    async cancel(workflowId, reason) {
      try {
        const handle = client.workflow.getHandle(workflowId);
        if (reason) await handle.signal(cancelBuildSignal, reason);
        else await handle.cancel();
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) throw new BuildNotRunningError(workflowId);
        throw err;
      }
    },
    async setNamespaceLimit(namespace, maxConcurrentBuilds) {
      try {
        await client.workflow.getHandle(opts.schedulerWorkflowId ?? BUILD_SCHEDULER_WORKFLOW_ID).signal(SET_NAMESPACE_LIMIT_SIGNAL, { namespace, maxConcurrentBuilds });
      } catch (err) {
        // No scheduler yet: no build has asked for a slot, and the next one brings the new limit.
        if (!(err instanceof WorkflowNotFoundError)) throw err;
      }
    },
  };
}
