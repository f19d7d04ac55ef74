import { and, eq, inArray } from 'drizzle-orm';
import type { Db } from '../db/client';
import { finishBuild, getBuild, getBuildStatus, updateBuild, type BuildWithDetails } from '../db/queries/builds';
import { isTerminal } from '../domain/builds';
import type { Build } from '../db/schema';
import { appendBuildLogs } from '../db/queries/logs';
import { getRepository } from '../db/queries/repositories';
import { releaseImageTagClaims, upsertImageTags } from '../db/queries/tags';
import { buildPlatforms } from '../db/schema';
import type { PlatformImage } from '../domain/images';
import type { Platform } from '../domain/platforms';
import type { BuildPlan } from './build-plan';
import { activityLog } from '../observability/log';
import { ALL_PLATFORMS, buildMetrics, secondsBetween, timePhase } from '../observability/metrics';
import { assembleIndexManifest, createPublisher } from './publish';
import { sha256, type RegistryClient } from './registry';
import { userFault } from '../domain/errors';

export interface ControlActivityDeps {
  db: Db;
  registry: RegistryClient;
  /** Pins a git build to a commit and renders its rule's tags (activities/source.ts). */
  resolveSource?: (plan: BuildPlan, build: BuildWithDetails) => Promise<BuildPlan>;
}

export function createControlActivities(deps: ControlActivityDeps) {
  const { db } = deps;
  const publisher = createPublisher(deps);

  const activities = {
    /**
     * Marks the build running and returns what to build; null when it already ended. A git
     * source comes back unpinned (pinSource pins it).
     */
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
      const plan: BuildPlan = {
        buildId,
        repositoryId: repo.id,
        repository: build.repository,
        platforms: build.platforms as Platform[],
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
      // Pinning a git source asks the git host: a network step of its own (pinSource).
      if (plan.source.kind === 'git') return plan;
      if (plan.source.kind === 'context') {
        await appendBuildLogs(db, buildId, [
          { platform: null, line: `==> local context ${plan.source.digest} (${build.contextSize ?? 0} bytes)` },
        ]);
      }
      await updateBuild(db, buildId, { phase: 'building' });
      return plan;
    },

    /**
     * Pins a git build to one commit (`git ls-remote` against the user's host unless the push
     * named it) and renders its rule's tags; the plan startBuild returned, pinned.
     */
    async pinSource(plan: BuildPlan): Promise<BuildPlan> {
      if (!deps.resolveSource) {
        throw userFault('invalid_source', 'git sources are not configured on this worker');
      }
      const build = await getBuild(db, plan.buildId);
      if (!build) throw userFault('not_found', `build ${plan.buildId} not found`);
      const pinned = await deps.resolveSource(plan, build);
      if (pinned.source.kind === 'git') {
        await appendBuildLogs(db, plan.buildId, [
          { platform: null, line: `==> source ${pinned.source.url} ${pinned.ref} pinned to ${pinned.source.commit}` },
          { platform: null, line: `==> tags ${pinned.tags.join(', ')}` },
        ]);
      }
      await updateBuild(db, plan.buildId, { phase: 'building' });
      return pinned;
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
      // With immutable tags every tag but `latest`, with overwriteTags off every tag, must be free.
      if (input.immutableTags) {
        await publisher.claimGuardedTags({ ...input, tags: input.tags.filter((t) => t !== 'latest'), digest, guard: 'immutable' });
      } else if (!input.overwriteTags) {
        await publisher.claimGuardedTags({ ...input, digest, guard: 'no-overwrite' });
      }
      await publisher.pushIndex(input.repository, input.tags, body, 'tag');
      await appendBuildLogs(db, input.buildId, [
        { platform: null, line: `==> pushed index ${digest} as ${input.tags.map((t) => `${input.repository}:${t}`).join(', ')}` },
      ]);
      return { digest };
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
    pinSource: (plan: BuildPlan) => timePhase('resolving', ALL_PLATFORMS, () => activities.pinSource(plan)),
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

/** The control steps that only touch Kiln's database: local activities of the workflow. */
export type DatabaseControlActivities = Pick<ControlActivities, 'startBuild' | 'recordBuildSucceeded' | 'recordBuildFailed'>;

/** The control steps that reach a git host or the registry: normal activities, with timeouts. */
export type NetworkControlActivities = Omit<ControlActivities, keyof DatabaseControlActivities>;
