import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  defineSignal,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { AccelerateActivities } from '../activities/accelerate';
import type { BuildActivities } from '../activities/build';
import type { ControlActivities } from '../activities/control';
import type { NotifyActivities } from '../activities/notify';
import { isBuildErrorCode, USER_FAULT_CODES, type BuildErrorCode } from '../domain/errors';
import { buildTaskQueue, CANCEL_BUILD_SIGNAL, KilnCommit, KilnRef, KilnStatus } from '../domain/temporal';
import {
  type CancelReason,
  type BuildPlan,
  type ImageBuildInput,
  type ImageBuildResult,
  type PlatformImage,
  type PlatformName,
} from '../domain/build-plan';

export const cancelBuildSignal = defineSignal<[CancelReason]>(CANCEL_BUILD_SIGNAL);

/** Error types raised by activities for user faults; never retried (domain/errors.ts). */
export const USER_FAULT_TYPES = USER_FAULT_CODES;

// Control steps are short database and registry calls: local activities run them in the control
// worker without a task-queue round trip each (they are retried the same way).
const control = proxyLocalActivities<ControlActivities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 20 },
});

// The accelerated index steps are control steps too (registry and database calls).
const accelerate = proxyLocalActivities<AccelerateActivities>({
  startToCloseTimeout: '2 minutes',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '30s',
    maximumAttempts: 20,
    nonRetryableErrorTypes: [...USER_FAULT_TYPES],
  },
});

// Enqueuing notifications: a quick database step; the deliveries run in workflows of their own.
const notify = proxyLocalActivities<NotifyActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 },
});

/** Announces the build's status (its current one unless `event`) to its subscribers; a failure here never fails the build. */
async function announce(buildId: string, event?: 'build.started'): Promise<void> {
  await CancellationScope.nonCancellable(() => notify.notifyBuildStatus(buildId, event)).catch(() => undefined);
}

function buildActivitiesFor(platform: PlatformName, plan: BuildPlan) {
  return proxyActivities<BuildActivities>({
    taskQueue: buildTaskQueue(platform, plan.buildPool),
    startToCloseTimeout: plan.timeoutMinutes * 60_000,
    // Cancellation reaches the activity only through heartbeats (sent every second). A worker
    // that dies is noticed when they stop; the build then retries on another worker.
    heartbeatTimeout: '15 seconds',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: '2s',
      backoffCoefficient: 2,
      maximumInterval: '30s',
      maximumAttempts: 6,
      nonRetryableErrorTypes: [...USER_FAULT_TYPES],
    },
  });
}

/**
 * One build: pin the source, build every platform in parallel on its own task queue, join the
 * per-platform digests into one OCI index pushed under every tag, record the outcome.
 * Workflow id `build-<buildId>`.
 */
export async function ImageBuildWorkflow({ buildId }: ImageBuildInput): Promise<ImageBuildResult | null> {
  let plan: BuildPlan | null;
  try {
    plan = await control.startBuild(buildId);
  } catch (err) {
    // Pinning the source failed (ref not found, bad credentials, invalid tag): record why.
    await recordFailure(buildId, describeFailure(err, false, null));
    throw err;
  }
  if (!plan) return null; // finished before it started (e.g. canceled while queued)
  // Not awaited: the build does not wait for its announcement.
  void announce(buildId, 'build.started');
  upsertSearchAttributes([
    { key: KilnStatus, value: 'running' },
    ...(plan.ref ? [{ key: KilnRef, value: plan.ref }] : []),
  ]);

  const work = new CancellationScope();
  let timedOut = false;
  let cancelReason: CancelReason | null = null;
  setHandler(cancelBuildSignal, (reason) => {
    cancelReason ??= reason;
    work.cancel();
  });
  // The per-build time limit: when it fires, the build scope is cancelled like a user cancel.
  CancellationScope.cancellable(async () => {
    await sleep(plan.timeoutMinutes * 60_000);
    timedOut = true;
    work.cancel();
  }).catch(() => {
    /* the timer itself is cancelled when the workflow is */
  });

  try {
    const result = await work.run(() => runBuild(plan));
    upsertSearchAttributes([{ key: KilnStatus, value: 'succeeded' }]);
    await announce(buildId);
    return result;
  } catch (err) {
    const outcome = describeFailure(err, timedOut, cancelReason);
    await recordFailure(buildId, outcome);
    // A cancel from the API or the Temporal UI ends the workflow as Canceled in the UI.
    if (outcome.status === 'canceled' && !cancelReason) throw err;
    throw ApplicationFailure.create({ type: outcome.code, message: outcome.message, nonRetryable: true });
  }
}

async function runBuild(plan: BuildPlan): Promise<ImageBuildResult> {
  if (plan.source.kind === 'git') {
    upsertSearchAttributes([{ key: KilnCommit, value: plan.source.commit }]);
  }
  // startBuild left the build in phase `building`; each later step records its own phase.
  const images = await buildAllPlatforms(plan);
  // Accelerated: every platform activity also pushed an eStargz variant. Its tags are checked
  // (and claimed, with immutable tags) before the anchors are pushed, so a conflict pushes nothing.
  const acceleratedInput = plan.accelerated
    ? { buildId: plan.buildId, repository: plan.repository, images, tags: plan.tags, immutableTags: plan.immutableTags }
    : null;
  if (acceleratedInput) await accelerate.prepareAcceleratedIndex(acceleratedInput);
  const index = await control.assembleImageIndex({
    buildId: plan.buildId,
    repository: plan.repository,
    images,
    tags: plan.tags,
    immutableTags: plan.immutableTags,
    overwriteTags: plan.overwriteTags,
  });
  if (acceleratedInput) await accelerate.pushAcceleratedIndex(acceleratedInput);
  await control.recordBuildSucceeded({ buildId: plan.buildId, manifestDigest: index.digest, tags: plan.tags });
  return { buildId: plan.buildId, status: 'succeeded', manifestDigest: index.digest, tags: plan.tags };
}

/** Fans out one activity per platform; the first real failure cancels the others. */
async function buildAllPlatforms(plan: BuildPlan): Promise<PlatformImage[]> {
  const scope = new CancellationScope();
  const outcomes = await scope.run(() =>
    Promise.allSettled(
      plan.platforms.map(async (platform) => {
        try {
          return await buildActivitiesFor(platform, plan).buildPlatformImage({
            buildId: plan.buildId,
            repository: plan.repository,
            platform,
            source: plan.source,
            buildArgs: plan.buildArgs,
            labels: plan.labels,
            target: plan.target,
            noCache: plan.noCache,
            accelerated: plan.accelerated,
          });
        } catch (err) {
          if (!isCancellation(err)) scope.cancel();
          throw err;
        }
      }),
    ),
  );
  const rejected = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
  const firstFault = rejected.find((o) => !isCancellation(o.reason)) ?? rejected[0];
  if (firstFault) throw firstFault.reason;
  return outcomes.map((o) => (o as PromiseFulfilledResult<PlatformImage>).value);
}

async function recordFailure(buildId: string, outcome: FailureOutcome): Promise<void> {
  upsertSearchAttributes([{ key: KilnStatus, value: outcome.status }]);
  await CancellationScope.nonCancellable(() =>
    control.recordBuildFailed({ buildId, status: outcome.status, code: outcome.code, message: outcome.message }),
  );
  await announce(buildId);
}

type FailureOutcome = { status: 'failed' | 'canceled' | 'timed_out'; code: BuildErrorCode | string; message: string };

function describeFailure(err: unknown, timedOut: boolean, cancelReason: CancelReason | null): FailureOutcome {
  if (timedOut) return { status: 'timed_out', code: 'timed_out', message: 'The build exceeded its time limit' };
  if (cancelReason && isCancellation(err)) return { status: 'canceled', ...cancelReason };
  if (isCancellation(err)) return { status: 'canceled', code: 'canceled', message: 'The build was canceled' };
  // Walk ActivityFailure → ApplicationFailure to the innermost typed failure.
  let cur: unknown = err;
  while (cur instanceof Error && 'cause' in cur && cur.cause instanceof Error && !(cur instanceof ApplicationFailure)) {
    cur = cur.cause;
  }
  if (cur instanceof ApplicationFailure) {
    return { status: 'failed', code: isBuildErrorCode(cur.type) ? cur.type : 'internal_error', message: cur.message };
  }
  return { status: 'failed', code: 'internal_error', message: err instanceof Error ? err.message : String(err) };
}
