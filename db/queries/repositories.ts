import { and, asc, eq, gt } from 'drizzle-orm';
import type { Db } from '../client';
import { ensureNamespace } from './namespaces';
import { namespaces, repositories, type Namespace, type Repository } from '../schema';

export type RepositoryWithNamespace = Repository & { namespace: string; buildPool: string | null };

const withNamespace = (r: { repositories: Repository; namespaces: Namespace }): RepositoryWithNamespace => ({
  ...r.repositories,
  namespace: r.namespaces.name,
  buildPool: r.namespaces.buildPool,
});

export async function insertRepository(db: Db, values: typeof repositories.$inferInsert): Promise<Repository> {
  const [row] = await db.insert(repositories).values(values).returning();
  return row!;
}

export async function getRepository(db: Db, id: string): Promise<RepositoryWithNamespace | undefined> {
  const [row] = await db
    .select()
    .from(repositories)
    .innerJoin(namespaces, eq(repositories.namespaceId, namespaces.id))
    .where(eq(repositories.id, id));
  return row && withNamespace(row);
}

export async function getRepositoryByPath(
  db: Db,
  namespace: string,
  name: string,
): Promise<RepositoryWithNamespace | undefined> {
  const [row] = await db
    .select()
    .from(repositories)
    .innerJoin(namespaces, eq(repositories.namespaceId, namespaces.id))
    .where(and(eq(namespaces.name, namespace), eq(repositories.name, name)));
  return row && withNamespace(row);
}

export async function listRepositories(
  db: Db,
  opts: { namespace?: string; after?: string; limit: number },
): Promise<RepositoryWithNamespace[]> {
  const conds = [];
  if (opts.namespace) conds.push(eq(namespaces.name, opts.namespace));
  if (opts.after) conds.push(gt(repositories.id, opts.after));
  const rows = await db
    .select()
    .from(repositories)
    .innerJoin(namespaces, eq(repositories.namespaceId, namespaces.id))
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(asc(repositories.id))
    .limit(opts.limit);
  return rows.map(withNamespace);
}

export async function updateRepository(
  db: Db,
  id: string,
  values: Partial<typeof repositories.$inferInsert>,
): Promise<Repository | undefined> {
  const [row] = await db
    .update(repositories)
    .set({ ...values, updatedAt: new Date() })
    .where(eq(repositories.id, id))
    .returning();
  return row;
}

export async function deleteRepository(db: Db, id: string): Promise<boolean> {
  const rows = await db.delete(repositories).where(eq(repositories.id, id)).returning({ id: repositories.id });
  return rows.length > 0;
}

/**
 * Returns the repository `namespace/name`, creating it with the namespace's defaults when absent
 * (race-safe: a concurrent creator wins and both callers see the same row).
 */
export async function ensureRepository(db: Db, namespace: Namespace, name: string): Promise<RepositoryWithNamespace> {
  await db
    .insert(repositories)
    .values({
      namespaceId: namespace.id,
      name,
      visibility: namespace.defaultVisibility,
      immutableTags: namespace.defaultImmutableTags,
      acceleratedImages: namespace.defaultAcceleratedImages,
    })
    .onConflictDoNothing({ target: [repositories.namespaceId, repositories.name] });
  return (await getRepositoryByPath(db, namespace.name, name))!;
}

/** `ns/name` exists and is public (Kiln's own base image), creating namespace and repository as needed. */
export async function ensurePublicRepository(db: Db, path: string): Promise<void> {
  const [ns, name] = path.split('/') as [string, string];
  const namespace = await ensureNamespace(db, ns);
  const repo = await ensureRepository(db, namespace, name);
  if (repo.visibility !== 'public') await db.update(repositories).set({ visibility: 'public', updatedAt: new Date() }).where(eq(repositories.id, repo.id));
}

/** Repositories bound to a code source on one provider (webhooks match them by clone URL). */
export async function listSourceRepositories(db: Db, provider: string): Promise<RepositoryWithNamespace[]> {
  const rows = await db
    .select()
    .from(repositories)
    .innerJoin(namespaces, eq(repositories.namespaceId, namespaces.id))
    .where(eq(repositories.sourceProvider, provider as NonNullable<Repository['sourceProvider']>));
  return rows.map(withNamespace);
}
