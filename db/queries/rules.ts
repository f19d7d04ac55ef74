import { and, asc, eq, inArray, lt, ne } from 'drizzle-orm';
import type { Db } from '../client';
import { buildRules, builds, type BuildRule, type NewBuildRule } from '../schema';

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
