import {
  ActivityFailure,
  getExternalWorkflowHandle,
  ParentClosePolicy,
  proxyActivities,
  proxyLocalActivities,
  rootCause,
  startChild,
  uuid4,
  WorkflowIdReusePolicy,
} from '@temporalio/workflow';
import type { PushActivities } from '../activities/push';
import { USER_FAULT_CODES } from '../domain/errors';
import type { PushResultItem, PushRule, PushTarget, PushWorkflowInput, PushWorkflowResult } from '../domain/push';
import { fullRefName, matchesPathFilters, matchRef, type RefName } from '../domain/rules';
import { BUILD_EXECUTION_GRACE_MINUTES, CONTROL_TASK_QUEUE, KilnRepository, KilnStatus, KilnTrigger } from '../domain/temporal';
import { cancelBuildSignal, ImageBuildWorkflow } from './image-build';

// Database steps: short, local to the control worker, retried like the build's control steps.
const db = proxyLocalActivities<PushActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 },
});

// Git questions go to the git host: a few tries (ls-remote answers in seconds, a tree-only fetch
// for the diff within its own 3-minute limit), then the failure is recorded, never built around.
const git = proxyActivities<PushActivities>({
  taskQueue: CONTROL_TASK_QUEUE,
  startToCloseTimeout: '4 minutes',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 4, nonRetryableErrorTypes: [...USER_FAULT_CODES] },
});

interface PlannedBuild {
  target: PushTarget;
  rule: PushRule;
  ref: RefName;
  commit: string;
  buildId: string;
}

/**
 * One verified push delivery (workflow id from the provider and delivery id, so Temporal itself
 * refuses a second copy): for every repository and ref it names, match the enabled rules, check
 * that the pushed commit is still the ref's head (a stale or replayed push builds nothing), apply
 * path filters (listing the changed files with git when the payload did not), start each build
 * as a child ImageBuildWorkflow that outlives this one, cancel older builds of the same rule and
 * ref, and record what happened, skips and failures included, on the delivery.
 */
export async function PushWorkflow(input: PushWorkflowInput): Promise<PushWorkflowResult> {
  const results: PushResultItem[] = [];
  const buildIds: string[] = [];
  try {
    const targets = await db.loadPushTargets(input.repositoryIds);
    const planned: PlannedBuild[] = [];
    for (const update of input.updates) {
      const ref = fullRefName(update.ref);
      for (const target of targets) {
        const at = { repositoryId: target.repositoryId, repository: target.repository, ref };
        if (!target.autoBuild) {
          results.push({ ...at, outcome: 'skipped', code: 'auto_build_off', reason: 'auto build is off for this repository' });
          continue;
        }
        if (update.deleted || !update.after) {
          results.push({ ...at, outcome: 'skipped', code: 'ref_deleted', reason: 'the ref was deleted' });
          continue;
        }
        const rules = target.rules.filter((r) => matchRef(r, update.ref) !== null);
        if (rules.length === 0) continue;
        const each = (item: Omit<PushResultItem, 'repositoryId' | 'repository' | 'ref' | 'ruleId'>) =>
          rules.forEach((rule) => results.push({ ...at, ruleId: rule.id, ...item }));

        let head: { commit: string; objects: string[] } | null;
        try {
          head = await git.resolveRefHead({ repositoryId: target.repositoryId, ref: update.ref });
        } catch (err) {
          each({ outcome: 'failed', code: 'head_check_failed', reason: `Could not read the head of ${ref} from the git host: ${message(err)}` });
          continue;
        }
        const after = update.after.toLowerCase();
        if (!head) {
          each({ outcome: 'skipped', code: 'ref_deleted', commit: after, reason: `${ref} no longer exists on the git host` });
          continue;
        }
        if (!head.objects.includes(after)) {
          each({
            outcome: 'skipped',
            code: 'stale',
            commit: after,
            reason: `stale: the pushed commit ${after} is no longer the head of ${ref} (now ${head.commit}); a newer push or a replayed delivery`,
          });
          continue;
        }

        let files: string[] | null | undefined = update.changedFiles ?? undefined;
        let diffError: string | undefined;
        for (const rule of rules) {
          if (rule.paths.length > 0) {
            if (files === undefined && diffError === undefined) {
              // A new branch has no `before`: every file is new, the filter cannot narrow it.
              if (!update.before) files = null;
              else {
                try {
                  files = await git.listChangedFiles({ repositoryId: target.repositoryId, before: update.before, after });
                } catch (err) {
                  diffError = message(err);
                }
              }
            }
            if (diffError !== undefined) {
              results.push({
                ...at,
                ruleId: rule.id,
                outcome: 'failed',
                code: 'diff_failed',
                commit: head.commit,
                reason: `The files the push changed could not be listed (${diffError}), so paths ${rule.paths.join(', ')} could not be applied: not built`,
              });
              continue;
            }
            if (files && !matchesPathFilters(rule.paths, files)) {
              results.push({ ...at, ruleId: rule.id, outcome: 'skipped', code: 'paths', commit: head.commit, reason: `no changed file matches paths ${rule.paths.join(', ')}` });
              continue;
            }
          }
          planned.push({ target, rule, ref: update.ref, commit: head.commit, buildId: uuid4() });
        }
      }
    }

    const created = planned.length
      ? await db.createPushBuilds(planned.map((p) => ({ buildId: p.buildId, repositoryId: p.target.repositoryId, ruleId: p.rule.id, ref: p.ref, commit: p.commit })))
      : [];
    const started: PlannedBuild[] = [];
    for (const [i, build] of created.entries()) {
      const p = planned[i]!;
      const at = { repositoryId: p.target.repositoryId, repository: p.target.repository, ref: fullRefName(p.ref), ruleId: p.rule.id, commit: p.commit };
      if (build.missing) {
        results.push({ ...at, outcome: 'failed', code: 'start_failed', reason: build.missing });
        continue;
      }
      try {
        await startChild(ImageBuildWorkflow, {
          workflowId: build.workflowId,
          taskQueue: CONTROL_TASK_QUEUE,
          args: [{ buildId: build.buildId }],
          // The build is its own durable run: it neither waits for nor dies with this push.
          parentClosePolicy: ParentClosePolicy.ABANDON,
          workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
          workflowExecutionTimeout: (build.timeoutMinutes + BUILD_EXECUTION_GRACE_MINUTES) * 60_000,
          typedSearchAttributes: [
            { key: KilnRepository, value: build.repository },
            { key: KilnTrigger, value: build.trigger },
            { key: KilnStatus, value: 'queued' },
          ],
        });
      } catch (err) {
        const reason = `The build's workflow could not be started: ${message(err)}`;
        await db.failPushBuild({ buildId: build.buildId, code: 'engine_unavailable', message: reason });
        results.push({ ...at, buildId: build.buildId, outcome: 'failed', code: 'start_failed', reason });
        continue;
      }
      buildIds.push(build.buildId);
      results.push({ ...at, buildId: build.buildId, outcome: 'started', code: 'started' });
      started.push(p);
    }

    for (const p of started) {
      if (!p.rule.cancelSuperseded) continue;
      const ref = fullRefName(p.ref);
      const older = await db.listSupersededBuilds({ buildId: p.buildId, ruleId: p.rule.id, ref });
      for (const old of older) {
        try {
          await getExternalWorkflowHandle(old.workflowId).signal(cancelBuildSignal, {
            code: 'superseded',
            message: `Superseded by build ${p.buildId} of a newer push to ${ref}`,
          });
        } catch (err) {
          results.push({
            repositoryId: p.target.repositoryId,
            repository: p.target.repository,
            ref,
            ruleId: p.rule.id,
            buildId: old.id,
            outcome: 'failed',
            code: 'supersede_failed',
            reason: `The older build ${old.id} of this rule and ref could not be canceled: ${message(err)}`,
          });
        }
      }
    }
  } catch (err) {
    // Something no step could record itself (the database gone for minutes): say so, then fail.
    await db.recordPushOutcome({ provider: input.provider, deliveryId: input.deliveryId, status: 'failed', results, buildIds });
    throw err;
  }
  const status = results.some((r) => r.outcome === 'failed') ? 'failed' : 'done';
  await db.recordPushOutcome({ provider: input.provider, deliveryId: input.deliveryId, status, results, buildIds });
  return { status, results, buildIds };
}

/** The activity's own message, not Temporal's "Activity task failed" wrapper. */
function message(err: unknown): string {
  const cause = err instanceof ActivityFailure ? rootCause(err) : undefined;
  return cause ?? (err instanceof Error ? err.message : String(err));
}
