// Workflows of outbound notifications and scheduled rule builds. No I/O: the activities are
// activities/notify.ts, run by the control worker.
import { proxyActivities, proxyLocalActivities, workflowInfo } from '@temporalio/workflow';
import type { NotifyActivities } from '../activities/notify';
import { MAX_DELIVERY_ATTEMPTS } from '../domain/notifications';

// At least once, with backoff: 1 s, 2 s, 4 s ... up to 10 minutes between attempts. Each attempt
// is recorded by the activity itself (status code, duration, error), the last one as failed.
const delivery = proxyActivities<NotifyActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10 minutes', maximumAttempts: MAX_DELIVERY_ATTEMPTS },
});

const control = proxyLocalActivities<NotifyActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 20 },
});

/** Delivers one stored notification; workflow id `notify-<deliveryId>`. */
export async function NotificationDeliveryWorkflow({ deliveryId }: { deliveryId: string }): Promise<string> {
  try {
    return await delivery.deliverNotification(deliveryId);
  } catch {
    // Every attempt failed; the delivery is recorded as failed and can be redelivered.
    return 'failed';
  }
}

/** The action of a rule's Temporal Schedule: one build of the rule's ref, trigger `schedule`. */
export async function ScheduledRuleBuildWorkflow({ ruleId }: { ruleId: string }): Promise<string | null> {
  const started = await control.startScheduledBuild({ ruleId, workflowId: workflowInfo().workflowId });
  return started?.buildId ?? null;
}
