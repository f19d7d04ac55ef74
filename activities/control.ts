import { CancelledFailure, Context } from '@temporalio/activity';
import { and, eq, inArray } from 'drizzle-orm';
import type { Db } from '../db/client';
import { finishBuild, getBuild, getBuildStatus, isTerminal, updateBuild, type BuildWithDetails } from '../db/queries/builds';
import type { Build } from '../db/schema';
import { appendBuildLogs } from '../db/queries/logs';
import { getRepository } from '../db/queries/repositories';
import { claimImageTags, releaseImageTagClaims, upsertImageTags } from '../db/queries/tags';
import { buildPlatforms } from '../db/schema';
import type { BuildPlan, PlatformImage, PlatformName } from '../domain/build-plan';
import { activityLog } from '../observability/log';
import { ALL_PLATFORMS, buildMetrics, secondsBetween, timePhase } from '../observability/metrics';
import { attestationEntries } from './attestations';
import { MEDIA_TYPES, RegistryClient, RegistryError, sha256 } from './registry';
import { userFault } from '../domain/errors';

export interface ControlActivityDeps {
  db: Db;
  registry: RegistryClient;
  /** Pins a git build to a commit and renders its rule's tags (activities/source.ts). */
  resolveSource?: (plan: BuildPlan, build: BuildWithDetails) => Promise<BuildPlan>;
}

export function createControlActivities(deps: ControlActivityDeps) {
  const { db, registry } = deps;

  /**
   * The tag guard of assembleImageIndex: with immutable tags every tag but `latest`, with
   * overwriteTags off every tag, must be free. Throws `tag_immutable` naming the taken tags.
   */
  async function claimGuardedTags(
    buildId: string,
    repository: string,
    tags: string[],
    digest: string,
    why: 'immutable' | 'no-overwrite',
  ): Promise<void> {
    const guarded = why === 'immutable' ? tags.filter((t) => t !== 'latest') : tags;
    if (guarded.length === 0) return;
    const taken: string[] = [];
    // Tags pushed outside Kiln exist in the registry even when the database never heard of them.
    for (const tag of guarded) {
      const existing = await registry.resolveDigest(repository, tag);
      if (existing && existing !== digest) taken.push(`${tag} (in the registry)`);
    }
    if (taken.length === 0) {
      const build = await getBuild(db, buildId);
      if (!build) throw userFault('not_found', `build ${buildId} not found`);
      const held = await claimImageTags(db, {
        repositoryId: build.repositoryId,
        tags: guarded,
        digest,
        buildId,
        creationMethod: build.creationMethod,
      });
      for (const t of held) taken.push(`${t.tag} (${t.buildId ? `pushed by build ${t.buildId}` : t.creationMethod})`);
    }
    if (taken.length) {
      const rule = why === 'immutable' ? `Tags are immutable in ${repository}` : 'The build may not overwrite tags (OverwriteImageTag: false)';
      throw userFault('tag_immutable', `${rule} and these already exist: ${taken.join(', ')}; no tag was pushed`);
    }
  }

  const activities = {
    /** Marks the build running and returns what to build; null when it already ended. */
    async startBuild(buildId: string): Promise<BuildPlan | null> {
      const build = await getBuild(db, buildId);
      if (!build) throw userFault('not_found', `build ${buildId} not found`);
      if (isTerminal(build.status)) return null;
      const repo = await getRepository(db, build.repositoryId);
      if (!repo) throw userFault('not_found', 'repository was deleted');
      const startedAt = build.startedAt ?? new Date();
      await updateBuild(db, buildId, { status: 'running', phase: 'resolving', startedAt });
      // A retried startBuild keeps the first start, so the wait is counted once.
      if (!build.startedAt) {
        buildMetrics().queueWait.observe(secondsBetween(build.createdAt, startedAt) ?? 0);
        activityLog().info('build started', { repository: build.repository, platforms: build.platforms, trigger: build.trigger });
      }
      await appendBuildLogs(db, buildId, [{ platform: null, line: `==> build ${buildId} started for ${build.repository}` }]);
      let plan: BuildPlan = {
        buildId,
        repositoryId: repo.id,
        repository: build.repository,
        platforms: build.platforms as PlatformName[],
        source: build.contextDigest
          ? { kind: 'context', digest: build.contextDigest, contextDir: build.contextDir, dockerfilePath: build.dockerfilePath }
          : build.dockerfile !== null
          ? { kind: 'inline', dockerfile: build.dockerfile }
          : {
              kind: 'git',
              url: build.sourceUrl ?? '',
              commit: build.sourceCommit ?? '',
              repositoryId: repo.id,
              contextDir: build.contextDir,
              dockerfilePath: build.dockerfilePath,
            },
        buildArgs: build.buildArgs,
        labels: build.labels,
        target: build.target,
        tags: build.tags,
        noCache: build.noCache,
        accelerated: build.accelerated,
        immutableTags: repo.immutableTags,
        overwriteTags: build.overwriteTags,
        provenance: build.provenance,
        timeoutMinutes: build.timeoutMinutes,
        trigger: build.trigger,
        ref: build.sourceRef,
        buildPool: repo.buildPool,
      };
      if (plan.source.kind === 'git') {
        if (!deps.resolveSource) {
          throw userFault('invalid_source', 'git sources are not configured on this worker');
        }
        plan = await deps.resolveSource(plan, build);
        if (plan.source.kind === 'git') {
          await appendBuildLogs(db, buildId, [
            { platform: null, line: `==> source ${plan.source.url} ${plan.ref} pinned to ${plan.source.commit}` },
            { platform: null, line: `==> tags ${plan.tags.join(', ')}` },
          ]);
        }
      }
      if (plan.source.kind === 'context') {
        await appendBuildLogs(db, buildId, [
          { platform: null, line: `==> local context ${plan.source.digest} (${build.contextSize ?? 0} bytes)` },
        ]);
      }
      await updateBuild(db, buildId, { phase: 'building' });
      return plan;
    },

    /**
     * Joins the per-platform images into one OCI index and pushes it under every tag. With
     * immutable tags, every tag but `latest` must be free before anything is pushed: free in the
     * registry (tags pushed outside Kiln) and claimed for this build in the database, which
     * settles a race between two builds for the same tag — only the claimer pushes.
     */
    async assembleImageIndex(input: {
      buildId: string;
      repository: string;
      images: PlatformImage[];
      tags: string[];
      immutableTags: boolean;
      overwriteTags: boolean;
    }): Promise<{ digest: string }> {
      await updateBuild(db, input.buildId, { phase: 'assembling' });
      const index = assembleIndexManifest(input.images);
      const body = Buffer.from(JSON.stringify(index));
      const digest = sha256(body);
      try {
        if (input.immutableTags) await claimGuardedTags(input.buildId, input.repository, input.tags, digest, 'immutable');
        else if (!input.overwriteTags) await claimGuardedTags(input.buildId, input.repository, input.tags, digest, 'no-overwrite');
        const signal = activityCancellationSignal();
        for (const tag of input.tags) {
          // A cancel that lands mid-way must not leave more tags behind than it has to.
          if (signal?.aborted) throw new CancelledFailure('build canceled before every tag was pushed');
          await registry.putManifest(input.repository, tag, body, MEDIA_TYPES.ociIndex);
        }
        await appendBuildLogs(db, input.buildId, [
          { platform: null, line: `==> pushed index ${digest} as ${input.tags.map((t) => `${input.repository}:${t}`).join(', ')}` },
        ]);
        return { digest };
      } catch (err) {
        throw toActivityError(err);
      }
    },

    async recordBuildSucceeded(input: { buildId: string; manifestDigest: string; tags: string[] }): Promise<void> {
      const build = await getBuild(db, input.buildId);
      if (!build) return;
      await updateBuild(db, input.buildId, { phase: 'recording' });
      // The closing log line commits with the status, so a follower that sees the build end has it.
      let recorded: Build | undefined;
      await db.transaction(async (tx) => {
        const finished = await finishBuild(tx as unknown as Db, input.buildId, {
          status: 'succeeded',
          phase: null,
          manifestDigest: input.manifestDigest,
          pushedTags: input.tags,
        });
        if (finished) await appendBuildLogs(tx as unknown as Db, input.buildId, [{ platform: null, line: '==> build succeeded' }]);
        recorded = finished;
        await upsertImageTags(tx as unknown as Db, {
          repositoryId: build.repositoryId,
          tags: input.tags,
          digest: input.manifestDigest,
          buildId: build.id,
          creationMethod: build.creationMethod,
        });
      });
      if (recorded) recordOutcome(recorded);
    },

    async recordBuildFailed(input: {
      buildId: string;
      status: 'failed' | 'canceled' | 'timed_out';
      code: string;
      message: string;
    }): Promise<void> {
      let recorded: Build | undefined;
      await db.transaction(async (tx) => {
        const finished = await finishBuild(tx as unknown as Db, input.buildId, { status: input.status, errorCode: input.code, errorMessage: input.message });
        if (finished) await appendBuildLogs(tx as unknown as Db, input.buildId, [{ platform: null, line: `==> build ${input.status}: ${input.message}` }]);
        recorded = finished;
      });
      if (recorded) recordOutcome(recorded, input.code);
      // Tags this build claimed (immutable repositories) were never fully pushed: free them for
      // the next build. A build that did succeed keeps its tags, whatever happened after.
      if ((await getBuildStatus(db, input.buildId)) !== 'succeeded') await releaseImageTagClaims(db, input.buildId);
      await db
        .update(buildPlatforms)
        .set({ status: 'canceled', finishedAt: new Date() })
        .where(and(eq(buildPlatforms.buildId, input.buildId), inArray(buildPlatforms.status, ['queued', 'running'])));
    },
  };

  // Each control step is timed as the build phase it is (building is timed per platform).
  return {
    ...activities,
    startBuild: (buildId: string) => timePhase('resolving', ALL_PLATFORMS, () => activities.startBuild(buildId)),
    assembleImageIndex: (input: Parameters<typeof activities.assembleImageIndex>[0]) =>
      timePhase('assembling', ALL_PLATFORMS, () => activities.assembleImageIndex(input)),
    recordBuildSucceeded: (input: Parameters<typeof activities.recordBuildSucceeded>[0]) =>
      timePhase('recording', ALL_PLATFORMS, () => activities.recordBuildSucceeded(input)),
  };
}

/** Counts a build that just reached its terminal status (once: only the call that finished it). */
function recordOutcome(build: Build, code?: string): void {
  const finishedAt = build.finishedAt ?? new Date();
  const seconds = secondsBetween(build.startedAt ?? build.createdAt, finishedAt) ?? 0;
  const metrics = buildMetrics();
  metrics.finished.inc({ status: build.status });
  metrics.duration.observe({ status: build.status }, seconds);
  activityLog().info(`build ${build.status}`, { status: build.status, seconds, ...(code ? { code } : {}) });
}

export type ControlActivities = ReturnType<typeof createControlActivities>;

/** The platform images, then their provenance attestations as BuildKit lays them out. */
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

/** Registry 4xx (but throttling) is a fault the user must fix; anything else is retried. */
function toActivityError(err: unknown): unknown {
  if (err instanceof RegistryError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) {
    return userFault('registry_rejected', err.message);
  }
  return err;
}

/** The running activity's cancellation signal; undefined when called outside an activity. */
function activityCancellationSignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}
