import { findSupersededBuilds } from '../db/queries/rules';
import type { Build, BuildRule } from '../db/schema';
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
