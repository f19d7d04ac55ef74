import { createHash } from 'node:crypto';
import { and, asc, eq, gt, isNull, lt, or, sql } from 'drizzle-orm';
import type { Db } from '../client';
import { apiTokens, namespaces } from '../schema';

export const hashToken = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

/** What may be shown of a token: everything but its hash. */
const tokenColumns = {
  id: apiTokens.id,
  name: apiTokens.name,
  createdAt: apiTokens.createdAt,
  expiresAt: apiTokens.expiresAt,
  lastUsedAt: apiTokens.lastUsedAt,
};

export async function insertApiToken(db: Db, values: { namespaceId: string; name: string; token: string; expiresAt?: Date | null }) {
  const [row] = await db
    .insert(apiTokens)
    .values({ namespaceId: values.namespaceId, name: values.name, tokenHash: hashToken(values.token), expiresAt: values.expiresAt ?? null })
    .returning(tokenColumns);
  return row!;
}

/** How stale last_used_at may get: one write a minute per token, not one per request. */
const LAST_USE_RESOLUTION = sql`interval '1 minute'`;

/**
 * The namespace a token belongs to, if the token exists and has not expired; lookups go by hash, so
 * the token itself is never stored. Records the use (at most once a minute per token).
 */
export async function findTokenNamespace(db: Db, token: string): Promise<string | undefined> {
  const tokenHash = hashToken(token);
  const [row] = await db
    .select({ id: apiTokens.id, namespace: namespaces.name, lastUsedAt: apiTokens.lastUsedAt })
    .from(apiTokens)
    .innerJoin(namespaces, eq(apiTokens.namespaceId, namespaces.id))
    .where(and(eq(apiTokens.tokenHash, tokenHash), or(isNull(apiTokens.expiresAt), gt(apiTokens.expiresAt, sql`now()`))));
  if (!row) return undefined;
  if (!row.lastUsedAt || Date.now() - row.lastUsedAt.getTime() > 60_000) {
    await db
      .update(apiTokens)
      .set({ lastUsedAt: sql`now()` })
      .where(and(eq(apiTokens.id, row.id), or(isNull(apiTokens.lastUsedAt), lt(apiTokens.lastUsedAt, sql`now() - ${LAST_USE_RESOLUTION}`))));
  }
  return row.namespace;
}

export async function listApiTokens(db: Db, namespaceId: string) {
  return db
    .select(tokenColumns)
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
