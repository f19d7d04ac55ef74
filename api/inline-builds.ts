// Submitting an inline-Dockerfile build, shared by POST /builds and the PAI-style
// POST /imagebuilds: the repository is created on demand, clientToken makes retries safe, and
// the workflow is started with nothing but ids.
import { randomUUID } from 'node:crypto';
import type { Context } from 'hono';
import { findBuildByClientToken, insertBuild } from '../db/queries/builds';
import { useBuildContext } from '../db/queries/contexts';
import { ensureNamespace, getNamespaceByName } from '../db/queries/namespaces';
import { getRepositoryByPath, type RepositoryWithNamespace } from '../db/queries/repositories';
import { findImageTags } from '../db/queries/tags';
import { repositories, type Build, type PaiRequestRecord } from '../db/schema';
import type { ProvenanceMode } from '../domain/builds';
import type { Platform } from '../domain/platforms';
import type { AppDeps } from './types';
import { requireNamespace, type AppEnv } from './auth';
import { ApiError } from './errors';
import { NamespaceName, RepositoryName } from './schemas';
import { startBuildOrFail } from './start-build';
import { assertRepositoryQuota, assertTimeoutWithinQuota, submissionLimiter } from './submission-limits';

export interface InlineBuildSpec {
  namespace: string;
  name: string;
  /** Inline Dockerfile, or null with `context`. */
  dockerfile: string | null;
  /** An uploaded local context (POST /contexts) in this repository. */
  context?: { digest: string; contextDir: string; dockerfilePath: string };
  platforms: Platform[];
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  target: string | null;
  tags: string[];
  /** Defaults: the repository's build settings. */
  noCache?: boolean;
  accelerated?: boolean;
  /** Default min. */
  provenance?: ProvenanceMode;
  timeoutMinutes: number;
  clientToken?: string;
  /** Identifies the request behind clientToken: a retry must hash the same. */
  requestHash: string;
  /** Settings of a repository created on demand (an existing one is left as it is). */
  newRepository?: { visibility?: 'public' | 'private'; description?: string };
  /** Refuse every tag that exists already, `latest` included (PAI `OverwriteImageTag: false`). */
  refuseExistingTags?: boolean;
  /** Encrypted registry credentials for pulling private bases (activities/registry-auth.ts). */
  registryAuthsEnc?: string | null;
  /** A PAI request's description of itself, shown by GET /imagebuilds/:id. */
  paiRequest?: PaiRequestRecord;
}

export interface BuildAcceptedBody {
  buildId: string;
  workflowId: string;
}

export function inlineBuilds(deps: AppDeps) {
  const { db } = deps;
  const limiter = submissionLimiter(deps);
  const quotaDefaults = deps.config.quotaDefaults;

  /** Starts the workflow; a build the engine cannot take is marked failed and answered with 503. */
  async function startOrFail(build: Build, repository: string): Promise<void> {
    if (await startBuildOrFail(deps, build, repository)) {
      throw new ApiError('service_unavailable', 'The build engine is unavailable; the build was marked failed', {
        buildId: build.id,
      });
    }
  }

  /** A clientToken seen before: the same request gets the same build, another request a 409. */
  async function replay(existing: Build, requestHash: string, repository: string): Promise<BuildAcceptedBody> {
    if (existing.requestHash !== requestHash) {
      throw new ApiError('conflict', 'clientToken was already used for a different request', {
        clientToken: existing.clientToken,
      });
    }
    // The first answer may have been lost after the insert but before the start; start is idempotent.
    if (existing.status === 'queued') await startOrFail(existing, repository);
    return { buildId: existing.id, workflowId: existing.workflowId };
  }

  /**
   * Tags that may not be written, checked at submit so a doomed build is never queued. Builds
   * still running hold their claims on immutable tags too (activities/control.ts), so a second
   * build for the same tag is refused here as well; the build's own final check closes the rest.
   */
  async function assertTagsWritable(tx: AppDeps['db'], repo: RepositoryWithNamespace, spec: InlineBuildSpec) {
    const existing = await findImageTags(tx, repo.id, spec.tags);
    if (spec.refuseExistingTags && existing.length) {
      const taken = existing.map((t) => t.tag);
      throw new ApiError('conflict', `OverwriteImageTag is false and these tags exist already: ${taken.join(', ')}`, { tags: taken });
    }
    if (!repo.immutableTags) return;
    const taken = existing.filter((t) => t.tag !== 'latest').map((t) => t.tag);
    if (taken.length) {
      throw new ApiError('conflict', `The repository has immutable tags and these exist already: ${taken.join(', ')}`, {
        tags: taken,
      });
    }
  }

  async function submit(c: Context<AppEnv>, spec: InlineBuildSpec): Promise<BuildAcceptedBody> {
    const { namespace, name } = spec;
    const path = `${namespace}/${name}`;
    requireNamespace(c, namespace);
    if (spec.clientToken) {
      const existing = await findBuildByClientToken(db, namespace, spec.clientToken);
      if (existing) return replay(existing, spec.requestHash, path);
    }
    // A retry of an accepted request (above) is free; a new submission spends a token.
    limiter.take(namespace);

    const id = randomUUID();
    const outcome = await db.transaction(async (tx) => {
      let ns = await getNamespaceByName(tx, namespace);
      if (!ns) {
        if (!NamespaceName.safeParse(namespace).success) throw new ApiError('not_found', `Namespace "${namespace}" does not exist`);
        ns = await ensureNamespace(tx, namespace);
      }
      assertTimeoutWithinQuota(ns, spec.timeoutMinutes, quotaDefaults);
      let repo = await getRepositoryByPath(tx, namespace, name);
      if (!repo) {
        if (!RepositoryName.safeParse(name).success) throw new ApiError('not_found', `Repository ${path} does not exist and cannot be created`);
        if (!ns.autoCreateRepository) {
          throw new ApiError(
            'not_found',
            `Repository ${path} does not exist and namespace "${namespace}" does not create repositories on demand`,
          );
        }
        await assertRepositoryQuota(tx, ns, quotaDefaults);
        // Race-safe: a concurrent creator wins and both see the same row.
        await tx
          .insert(repositories)
          .values({
            namespaceId: ns.id,
            name,
            visibility: spec.newRepository?.visibility ?? ns.defaultVisibility,
            immutableTags: ns.defaultImmutableTags,
            acceleratedImages: ns.defaultAcceleratedImages,
            description: spec.newRepository?.description ?? '',
          })
          .onConflictDoNothing({ target: [repositories.namespaceId, repositories.name] });
        repo = (await getRepositoryByPath(tx, namespace, name))!;
      }
      await assertTagsWritable(tx, repo, spec);
      const context = spec.context ? await useBuildContext(tx, path, spec.context.digest) : undefined;
      if (spec.context && !context) {
        throw new ApiError(
          'not_found',
          `Context ${spec.context.digest} was not uploaded to ${path} or has expired; upload it with POST /api/v1/contexts?repository=${path}`,
          { digest: spec.context.digest },
        );
      }
      const { build, created } = await insertBuild(tx, {
        id,
        repositoryId: repo.id,
        status: 'queued',
        trigger: 'api',
        creationMethod: 'manual build',
        dockerfile: spec.dockerfile,
        ...(spec.context && context
          ? {
              contextDigest: context.digest,
              contextSize: context.size,
              contextDir: spec.context.contextDir,
              dockerfilePath: spec.context.dockerfilePath,
            }
          : {}),
        platforms: spec.platforms,
        buildArgs: spec.buildArgs,
        labels: spec.labels,
        target: spec.target,
        tags: spec.tags,
        noCache: spec.noCache ?? repo.noCache,
        accelerated: spec.accelerated ?? repo.acceleratedImages,
        provenance: spec.provenance ?? 'min',
        paiRequest: spec.paiRequest ?? null,
        timeoutMinutes: spec.timeoutMinutes,
        clientToken: spec.clientToken ?? null,
        clientTokenNamespaceId: spec.clientToken ? ns.id : null,
        requestHash: spec.requestHash,
        registryAuthsEnc: spec.registryAuthsEnc ?? null,
        overwriteTags: !spec.refuseExistingTags,
        workflowId: `build-${id}`,
      });
      // A concurrent request with the same token won the insert; a conflicting one must leave nothing behind.
      if (!created && build.requestHash !== spec.requestHash) {
        throw new ApiError('conflict', 'clientToken was already used for a different request', {
          clientToken: build.clientToken,
        });
      }
      return { build, created };
    });

    if (!outcome.created) return replay(outcome.build, spec.requestHash, path);
    await startOrFail(outcome.build, path);
    return { buildId: outcome.build.id, workflowId: outcome.build.workflowId };
  }

  return { submit };
}
