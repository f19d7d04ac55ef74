import { ApplicationFailure } from '@temporalio/activity';
import { and, eq, inArray } from 'drizzle-orm';
import type { Db } from '../db/client';
import { appendBuildLogs, finishBuild, getBuild, isTerminal, updateBuild } from '../db/queries/builds';
import { getRepository } from '../db/queries/repositories';
import { upsertImageTags } from '../db/queries/tags';
import { buildPlatforms } from '../db/schema';
import type { BuildPlan, PlatformImage, PlatformName } from '../workflows/types';
import { MEDIA_TYPES, RegistryClient, RegistryError } from './registry';

export interface ControlActivityDeps {
  db: Db;
  registry: RegistryClient;
  /** Turns a pinned-but-unresolved git build into a commit (git ls-remote); added with git sources. */
  resolveSource?: (plan: BuildPlan) => Promise<BuildPlan>;
}

export function createControlActivities(deps: ControlActivityDeps) {
  const { db, registry } = deps;

  return {
    /** Marks the build running and returns what to build; null when it already ended. */
    async startBuild(buildId: string): Promise<BuildPlan | null> {
      const build = await getBuild(db, buildId);
      if (!build) throw ApplicationFailure.create({ type: 'not_found', message: `build ${buildId} not found`, nonRetryable: true });
      if (isTerminal(build.status)) return null;
      const repo = await getRepository(db, build.repositoryId);
      if (!repo) throw ApplicationFailure.create({ type: 'not_found', message: 'repository was deleted', nonRetryable: true });
      await updateBuild(db, buildId, { status: 'running', phase: 'resolving', startedAt: build.startedAt ?? new Date() });
      await appendBuildLogs(db, buildId, [{ platform: null, line: `==> build ${buildId} started for ${build.repository}` }]);
      let plan: BuildPlan = {
        buildId,
        repositoryId: repo.id,
        repository: build.repository,
        platforms: build.platforms as PlatformName[],
        source: build.dockerfile !== null
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
        timeoutMinutes: build.timeoutMinutes,
        trigger: build.trigger,
        ref: build.sourceRef,
      };
      if (plan.source.kind === 'git') {
        if (!deps.resolveSource) {
          throw ApplicationFailure.create({ type: 'invalid_source', message: 'git sources are not configured on this worker', nonRetryable: true });
        }
        plan = await deps.resolveSource(plan);
      }
      await updateBuild(db, buildId, { phase: 'building' });
      return plan;
    },

    /**
     * Joins the per-platform images into one OCI index and pushes it under every tag. With
     * immutable tags, every existing tag but `latest` is checked before anything is pushed.
     */
    async assembleImageIndex(input: {
      buildId: string;
      repository: string;
      images: PlatformImage[];
      tags: string[];
      immutableTags: boolean;
    }): Promise<{ digest: string }> {
      await updateBuild(db, input.buildId, { phase: 'assembling' });
      const index = assembleIndexManifest(input.images);
      const body = Buffer.from(JSON.stringify(index));
      try {
        if (input.immutableTags) await assertTagsWritable(registry, input.repository, input.tags, body);
        let digest = '';
        for (const tag of input.tags) digest = await registry.putManifest(input.repository, tag, body, MEDIA_TYPES.ociIndex);
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
      await db.transaction(async (tx) => {
        await finishBuild(tx as unknown as Db, input.buildId, {
          status: 'succeeded',
          phase: null,
          manifestDigest: input.manifestDigest,
          pushedTags: input.tags,
        });
        await upsertImageTags(tx as unknown as Db, {
          repositoryId: build.repositoryId,
          tags: input.tags,
          digest: input.manifestDigest,
          buildId: build.id,
          creationMethod: build.creationMethod,
        });
      });
      await appendBuildLogs(db, input.buildId, [{ platform: null, line: '==> build succeeded' }]);
    },

    async recordBuildFailed(input: {
      buildId: string;
      status: 'failed' | 'canceled' | 'timed_out';
      code: string;
      message: string;
    }): Promise<void> {
      await finishBuild(db, input.buildId, { status: input.status, errorCode: input.code, errorMessage: input.message });
      await db
        .update(buildPlatforms)
        .set({ status: 'canceled', finishedAt: new Date() })
        .where(and(eq(buildPlatforms.buildId, input.buildId), inArray(buildPlatforms.status, ['queued', 'running'])));
      await appendBuildLogs(db, input.buildId, [{ platform: null, line: `==> build ${input.status}: ${input.message}` }]);
    },
  };
}

export type ControlActivities = ReturnType<typeof createControlActivities>;

export function assembleIndexManifest(images: PlatformImage[]) {
  return {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [...images]
      .sort((a, b) => a.platform.localeCompare(b.platform))
      .map((img) => {
        const [os, architecture, variant] = img.platform.split('/');
        return {
          mediaType: img.mediaType,
          digest: img.digest,
          size: img.size,
          platform: { architecture: architecture!, os: os!, ...(variant ? { variant } : {}) },
        };
      }),
  };
}

async function assertTagsWritable(registry: RegistryClient, repository: string, tags: string[], body: Buffer): Promise<void> {
  const { sha256 } = await import('./registry');
  const digest = sha256(body);
  const taken: string[] = [];
  for (const tag of tags) {
    if (tag === 'latest') continue;
    const existing = await registry.resolveDigest(repository, tag);
    if (existing && existing !== digest) taken.push(tag);
  }
  if (taken.length) {
    throw ApplicationFailure.create({
      type: 'tag_immutable',
      message: `Tags are immutable in ${repository} and already exist: ${taken.join(', ')}; nothing was pushed`,
      nonRetryable: true,
    });
  }
}

/** Registry 4xx (but throttling) is a fault the user must fix; anything else is retried. */
function toActivityError(err: unknown): unknown {
  if (err instanceof RegistryError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) {
    return ApplicationFailure.create({ type: 'registry_rejected', message: err.message, nonRetryable: true });
  }
  return err;
}
