// The accelerated (eStargz, lazy-pull) index of a build: `<tag>_accelerated` for every tag, over
// the eStargz variants the build activities pushed next to each platform image. Local activities
// of the control worker, like the other control steps.
import { CancelledFailure, Context } from '@temporalio/activity';
import { eq } from 'drizzle-orm';
import type { Db } from '../db/client';
import { getBuild, updateBuild } from '../db/queries/builds';
import { appendBuildLogs } from '../db/queries/logs';
import { claimImageTags, upsertImageTags } from '../db/queries/tags';
import { builds } from '../db/schema';
import { OCI_TAG_RE } from '../domain/oci';
import { acceleratedTag, type PlatformImage } from '../domain/build-plan';
import { ALL_PLATFORMS, timePhase } from '../observability/metrics';
import { assembleIndexManifest } from './control';
import { MEDIA_TYPES, RegistryError, sha256, type RegistryClient } from './registry';
import { userFault } from '../domain/errors';

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
  const { db, registry } = deps;
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
      if (input.immutableTags) await claimTags(input.buildId, input.repository, tags.filter((t) => t !== acceleratedTag('latest')), digest);
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
      try {
        const signal = cancellationSignal();
        for (const tag of tags) {
          if (signal?.aborted) throw new CancelledFailure('build canceled before every accelerated tag was pushed');
          await registry.putManifest(input.repository, tag, body, MEDIA_TYPES.ociIndex);
        }
      } catch (err) {
        throw toActivityError(err);
      }
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

  /** As assembleImageIndex does for the anchors: free in the registry, then claimed in the database. */
  async function claimTags(buildId: string, repository: string, tags: string[], digest: string): Promise<void> {
    if (tags.length === 0) return;
    const taken: string[] = [];
    try {
      for (const tag of tags) {
        const existing = await registry.resolveDigest(repository, tag);
        if (existing && existing !== digest) taken.push(`${tag} (in the registry)`);
      }
    } catch (err) {
      throw toActivityError(err);
    }
    if (taken.length === 0) {
      const build = await getBuild(db, buildId);
      if (!build) throw userFault('not_found', `build ${buildId} not found`);
      const held = await claimImageTags(db, { repositoryId: build.repositoryId, tags, digest, buildId, creationMethod: build.creationMethod });
      for (const t of held) taken.push(`${t.tag} (${t.buildId ? `pushed by build ${t.buildId}` : t.creationMethod})`);
    }
    if (taken.length) {
      throw userFault('tag_immutable', `Tags are immutable in ${repository} and these already exist: ${taken.join(', ')}; no tag was pushed`);
    }
  }
}

export type AccelerateActivities = ReturnType<typeof createAccelerateActivities>;

/** Registry 4xx (but throttling) is a fault the user must fix; anything else is retried. */
function toActivityError(err: unknown): unknown {
  if (err instanceof RegistryError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) {
    return userFault('registry_rejected', err.message);
  }
  return err;
}

function cancellationSignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}
