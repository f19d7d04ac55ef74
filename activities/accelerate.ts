// The accelerated (eStargz, lazy-pull) index of a build: `<tag>_accelerated` for every tag, over
// the eStargz variants the build activities pushed next to each platform image. Control steps
// that reach the registry: normal activities of the control worker, published through
// activities/publish.ts like the build's own index.
import { eq } from 'drizzle-orm';
import type { Db } from '../db/client';
import { getBuild, updateBuild } from '../db/queries/builds';
import { appendBuildLogs } from '../db/queries/logs';
import { upsertImageTags } from '../db/queries/tags';
import { builds } from '../db/schema';
import { OCI_TAG_RE } from '../domain/oci';
import { acceleratedTag, type PlatformImage } from '../domain/images';
import { userFault } from '../domain/errors';
import { ALL_PLATFORMS, timePhase } from '../observability/metrics';
import { assembleIndexManifest, createPublisher } from './publish';
import { sha256, type RegistryClient } from './registry';

export interface AccelerateActivityDeps {
  db: Db;
  registry: RegistryClient;
}

export interface AcceleratedIndexInput {
  buildId: string;
  repository: string;
  /** The build's platform images, each with its `accelerated` variant. */
  images: PlatformImage[];
  /** The anchor tags; the index is pushed as `<tag>_accelerated` for each. */
  tags: string[];
  immutableTags: boolean;
}

export interface AcceleratedIndex {
  digest: string;
  tags: string[];
}

/** The index over the platforms' eStargz variants, byte for byte as it is pushed. */
export function acceleratedIndexBody(images: PlatformImage[]): Buffer {
  const variants = images.map((img) => {
    if (!img.accelerated) throw new Error(`no eStargz variant was built for ${img.platform}`);
    // The eStargz image's own attestation (or none), never the plain image's.
    return { ...img, ...img.accelerated, attestation: img.accelerated.attestation, accelerated: undefined };
  });
  return Buffer.from(JSON.stringify(assembleIndexManifest(variants)));
}

export function createAccelerateActivities(deps: AccelerateActivityDeps) {
  const { db } = deps;
  const publisher = createPublisher(deps);
  return {
    /**
     * Runs before the build's own index is pushed, so a build that cannot push its accelerated
     * tags fails before any tag is pushed (never half-tagged): checks the tags are valid and, in
     * a repository with immutable tags, claims them as assembleImageIndex claims the anchors.
     * `latest_accelerated` follows `latest` and stays mutable.
     */
    async prepareAcceleratedIndex(input: AcceleratedIndexInput): Promise<AcceleratedIndex> {
      const tags = input.tags.map(acceleratedTag);
      const invalid = tags.filter((t) => !OCI_TAG_RE.test(t));
      if (invalid.length) {
        throw userFault('invalid_tag', `The accelerated tags ${invalid.join(', ')} are not valid OCI tags (at most 128 characters); shorten the tags or turn accelerated images off`);
      }
      const digest = sha256(acceleratedIndexBody(input.images));
      if (input.immutableTags) {
        const guarded = tags.filter((t) => t !== acceleratedTag('latest'));
        await publisher.claimGuardedTags({ buildId: input.buildId, repository: input.repository, tags: guarded, digest, guard: 'immutable' });
      }
      return { digest, tags };
    },

    /** Pushes the accelerated index under every `<tag>_accelerated` and records it on the build. */
    pushAcceleratedIndex: (input: AcceleratedIndexInput): Promise<AcceleratedIndex> =>
      timePhase('accelerating', ALL_PLATFORMS, () => pushAcceleratedIndex(input)),
  };

  async function pushAcceleratedIndex(input: AcceleratedIndexInput): Promise<AcceleratedIndex> {
    await updateBuild(db, input.buildId, { phase: 'accelerating' });
    const body = acceleratedIndexBody(input.images);
    const digest = sha256(body);
    const tags = input.tags.map(acceleratedTag);
    await publisher.pushIndex(input.repository, tags, body, 'accelerated tag');
    const build = await getBuild(db, input.buildId);
    if (!build) throw userFault('not_found', `build ${input.buildId} not found`);
    await db.transaction(async (tx) => {
      await tx.update(builds).set({ acceleratedDigest: digest, acceleratedTags: tags }).where(eq(builds.id, input.buildId));
      // They are image versions like any other (the anchors list them too).
      await upsertImageTags(tx as unknown as Db, {
        repositoryId: build.repositoryId,
        tags,
        digest,
        buildId: build.id,
        creationMethod: build.creationMethod,
      });
    });
    await appendBuildLogs(db, input.buildId, [
      { platform: null, line: `==> pushed accelerated index ${digest} as ${tags.map((t) => `${input.repository}:${t}`).join(', ')}` },
    ]);
    return { digest, tags };
  }
}

export type AccelerateActivities = ReturnType<typeof createAccelerateActivities>;
