import { and, asc, eq, gt, inArray, isNotNull, isNull, sql } from 'drizzle-orm';
import { normalizeGitUrl } from '../../domain/git-url';
import { preparedFor, type Db } from '../client';
import { ensureNamespace } from './namespaces';
import { namespaces, repositories, type Namespace, type Repository } from '../schema';

export type RepositoryWithNamespace = Repository & { namespace: string; buildPool: string | null };

const withNamespace = (r: { repositories: Repository; namespaces: Namespace }): RepositoryWithNamespace => ({
  ...r.repositories,
  namespace: r.namespaces.name,
  buildPool: r.namespaces.buildPool,
});

/** The indexed lookup key follows the source URL wherever it is written. */
function withSourceKey<T extends Partial<typeof repositories.$inferInsert>>(values: T): T {
  if (values.sourceUrl === undefined) return values;
  return { ...values, sourceUrlKey: values.sourceUrl === null ? null : normalizeGitUrl(values.sourceUrl) };
}

export async function insertRepository(db: Db, values: typeof repositories.$inferInsert): Promise<Repository> {
  const [row] = await db.insert(repositories).values(withSourceKey(values)).returning();
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
    .set({ ...withSourceKey(values), updatedAt: new Date() })
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

/**
 * Repositories bound on `provider` to any of these clone URLs, through the indexed
 * `source_url_key` (normalizeGitUrl), however the host spelled the URL.
 */
/** What a webhook delivery needs of the repositories it names: which ones, and their secrets. */
export interface WebhookTarget {
  id: string;
  webhookSecretEnc: string | null;
}

/**
 * The repositories bound to any of `urls` (by their normalized key) for this provider. Only the
 * two columns the webhook reads: this runs once per delivery, on the ingest path.
 */
export async function findWebhookTargets(db: Db, provider: string, urls: string[]): Promise<WebhookTarget[]> {
  const keys = [...new Set(urls.map(normalizeGitUrl))];
  if (keys.length === 0) return [];
  return preparedFor(db, prepareWebhookTargets).execute({ keys, provider });
}

// Runs once per webhook delivery: built once per database, not per call.
const prepareWebhookTargets = (db: Db) =>
  db
    .select({ id: repositories.id, webhookSecretEnc: repositories.webhookSecretEnc })
    .from(repositories)
    .where(and(sql`${repositories.sourceUrlKey} = any(${sql.placeholder('keys')}::text[])`, eq(repositories.sourceProvider, sql.placeholder('provider'))))
    .prepare('webhook_targets');

/** Fills source_url_key for rows written before the column existed (run at start-up; idempotent). */
export async function backfillSourceUrlKeys(db: Db): Promise<number> {
  const rows = await db
    .select({ id: repositories.id, sourceUrl: repositories.sourceUrl })
    .from(repositories)
    .where(and(isNotNull(repositories.sourceUrl), isNull(repositories.sourceUrlKey)));
  for (const r of rows) {
    await db.update(repositories).set({ sourceUrlKey: normalizeGitUrl(r.sourceUrl!) }).where(eq(repositories.id, r.id));
  }
  return rows.length;
}
