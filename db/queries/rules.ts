import { randomUUID } from 'node:crypto';
import { and, asc, eq, inArray, lt, ne } from 'drizzle-orm';
import type { Db } from '../client';
import type { CreationMethod, Trigger } from '../../domain/builds';
import { fullRefName, type RefName } from '../../domain/rules';
import type { RepositoryWithNamespace } from './repositories';
import { buildRules, builds, type BuildRule, type NewBuild, type NewBuildRule } from '../schema';

export async function insertRule(db: Db, values: NewBuildRule): Promise<BuildRule> {
  const [row] = await db.insert(buildRules).values(values).returning();
  return row!;
}

export async function getRule(db: Db, id: string): Promise<BuildRule | undefined> {
  const [row] = await db.select().from(buildRules).where(eq(buildRules.id, id));
  return row;
}

export async function listRules(db: Db, repositoryId: string, opts: { enabledOnly?: boolean } = {}): Promise<BuildRule[]> {
  return db
    .select()
    .from(buildRules)
    .where(and(eq(buildRules.repositoryId, repositoryId), opts.enabledOnly ? eq(buildRules.enabled, true) : undefined))
    .orderBy(asc(buildRules.createdAt), asc(buildRules.id));
}

export async function listEnabledRulesFor(db: Db, repositoryIds: string[]): Promise<BuildRule[]> {
  if (repositoryIds.length === 0) return [];
  return db
    .select()
    .from(buildRules)
    .where(and(inArray(buildRules.repositoryId, repositoryIds), eq(buildRules.enabled, true)))
    .orderBy(asc(buildRules.createdAt), asc(buildRules.id));
}

export async function updateRule(db: Db, id: string, values: Partial<NewBuildRule>): Promise<BuildRule | undefined> {
  const [row] = await db
    .update(buildRules)
    .set({ ...values, updatedAt: new Date() })
    .where(eq(buildRules.id, id))
    .returning();
  return row;
}

export async function deleteRule(db: Db, id: string): Promise<boolean> {
  const rows = await db.delete(buildRules).where(eq(buildRules.id, id)).returning({ id: buildRules.id });
  return rows.length > 0;
}

/** Builds of the same rule and ref, still queued or running, created before `build`. */
export async function findSupersededBuilds(
  db: Db,
  build: { id: string; ruleId: string; sourceRef: string; createdAt: Date },
): Promise<{ id: string; workflowId: string }[]> {
  return db
    .select({ id: builds.id, workflowId: builds.workflowId })
    .from(builds)
    .where(
      and(
        eq(builds.ruleId, build.ruleId),
        eq(builds.sourceRef, build.sourceRef),
        inArray(builds.status, ['queued', 'running']),
        ne(builds.id, build.id),
        lt(builds.createdAt, build.createdAt),
      ),
    );
}

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
  /** The build id; a fresh UUID unless given (a workflow gives its own, for idempotent retries). */
  id?: string;
}): NewBuild & { id: string } {
  const { repo, rule } = input;
  const id = input.id ?? randomUUID();
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
