import { and, eq, lt, notExists, notInArray, sql } from 'drizzle-orm';
import type { Db } from '../client';
import { buildContexts, builds, namespaces, repositories, type BuildContextRow } from '../schema';
import { TERMINAL_STATUSES } from '../../domain/builds';

/** Records an uploaded context; an upload of the same bytes again only refreshes it. */
export async function recordBuildContext(db: Db, values: { repository: string; digest: string; size: number }): Promise<BuildContextRow> {
  const [row] = await db
    .insert(buildContexts)
    .values(values)
    .onConflictDoUpdate({ target: [buildContexts.repository, buildContexts.digest], set: { lastUsedAt: new Date() } })
    .returning();
  return row!;
}

/** The context a build names, marked used now (its retention starts again); undefined when unknown. */
export async function useBuildContext(db: Db, repository: string, digest: string): Promise<BuildContextRow | undefined> {
  const [row] = await db
    .update(buildContexts)
    .set({ lastUsedAt: new Date() })
    .where(and(eq(buildContexts.repository, repository), eq(buildContexts.digest, digest)))
    .returning();
  return row;
}

/**
 * Contexts unused since `before` that no unfinished build still needs: what the retention sweep
 * may delete from the registry.
 */
export async function expiredBuildContexts(db: Db, before: Date, limit = 100): Promise<BuildContextRow[]> {
  const unfinished = db
    .select({ one: sql`1` })
    .from(builds)
    .innerJoin(repositories, eq(builds.repositoryId, repositories.id))
    .innerJoin(namespaces, eq(repositories.namespaceId, namespaces.id))
    .where(
      and(
        eq(builds.contextDigest, buildContexts.digest),
        eq(sql`${namespaces.name} || '/' || ${repositories.name}`, buildContexts.repository),
        notInArray(builds.status, [...TERMINAL_STATUSES]),
      ),
    );
  return db
    .select()
    .from(buildContexts)
    .where(and(lt(buildContexts.lastUsedAt, before), notExists(unfinished)))
    .limit(limit);
}

/** Forgets a context, unless it was used again after `usedBefore` (a build raced the sweep). */
export async function deleteBuildContext(db: Db, row: Pick<BuildContextRow, 'repository' | 'digest'>, usedBefore: Date): Promise<boolean> {
  const deleted = await db
    .delete(buildContexts)
    .where(and(eq(buildContexts.repository, row.repository), eq(buildContexts.digest, row.digest), lt(buildContexts.lastUsedAt, usedBefore)))
    .returning({ digest: buildContexts.digest });
  return deleted.length > 0;
}
