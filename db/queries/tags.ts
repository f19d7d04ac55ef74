import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import type { Db } from '../client';
import { CREATION_METHODS, imageTags, type ImageTag } from '../schema';

/** Records tags pointing at `digest`; a tag moved by a newer build is updated in place. */
export async function upsertImageTags(
  db: Db,
  values: {
    repositoryId: string;
    tags: string[];
    digest: string;
    buildId: string | null;
    creationMethod: (typeof CREATION_METHODS)[number];
  },
): Promise<void> {
  if (values.tags.length === 0) return;
  await db
    .insert(imageTags)
    .values(
      values.tags.map((tag) => ({
        repositoryId: values.repositoryId,
        tag,
        digest: values.digest,
        buildId: values.buildId,
        creationMethod: values.creationMethod,
      })),
    )
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
