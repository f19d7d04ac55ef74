import { createHash } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { CONTROL_TASK_QUEUE } from '../domain/temporal';
import type { PushWorkflowInput } from '../domain/push';
// The API is the workflow's client: it starts the workflow by its function, type-checked; it never
// runs that code (workers do).
import { PushWorkflow } from '../workflows/push';

export interface PushStarter {
  /**
   * Starts the delivery's PushWorkflow; 'duplicate' when Temporal already has a workflow with that
   * id (this delivery was handled or is being handled), which it refuses to start twice.
   */
  start(workflowId: string, input: PushWorkflowInput): Promise<'started' | 'duplicate'>;
}

const START_DEADLINE_MS = 15_000;

/** Long enough for a slow git host's retries; a push workflow normally ends within seconds. */
const PUSH_EXECUTION_TIMEOUT_MS = 60 * 60_000;

/**
 * `push-<provider>-<delivery id>`: one workflow per delivery. Ids that are long or carry other
 * characters (Gitee's stand-in id holds the ref) are hashed.
 */
export function pushWorkflowId(provider: string, deliveryId: string): string {
  if (/^[A-Za-z0-9._-]{1,128}$/.test(deliveryId)) return `push-${provider}-${deliveryId}`;
  return `push-${provider}-sha256-${createHash('sha256').update(deliveryId).digest('hex')}`;
}

export function createTemporalPushStarter(client: Client, opts: { taskQueue?: string } = {}): PushStarter {
  return {
    async start(workflowId, input) {
      try {
        // A start that never answers would hold one of the outbox's few slots for good: give up
        // after a while; the row is tried again, and Temporal refuses a second workflow by id.
        await client.withDeadline(Date.now() + START_DEADLINE_MS, () => client.workflow.start(PushWorkflow, {
          taskQueue: opts.taskQueue ?? CONTROL_TASK_QUEUE,
          workflowId,
          args: [input],
          workflowExecutionTimeout: PUSH_EXECUTION_TIMEOUT_MS,
          // Never a second run for one delivery id, not even after the first one ended.
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
          requestEagerStart: true,
        }));
        return 'started';
      } catch (err) {
        if (err instanceof WorkflowExecutionAlreadyStartedError) return 'duplicate';
        throw err;
      }
    },
  };
}
