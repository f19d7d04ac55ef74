import { asc, eq } from 'drizzle-orm';
import type { Db } from '../client';
import { namespaces, type Namespace } from '../schema';

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
