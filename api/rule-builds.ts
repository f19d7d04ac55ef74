import { randomUUID } from 'node:crypto';
import type { RepositoryWithNamespace } from '../db/queries/repositories';
import { findSupersededBuilds } from '../db/queries/rules';
import type { Build, BuildRule, NewBuild } from '../db/schema';
import { fullRefName, type RefName } from '../domain/rules';
import type { CreationMethod, Trigger } from '../domain/builds';
import type { AppDeps } from './types';
import { startBuildOrFail } from './start-build';


/**
 * The row for one build of a rule. Tags stay empty here: they are rendered by the workflow once
 * the commit is pinned, since templates may embed the commit id and the build time.
 */
export function ruleBuildValues(input: {
  repo: RepositoryWithNamespace;
  rule: BuildRule;
  ref: RefName;
  commit: string | null;
  trigger: Trigger;
  creationMethod: Exclude<CreationMethod, 'user push'>;
}): NewBuild & { id: string } {
  const { repo, rule } = input;
  const id = randomUUID();
  return {
    id,
    repositoryId: repo.id,
    ruleId: rule.id,
    status: 'queued',
    trigger: input.trigger,
    creationMethod: input.creationMethod,
    sourceUrl: repo.sourceUrl,
    sourceRef: fullRefName(input.ref),
    sourceCommit: input.commit,
    contextDir: rule.contextDir,
    dockerfilePath: rule.dockerfile,
    platforms: rule.platforms,
    buildArgs: rule.buildArgs,
    target: rule.target,
    tags: [],
    noCache: rule.noCache || repo.noCache,
    accelerated: rule.accelerated || repo.acceleratedImages,
    provenance: rule.provenance,
    timeoutMinutes: rule.timeoutMinutes,
    workflowId: `build-${id}`,
  };
}

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
