import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineSignal,
  getExternalWorkflowHandle,
  isCancellation,
  ParentClosePolicy,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  startChild,
  upsertSearchAttributes,
  type ChildWorkflowHandle,
  workflowInfo,
} from '@temporalio/workflow';
import type { CommitStatusActivities } from '../activities/commit-status';
import type { AccelerateActivities } from '../activities/accelerate';
import type { BuildActivities } from '../activities/build';
import type { DatabaseControlActivities, NetworkControlActivities } from '../activities/control';
import type { NotifyActivities } from '../activities/notify';
import { isBuildErrorCode, USER_FAULT_CODES, type BuildErrorCode } from '../domain/errors';
import { buildTaskQueue, CANCEL_BUILD_SIGNAL, commitStatusWorkflowId, KilnCommit, KilnRef, KilnStatus } from '../domain/temporal';
import { buildFinishedSignal, CommitStatusWorkflow } from './commit-status';
import type { BuildPlan } from '../activities/build-plan';
import type { CancelReason } from '../domain/builds';
import type { ImageBuildInput, ImageBuildResult, PlatformImage } from '../domain/images';
import type { Platform } from '../domain/platforms';
import type { SchedulingActivities, SlotTicket } from '../activities/scheduling';
import { buildSlotGrantedSignal, buildSlotQueuedSignal, releaseBuildSlotSignal } from './build-scheduler';

export const cancelBuildSignal = defineSignal<[CancelReason]>(CANCEL_BUILD_SIGNAL);

/** Error types raised by activities for user faults; never retried (domain/errors.ts). */
export const USER_FAULT_TYPES = USER_FAULT_CODES;

// Control steps that only touch Kiln's database run as local activities in the control worker,
// without a task-queue round trip each.
const control = proxyLocalActivities<DatabaseControlActivities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 20, nonRetryableErrorTypes: [...USER_FAULT_TYPES] },
});

// Asking the scheduler for a build slot signals another workflow (Temporal I/O): a normal
// activity on the control queue, like every control step that leaves the database. The order of
// waiting builds is their submission order, whichever worker runs the request.
const scheduling = proxyActivities<SchedulingActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 20, nonRetryableErrorTypes: [...USER_FAULT_TYPES] },
});

// Control steps that reach a git host (pinning the source) or the registry (tag checks, index
// pushes) are normal activities on the control queue: a slow host times out one activity and
// is retried, instead of holding the workflow task. The pushes heartbeat between tags, so a
// cancel stops them, and the workflow waits for that before it records the outcome.
const network = proxyActivities<NetworkControlActivities & AccelerateActivities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '30 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
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

const statusCheck = proxyLocalActivities<CommitStatusActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 },
});

/** Headroom for the build to record its outcome after its time limit. */
const COMMIT_STATUS_GRACE_MINUTES = 10;

/**
 * Starts the build's commit-status workflow when the build reports one (a rule or push build on
 * a git host). Never fails the build: without it the commit just gets no status.
 */
async function startCommitStatus(buildId: string): Promise<ChildWorkflowHandle<typeof CommitStatusWorkflow> | null> {
  // Builds that were running before commit statuses existed replay without them.
  if (!patched('commit-status')) return null;
  try {
    const reporting = await statusCheck.commitStatusReporting(buildId);
    if (!reporting) return null;
    // Outside any cancellable scope: cancelling the build must not cancel its final status.
    return await CancellationScope.nonCancellable(() =>
      startChild(CommitStatusWorkflow, {
        workflowId: commitStatusWorkflowId(buildId),
        args: [{ buildId, waitMinutes: reporting.timeoutMinutes + COMMIT_STATUS_GRACE_MINUTES }],
        parentClosePolicy: ParentClosePolicy.ABANDON,
      }),
    );
  } catch {
    return null;
  }
}

/** Tells the commit-status workflow the outcome is recorded (it reads the outcome itself). */
async function finishCommitStatus(handle: ChildWorkflowHandle<typeof CommitStatusWorkflow> | null): Promise<void> {
  if (!handle) return;
  await CancellationScope.nonCancellable(() => handle.signal(buildFinishedSignal)).catch(() => undefined);
}

function buildActivitiesFor(platform: Platform, plan: BuildPlan) {
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
  const work = new CancellationScope();
  const waiting = new CancellationScope();
  let cancelReason: CancelReason | null = null;
  setHandler(cancelBuildSignal, (reason) => {
    cancelReason ??= reason;
    waiting.cancel();
    work.cancel();
  });

  // First a build slot: the namespace's concurrency limit and the deployment's capacity, handed
  // out fairly by the scheduler workflow. Until then the build stays `queued`.
  let ticket: SlotTicket | null;
  // Set as soon as the request went out, so a cancel while waiting withdraws it.
  let requestedFrom: string | null = null;
  try {
    ticket = await waiting.run(() =>
      acquireBuildSlot(buildId, (schedulerWorkflowId) => {
        requestedFrom = schedulerWorkflowId;
      }),
    );
  } catch (err) {
    await releaseBuildSlot(requestedFrom);
    const outcome = describeFailure(err, false, cancelReason);
    await recordFailure(buildId, outcome);
    if (outcome.status === 'canceled' && !cancelReason) throw err;
    throw ApplicationFailure.create({ type: outcome.code, message: outcome.message, nonRetryable: true });
  }
  if (!ticket) return null; // finished before it asked (e.g. canceled while queued)
  try {
    return await runWithSlot(buildId, ticket, work, () => cancelReason);
  } finally {
    // However the build ends (success, failure, cancel, time limit), its slot goes to the next.
    await releaseBuildSlot(ticket.schedulerWorkflowId);
  }
}

/** Asks for a slot and waits for it; notes the wait (and the position) in the build's log. */
async function acquireBuildSlot(buildId: string, requested: (schedulerWorkflowId: string) => void): Promise<SlotTicket | null> {
  let granted = false;
  let queued: { namespace: string; position: number } | null = null;
  setHandler(buildSlotGrantedSignal, () => {
    granted = true;
  });
  setHandler(buildSlotQueuedSignal, (q) => {
    queued ??= q;
  });
  const ticket = await scheduling.requestBuildSlot({ buildId, workflowId: workflowInfo().workflowId });
  if (!ticket) return null;
  requested(ticket.schedulerWorkflowId);
  await condition(() => granted || queued !== null);
  if (!granted && queued) await scheduling.recordSlotWait({ buildId, ...(queued as { namespace: string; position: number }) });
  await condition(() => granted);
  return ticket;
}

async function releaseBuildSlot(schedulerWorkflowId: string | null): Promise<void> {
  if (!schedulerWorkflowId) return; // never asked
  await CancellationScope.nonCancellable(async () => {
    try {
      await getExternalWorkflowHandle(schedulerWorkflowId).signal(releaseBuildSlotSignal, { workflowId: workflowInfo().workflowId });
    } catch {
      // No scheduler (it never started, so nothing is held); its holder check covers the rest.
    }
  });
}

async function runWithSlot(
  buildId: string,
  ticket: SlotTicket,
  work: CancellationScope,
  cancelReasonNow: () => CancelReason | null,
): Promise<ImageBuildResult | null> {
  let plan: BuildPlan | null;
  try {
    plan = await control.startBuild(buildId);
    if (plan?.source.kind === 'git') plan = await network.pinSource(plan);
  } catch (err) {
    // Pinning the source failed (ref not found, bad credentials, invalid tag): record why.
    await recordFailure(buildId, describeFailure(err, false, null));
    await finishCommitStatus(await startCommitStatus(buildId));
    throw err;
  }
  if (!plan) return null; // finished before it started (e.g. canceled while queued)
  // A rule written before the namespace's limit was lowered runs within the limit of today.
  if (plan.timeoutMinutes > ticket.maxTimeoutMinutes) plan = { ...plan, timeoutMinutes: ticket.maxTimeoutMinutes };
  const runPlan = plan;
  // After startBuild: the commit is pinned by now, also for rule builds that named only a ref.
  const commitStatus = await startCommitStatus(buildId);
  // Not awaited: the build does not wait for its announcement.
  void announce(buildId, 'build.started');
  upsertSearchAttributes([
    { key: KilnStatus, value: 'running' },
    ...(plan.ref ? [{ key: KilnRef, value: plan.ref }] : []),
  ]);

  let timedOut = false;
  // The per-build time limit: when it fires, the build scope is cancelled like a user cancel.
  CancellationScope.cancellable(async () => {
    await sleep(runPlan.timeoutMinutes * 60_000);
    timedOut = true;
    work.cancel();
  }).catch(() => {
    /* the timer itself is cancelled when the workflow is */
  });

  try {
    const result = await work.run(() => runBuild(runPlan));
    upsertSearchAttributes([{ key: KilnStatus, value: 'succeeded' }]);
    await finishCommitStatus(commitStatus);
    await announce(buildId);
    return result;
  } catch (err) {
    const cancelReason = cancelReasonNow();
    const outcome = describeFailure(err, timedOut, cancelReason);
    await recordFailure(buildId, outcome);
    await finishCommitStatus(commitStatus);
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
  if (acceleratedInput) await network.prepareAcceleratedIndex(acceleratedInput);
  const index = await network.assembleImageIndex({
    buildId: plan.buildId,
    repository: plan.repository,
    images,
    tags: plan.tags,
    immutableTags: plan.immutableTags,
    overwriteTags: plan.overwriteTags,
  });
  if (acceleratedInput) await network.pushAcceleratedIndex(acceleratedInput);
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
            provenance: plan.provenance,
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
