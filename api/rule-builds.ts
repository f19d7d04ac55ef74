import { insertBuild } from '../db/queries/builds';
import { getRepository } from '../db/queries/repositories';
import { findSupersededBuilds, getRule, ruleBuildValues } from '../db/queries/rules';
import type { Build, BuildRule } from '../db/schema';
import { isRegexMatch } from '../domain/rules';
import type { AppDeps } from './types';
import { startBuildOrFail } from './start-build';


// The row of one rule build is made where the push workflow's activities can use it too.
export { ruleBuildValues } from '../db/queries/rules';

/**
 * Starts the workflows of freshly inserted rule builds, then cancels older runs of the same rule
 * and ref where the rule asks for it. A build whose start fails is marked failed, never left queued.
 */
export async function startRuleBuilds(
  deps: Pick<AppDeps, 'db' | 'builds'>,
  items: { build: Build; rule: BuildRule; repository: string }[],
): Promise<{ started: Build[]; failed: { build: Build; message: string }[] }> {
  const started: Build[] = [];
  const failed: { build: Build; message: string }[] = [];
  await Promise.all(
    items.map(async ({ build, rule, repository }) => {
      const failure = await startBuildOrFail(deps, build, repository);
      if (failure) {
        failed.push({ build, message: failure });
        return;
      }
      started.push(build);
      if (!rule.cancelSuperseded || !build.sourceRef) return;
      const older = await findSupersededBuilds(deps.db, {
        id: build.id,
        ruleId: rule.id,
        sourceRef: build.sourceRef,
        createdAt: build.createdAt,
      });
      for (const old of older) {
        // Best effort: a build that just ended needs no cancel.
        await deps.builds
          .cancel(old.workflowId, { code: 'superseded', message: `Superseded by build ${build.id} of a newer push to ${build.sourceRef}` })
          .catch(() => undefined);
      }
    }),
  );
  return { started, failed };
}

/**
 * One build of a rule's own branch or tag for its schedule, made and started exactly as a manual
 * trigger is (commit pinned at start), trigger `schedule`. The client token makes it idempotent.
 */
export async function startScheduledRuleBuild(
  deps: Pick<AppDeps, 'db' | 'builds'>,
  input: { ruleId: string; clientToken: string },
): Promise<{ buildId: string } | { skipped: string }> {
  const rule = await getRule(deps.db, input.ruleId);
  const repo = rule && (await getRepository(deps.db, rule.repositoryId));
  if (!rule || !repo) return { skipped: 'the rule is gone' };
  if (!rule.enabled) return { skipped: 'the rule is disabled' };
  if (isRegexMatch(rule.match) || !repo.sourceUrl) return { skipped: 'the rule names no single ref' };
  const values = ruleBuildValues({ repo, rule, ref: { type: rule.type, name: rule.match }, commit: null, trigger: 'schedule', creationMethod: 'auto build' });
  const { build } = await insertBuild(deps.db, { ...values, clientToken: input.clientToken, clientTokenNamespaceId: repo.namespaceId });
  const { failed } = await startRuleBuilds(deps, [{ build, rule, repository: `${repo.namespace}/${repo.name}` }]);
  // Transient: the activity retries; the client token finds the same build.
  if (failed.length) throw new Error(failed[0]!.message);
  return { buildId: build.id };
}
