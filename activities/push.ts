// The activities of a PushWorkflow (workflows/push.ts): database steps and the two git questions
// a push raises (is the pushed commit still the ref's head; which files did it change). Git
// credentials are read and decrypted here, never passed through the workflow.
import type { Db } from '../db/client';
import { finishBuild, getBuild, insertBuildOnce } from '../db/queries/builds';
import { finishDelivery } from '../db/queries/deliveries';
import { getRepository } from '../db/queries/repositories';
import { findSupersededBuilds, getRule, listEnabledRulesFor, ruleBuildValues } from '../db/queries/rules';
import type { PushBuild, PushBuildRequest, PushResultItem, PushTarget } from '../domain/push';
import type { RefName } from '../domain/rules';

export interface PushActivityDeps {
  db: Db;
  /** Git access with the repository's own credentials (activities/source.ts). */
  source: {
    refHead(repositoryId: string, ref: RefName): Promise<{ commit: string; objects: string[] } | null>;
    changedFiles(repositoryId: string, before: string, after: string): Promise<string[] | null>;
  };
}

export function createPushActivities({ db, source }: PushActivityDeps) {
  return {
    /** The verified repositories with their enabled rules (repositories deleted meanwhile are left out). */
    async loadPushTargets(repositoryIds: string[]): Promise<PushTarget[]> {
      const rules = await listEnabledRulesFor(db, repositoryIds);
      const targets: PushTarget[] = [];
      for (const id of repositoryIds) {
        const repo = await getRepository(db, id);
        if (!repo) continue;
        targets.push({
          repositoryId: id,
          repository: `${repo.namespace}/${repo.name}`,
          autoBuild: repo.autoBuild,
          rules: rules
            .filter((r) => r.repositoryId === id)
            .map((r) => ({ id: r.id, type: r.type, match: r.match, paths: r.paths, cancelSuperseded: r.cancelSuperseded })),
        });
      }
      return targets;
    },

    /** `git ls-remote` of the ref, with the repository's credentials. */
    async resolveRefHead(input: { repositoryId: string; ref: RefName }): Promise<{ commit: string; objects: string[] } | null> {
      return source.refHead(input.repositoryId, input.ref);
    },

    /** The files between two commits (null: unknowable, e.g. `before` is not on the server). */
    async listChangedFiles(input: { repositoryId: string; before: string; after: string }): Promise<string[] | null> {
      return source.changedFiles(input.repositoryId, input.before, input.after);
    },

    /** Inserts the planned builds (idempotent per build id), tags rendered later by the build. */
    async createPushBuilds(items: PushBuildRequest[]): Promise<PushBuild[]> {
      const out: PushBuild[] = [];
      for (const item of items) {
        const [repo, rule] = await Promise.all([getRepository(db, item.repositoryId), getRule(db, item.ruleId)]);
        const trigger = item.ref.type === 'tag' ? 'tag' : 'push';
        if (!repo || !rule) {
          out.push({ buildId: item.buildId, workflowId: '', timeoutMinutes: 0, repository: '', trigger, missing: 'the rule or repository was deleted' });
          continue;
        }
        const values = ruleBuildValues({ id: item.buildId, repo, rule, ref: item.ref, commit: item.commit, trigger, creationMethod: 'auto build' });
        const build = await insertBuildOnce(db, values);
        out.push({ buildId: build.id, workflowId: build.workflowId, timeoutMinutes: build.timeoutMinutes, repository: `${repo.namespace}/${repo.name}`, trigger });
      }
      return out;
    },

    /** A build whose workflow could not be started ends failed, never stays queued. */
    async failPushBuild(input: { buildId: string; code: string; message: string }): Promise<void> {
      await finishBuild(db, input.buildId, { status: 'failed', errorCode: input.code, errorMessage: input.message });
    },

    /** Queued or running builds of the same rule and ref created before this one. */
    async listSupersededBuilds(input: { buildId: string; ruleId: string; ref: string }): Promise<{ id: string; workflowId: string }[]> {
      const build = await getBuild(db, input.buildId);
      if (!build) return [];
      return findSupersededBuilds(db, { id: build.id, ruleId: input.ruleId, sourceRef: input.ref, createdAt: build.createdAt });
    },

    async recordPushOutcome(input: {
      provider: string;
      deliveryId: string;
      status: 'done' | 'failed';
      results: PushResultItem[];
      buildIds: string[];
    }): Promise<void> {
      await finishDelivery(db, input.provider, input.deliveryId, { status: input.status, results: input.results, buildIds: input.buildIds });
    },
  };
}

export type PushActivities = ReturnType<typeof createPushActivities>;
