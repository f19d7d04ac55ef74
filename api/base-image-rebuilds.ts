// Rules with rebuildOnBaseChange: when a tag in Kiln's registry moves to a new digest (a Kiln build
// or a user push, both seen through the registry's notifications), every rule whose latest build
// of a ref pulled that tag at the old digest builds the ref again.
import { createHash } from 'node:crypto';
import { findBaseImageDependents } from '../db/queries/base-images';
import { insertBuild } from '../db/queries/builds';
import { getRepository } from '../db/queries/repositories';
import type { Build, BuildRule } from '../db/schema';
import { ruleBuildValues, startRuleBuilds } from './rule-builds';
import type { AppDeps } from './types';

export interface BaseImageRebuild {
  buildId: string;
  ruleId: string;
  ref: string;
  /** False: a rebuild for this base change was made before (a redelivered notification). */
  created: boolean;
}

export async function rebuildForBaseChange(
  deps: Pick<AppDeps, 'db' | 'builds' | 'config'>,
  pushed: { repository: string; tag: string; digest: string },
): Promise<BaseImageRebuild[]> {
  const image = `${deps.config.registry}/${pushed.repository}:${pushed.tag}`;
  const dependents = await findBaseImageDependents(deps.db, image, pushed.digest);
  const out: BaseImageRebuild[] = [];
  const fresh: { build: Build; rule: BuildRule; repository: string }[] = [];
  for (const { build: last, rule } of dependents) {
    const repo = await getRepository(deps.db, rule.repositoryId);
    if (!repo?.sourceUrl) continue;
    const ref = last.sourceRef!;
    const refName = ref.startsWith('refs/tags/') ? { type: 'tag' as const, name: ref.slice(10) } : { type: 'branch' as const, name: ref.replace(/^refs\/heads\//, '') };
    // One rebuild per rule, ref and new base digest: the key makes a redelivered notification a no-op.
    const clientToken = `base-${createHash('sha256').update(`${rule.id}\n${ref}\n${image}\n${pushed.digest}`).digest('hex').slice(0, 40)}`;
    const values = {
      ...ruleBuildValues({ repo, rule, ref: refName, commit: null, trigger: 'base_image', creationMethod: 'auto build' }),
      clientToken,
      clientTokenNamespaceId: repo.namespaceId,
    };
    const { build, created } = await insertBuild(deps.db, values);
    out.push({ buildId: build.id, ruleId: rule.id, ref, created });
    if (created) fresh.push({ build, rule, repository: `${repo.namespace}/${repo.name}` });
  }
  if (fresh.length) await startRuleBuilds(deps, fresh);
  return out;
}
