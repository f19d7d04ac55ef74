import {
  ActivityCancellationType,
  CancellationScope,
  condition,
  defineSignal,
  isCancellation,
  proxyActivities,
  setHandler,
} from '@temporalio/workflow';
import type { CommitStatusActivities } from '../activities/commit-status';
import type { CommitStatusInput } from '../domain/images';
import { BUILD_FINISHED_SIGNAL } from '../domain/temporal';

export const buildFinishedSignal = defineSignal(BUILD_FINISHED_SIGNAL);

// Real activities on the control queue (not local): each attempt is recorded, retried with backoff
// while the host is down, and picked up by another control worker if this one dies.
const retried = { initialInterval: '1s', backoffCoefficient: 2 } as const;

/** The pending status: retried until the build ends, then dropped — the final status supersedes it. */
const pendingStatus = proxyActivities<CommitStatusActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { ...retried, maximumInterval: '1 minute' },
  // A request already on its way completes before the final status is sent, so it can never land after it.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

/** The final status: retried without a limit (at most every 10 minutes) until the host takes it. */
const finalStatus = proxyActivities<CommitStatusActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { ...retried, maximumInterval: '10 minutes' },
});

/**
 * One build's commit status, `commit-status-<buildId>`: pending at once, the outcome when the
 * build signals that it finished. A child of the build workflow that outlives it (ABANDON), so a
 * git host that is down delays only this workflow, never the build, and the final status is kept
 * in Temporal until it is delivered. If no signal comes (the build was terminated) it still posts
 * what the database says once the build's time limit has passed.
 */
export async function CommitStatusWorkflow({ buildId, waitMinutes }: CommitStatusInput): Promise<string> {
  let finished = false;
  setHandler(buildFinishedSignal, () => {
    finished = true;
  });
  const pendingScope = new CancellationScope();
  const pending = pendingScope
    .run(() => pendingStatus.postCommitStatus({ buildId, phase: 'started' }))
    .catch((err) => {
      if (isCancellation(err)) return 'superseded' as const;
      throw err;
    });
  await condition(() => finished, waitMinutes * 60_000);
  pendingScope.cancel();
  const first = await pending;
  // Refused (token, scope) or nothing to report: one log line was enough.
  if (first === 'refused' || first === 'skipped') return first;
  return finalStatus.postCommitStatus({ buildId, phase: 'finished' });
}
