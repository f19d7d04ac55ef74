import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import type { Db } from '../client';
import { imageTags, type ImageTag } from '../schema';
import { CREATION_METHODS } from '../../domain/builds';

type TagValues = {
  repositoryId: string;
  tags: string[];
  digest: string;
  buildId: string | null;
  creationMethod: (typeof CREATION_METHODS)[number];
};

const tagRows = (v: TagValues) =>
  v.tags.map((tag) => ({ repositoryId: v.repositoryId, tag, digest: v.digest, buildId: v.buildId, creationMethod: v.creationMethod }));

/** Records tags pointing at `digest`; a tag moved by a newer build is updated in place. */
export async function upsertImageTags(db: Db, values: TagValues): Promise<void> {
  if (values.tags.length === 0) return;
  await db
    .insert(imageTags)
    .values(tagRows(values))
    .onConflictDoUpdate({
      target: [imageTags.repositoryId, imageTags.tag],
      set: {
        digest: sql`excluded.digest`,
        buildId: sql`excluded.build_id`,
        creationMethod: sql`excluded.creation_method`,
        updatedAt: new Date(),
      },
    });
}

export async function listImageTags(db: Db, repositoryId: string): Promise<ImageTag[]> {
  return db.select().from(imageTags).where(eq(imageTags.repositoryId, repositoryId)).orderBy(asc(imageTags.tag));
}

export async function findImageTags(db: Db, repositoryId: string, tags: string[]): Promise<ImageTag[]> {
  if (tags.length === 0) return [];
  return db
    .select()
    .from(imageTags)
    .where(and(eq(imageTags.repositoryId, repositoryId), inArray(imageTags.tag, tags)))
    .orderBy(asc(imageTags.tag));
}

/**
 * Claims `tags` for one build in a repository with immutable tags, all or none, in one
 * transaction: the unique (repository, tag) index makes the database the arbiter between builds
 * racing for the same tag. A tag already held by this build, or pointing at the same digest, is
 * not a conflict (a retried push, or identical content). Returns the tags held by others; when
 * there are any, nothing was claimed.
 */
export async function claimImageTags(
  db: Db,
  values: TagValues & { buildId: string },
): Promise<ImageTag[]> {
  if (values.tags.length === 0) return [];
  const rollback = new Error('tag claim rolled back');
  let conflicts: ImageTag[] = [];
  try {
    await db.transaction(async (tx) => {
      await tx
        .insert(imageTags)
        .values(tagRows(values))
        .onConflictDoNothing({ target: [imageTags.repositoryId, imageTags.tag] });
      // Under READ COMMITTED this statement sees a concurrent claimer's committed row: the insert
      // above waited for it on the unique index.
      const rows = await findImageTags(tx as unknown as Db, values.repositoryId, values.tags);
      conflicts = rows.filter((r) => r.buildId !== values.buildId && r.digest !== values.digest);
      if (conflicts.length) throw rollback;
    });
  } catch (err) {
    if (err !== rollback) throw err;
  }
  return conflicts;
}

/** Drops the rows a build claimed but never completed (it failed or was canceled). */
export async function releaseImageTagClaims(db: Db, buildId: string): Promise<void> {
  await db.delete(imageTags).where(eq(imageTags.buildId, buildId));
}
