import { and, desc, eq, inArray, isNotNull, sql } from 'drizzle-orm';
import type { Db } from '../client';
import { buildPlatforms, buildRules, builds, type Build, type BuildRule } from '../schema';

/**
 * Rules to rebuild because `image` (`host/repo:tag`) now points at `digest`: enabled rules with
 * rebuildOnBaseChange, for each ref they built, when the latest succeeded build of that ref pulled
 * `image` at another digest. A ref whose latest build no longer pulls it is left alone.
 */
export async function findBaseImageDependents(db: Db, image: string, digest: string): Promise<{ build: Build; rule: BuildRule }[]> {
  const pulledIt = db
    .selectDistinct({ ruleId: builds.ruleId })
    .from(buildPlatforms)
    .innerJoin(builds, eq(buildPlatforms.buildId, builds.id))
    .where(and(isNotNull(builds.ruleId), sql`${buildPlatforms.baseImages} @> ${JSON.stringify([{ image }])}::jsonb`));
  const latest = await db
    .selectDistinctOn([builds.ruleId, builds.sourceRef], { build: builds, rule: buildRules })
    .from(builds)
    .innerJoin(buildRules, eq(buildRules.id, builds.ruleId))
    .where(
      and(
        eq(buildRules.enabled, true),
        eq(buildRules.rebuildOnBaseChange, true),
        eq(builds.status, 'succeeded'),
        isNotNull(builds.sourceRef),
        inArray(builds.ruleId, pulledIt),
      ),
    )
    .orderBy(builds.ruleId, builds.sourceRef, desc(builds.createdAt));
  if (!latest.length) return [];
  const platforms = await db
    .select({ buildId: buildPlatforms.buildId, baseImages: buildPlatforms.baseImages })
    .from(buildPlatforms)
    .where(inArray(buildPlatforms.buildId, latest.map((l) => l.build.id)));
  const stale = new Set(
    platforms.filter((p) => p.baseImages.some((b) => b.image === image && b.digest !== digest)).map((p) => p.buildId),
  );
  return latest.filter((l) => stale.has(l.build.id));
}
