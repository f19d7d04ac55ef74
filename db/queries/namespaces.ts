import { asc, count, eq } from 'drizzle-orm';
import type { Db } from '../client';
import { buildRules, namespaces, repositories, type Namespace } from '../schema';

export async function insertNamespace(db: Db, values: typeof namespaces.$inferInsert): Promise<Namespace> {
  const [row] = await db.insert(namespaces).values(values).returning();
  return row!;
}

export async function updateNamespace(db: Db, id: string, values: Partial<typeof namespaces.$inferInsert>): Promise<Namespace> {
  if (Object.keys(values).length === 0) return (await db.select().from(namespaces).where(eq(namespaces.id, id)))[0]!;
  const [row] = await db.update(namespaces).set(values).where(eq(namespaces.id, id)).returning();
  return row!;
}

export async function listNamespaces(db: Db): Promise<Namespace[]> {
  return db.select().from(namespaces).orderBy(asc(namespaces.name));
}

export async function getNamespaceByName(db: Db, name: string): Promise<Namespace | undefined> {
  const [row] = await db.select().from(namespaces).where(eq(namespaces.name, name));
  return row;
}

/** Returns the namespace, creating it with defaults when absent (race-safe). */
export async function ensureNamespace(db: Db, name: string): Promise<Namespace> {
  await db.insert(namespaces).values({ name }).onConflictDoNothing({ target: namespaces.name });
  return (await getNamespaceByName(db, name))!;
}

/** The namespace a repository belongs to. */
export async function getNamespaceOfRepository(db: Db, repositoryId: string): Promise<Namespace | undefined> {
  const [row] = await db
    .select({ ns: namespaces })
    .from(namespaces)
    .innerJoin(repositories, eq(repositories.namespaceId, namespaces.id))
    .where(eq(repositories.id, repositoryId));
  return row?.ns;
}

/**
 * Locks the namespace row until the transaction ends, so two requests that each check a count
 * quota (repositories, rules) and then insert cannot both pass at max - 1.
 */
export async function lockNamespace(db: Db, id: string): Promise<void> {
  await db.select({ id: namespaces.id }).from(namespaces).where(eq(namespaces.id, id)).for('update');
}

export async function countRepositories(db: Db, namespaceId: string): Promise<number> {
  const [row] = await db.select({ n: count() }).from(repositories).where(eq(repositories.namespaceId, namespaceId));
  return row?.n ?? 0;
}

export async function countRules(db: Db, namespaceId: string): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(buildRules)
    .innerJoin(repositories, eq(buildRules.repositoryId, repositories.id))
    .where(eq(repositories.namespaceId, namespaceId));
  return row?.n ?? 0;
}
