// A rule's cron schedules as Temporal Schedules (`rule-<ruleId>-<n>`, one per entry: each has its own
// time zone), kept in sync by the rule routes. Visible and pausable in the Temporal UI too.
import { ScheduleAlreadyRunning, ScheduleNotFoundError, type Client } from '@temporalio/client';
import { ruleScheduleId, scheduledBuildWorkflowId, type RuleSchedule } from '../domain/schedules';
import { CONTROL_TASK_QUEUE } from '../domain/temporal';

export const SCHEDULED_BUILD_WORKFLOW_TYPE = 'ScheduledRuleBuildWorkflow';

export interface RuleScheduler {
  /** Makes the rule's Temporal schedules these (creating, updating, deleting beyond `previousCount`), paused or not. */
  sync(ruleId: string, schedules: RuleSchedule[], paused: boolean, previousCount: number): Promise<void>;
  /** Deletes the rule's schedules (the first `count`); absent ones are fine. */
  remove(ruleId: string, count: number): Promise<void>;
}

/** The schedule engine refused a schedule as given (e.g. a time zone its database lacks). */
export class ScheduleRejectedError extends Error {
  override readonly name = 'ScheduleRejectedError';
}

const isInvalidArgument = (err: unknown) => (err as { code?: number }).code === 3 || /invalid ?argument/i.test(String((err as Error)?.message));

export function createTemporalRuleScheduler(client: Client): RuleScheduler {
  const remove = async (ruleId: string, from: number, to: number) => {
    for (let i = from; i < to; i++) {
      await client.schedule
        .getHandle(ruleScheduleId(ruleId, i))
        .delete()
        .catch((err) => {
          if (!(err instanceof ScheduleNotFoundError)) throw err;
        });
    }
  };
  return {
    async sync(ruleId, schedules, paused, previousCount) {
      for (const [i, s] of schedules.entries()) {
        const scheduleId = ruleScheduleId(ruleId, i);
        const spec = { cronExpressions: [s.cron], timezone: s.timeZone };
        const action = {
          type: 'startWorkflow' as const,
          workflowType: SCHEDULED_BUILD_WORKFLOW_TYPE,
          workflowId: scheduledBuildWorkflowId(ruleId, i),
          taskQueue: CONTROL_TASK_QUEUE,
          // Only the rule id: the activity reads the rule when the schedule fires.
          args: [{ ruleId }],
        };
        const note = `Kiln rule ${ruleId}: ${s.cron} (${s.timeZone})`;
        try {
          try {
            await client.schedule.getHandle(scheduleId).update((prev) => ({ ...prev, spec, action, state: { ...prev.state, paused, note } }));
          } catch (err) {
            if (!(err instanceof ScheduleNotFoundError)) throw err;
            await client.schedule.create({ scheduleId, spec, action, state: { paused, note } });
          }
        } catch (err) {
          if (err instanceof ScheduleAlreadyRunning) continue; // created concurrently: the same rule, the same spec
          if (isInvalidArgument(err)) throw new ScheduleRejectedError(`schedule ${i}: ${(err as Error).message}`);
          throw err;
        }
      }
      await remove(ruleId, schedules.length, previousCount);
    },
    remove: (ruleId, count) => remove(ruleId, 0, count),
  };
}
