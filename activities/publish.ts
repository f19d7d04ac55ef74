// Publishing an OCI index under tags: the tag guard, the push loop and how their faults reach the
// workflow. The build's own index (activities/control.ts) and its accelerated index
// (activities/accelerate.ts) are both published through here.
import { CancelledFailure, Context } from '@temporalio/activity';
import type { Db } from '../db/client';
import { getBuild } from '../db/queries/builds';
import { claimImageTags } from '../db/queries/tags';
import type { PlatformImage } from '../domain/images';
import { userFault } from '../domain/errors';
import { attestationEntries } from './attestations';
import { MEDIA_TYPES, RegistryError, type RegistryClient } from './registry';

/** Why tags must be free: the repository's immutable tags, or a build that may not overwrite. */
export type TagGuard = 'immutable' | 'no-overwrite';

export interface GuardedTags {
  buildId: string;
  repository: string;
  /** The tags to check; the caller leaves out those that stay mutable (`latest`). */
  tags: string[];
  /** The index about to be pushed: a tag already pointing at it is free. */
  digest: string;
  guard: TagGuard;
}

/**
 * The OCI index over per-platform images, sorted by platform so one set gives one digest, then
 * their provenance attestations as BuildKit lays them out.
 */
export function assembleIndexManifest(images: PlatformImage[]) {
  const sorted = [...images].sort((a, b) => a.platform.localeCompare(b.platform));
  return {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [
      ...sorted.map((img) => {
        const [os, architecture, variant] = img.platform.split('/');
        return {
          mediaType: img.mediaType,
          digest: img.digest,
          size: img.size,
          platform: { architecture: architecture!, os: os!, ...(variant ? { variant } : {}) },
        };
      }),
      ...attestationEntries(sorted),
    ],
  };
}

export function createPublisher(deps: { db: Db; registry: RegistryClient }) {
  const { db, registry } = deps;
  return {
    /**
     * Every guarded tag must be free before anything is pushed: free in the registry (tags pushed
     * outside Kiln) and claimed for this build in the database, which settles a race between two
     * builds for one tag — only the claimer pushes. Throws `tag_immutable` naming the taken tags.
     */
    async claimGuardedTags(input: GuardedTags): Promise<void> {
      const { buildId, repository, tags, digest, guard } = input;
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
        const rule = guard === 'immutable' ? `Tags are immutable in ${repository}` : 'The build may not overwrite tags (OverwriteImageTag: false)';
        throw userFault('tag_immutable', `${rule} and these already exist: ${taken.join(', ')}; no tag was pushed`);
      }
    },

    /**
     * Pushes one index under every tag, heartbeating between tags: a cancel that lands mid-way
     * stops the loop, so it leaves no more tags behind than it has to. `what` names the index in
     * the cancellation message.
     */
    async pushIndex(repository: string, tags: string[], body: Buffer, what: string): Promise<void> {
      const ctx = currentActivity();
      try {
        for (const tag of tags) {
          ctx?.heartbeat();
          if (ctx?.cancellationSignal.aborted) throw new CancelledFailure(`build canceled before every ${what} was pushed`);
          await registry.putManifest(repository, tag, body, MEDIA_TYPES.ociIndex);
        }
      } catch (err) {
        throw toActivityError(err);
      }
    },
  };
}

/** Registry 4xx (but throttling) is a fault the user must fix; anything else is retried. */
function toActivityError(err: unknown): unknown {
  if (err instanceof RegistryError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) {
    return userFault('registry_rejected', err.message);
  }
  return err;
}

/** The running activity's context; undefined when called outside an activity (tests, scripts). */
function currentActivity(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}
