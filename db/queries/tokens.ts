import { createHash } from 'node:crypto';
import { and, asc, eq } from 'drizzle-orm';
import type { Db } from '../client';
import { apiTokens, namespaces } from '../schema';

export const hashToken = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

export async function insertApiToken(db: Db, values: { namespaceId: string; name: string; token: string }) {
  const [row] = await db
    .insert(apiTokens)
    .values({ namespaceId: values.namespaceId, name: values.name, tokenHash: hashToken(values.token) })
    .returning({ id: apiTokens.id, name: apiTokens.name, createdAt: apiTokens.createdAt });
  return row!;
}

/** The namespace a token belongs to; lookups go by hash, so the token itself is never stored. */
export async function findTokenNamespace(db: Db, token: string): Promise<string | undefined> {
  const [row] = await db
    .select({ namespace: namespaces.name })
    .from(apiTokens)
    .innerJoin(namespaces, eq(apiTokens.namespaceId, namespaces.id))
    .where(eq(apiTokens.tokenHash, hashToken(token)));
  return row?.namespace;
}

export async function listApiTokens(db: Db, namespaceId: string) {
  return db
    .select({ id: apiTokens.id, name: apiTokens.name, createdAt: apiTokens.createdAt })
    .from(apiTokens)
    .where(eq(apiTokens.namespaceId, namespaceId))
    .orderBy(asc(apiTokens.createdAt));
}

/** Revokes a token of a namespace; false when there was none. */
export async function deleteApiToken(db: Db, namespaceId: string, id: string): Promise<boolean> {
  const rows = await db
    .delete(apiTokens)
    .where(and(eq(apiTokens.namespaceId, namespaceId), eq(apiTokens.id, id)))
    .returning({ id: apiTokens.id });
  return rows.length > 0;
}
