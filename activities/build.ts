import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { CancelledFailure, Context } from '@temporalio/activity';
import type { Db } from '../db/client';
import { updateBuildPlatform } from '../db/queries/builds';
import type { BuildStep } from '../db/schema';
import type { AcceleratedPlatformImage, ImageDescriptor, PlatformImage } from '../domain/images';
import type { PlatformBuildRequest } from './build-plan';
import { mintBuildCredential, REGISTRY_BUILD_USER } from '../domain/registry-access';
import { activityLog } from '../observability/log';
import { buildMetrics } from '../observability/metrics';
import { classifyBuildFailure } from './build-errors';
import { runBuildctl, type BuildctlExit } from './buildctl';
import { dbLogStore, LogSink } from './log-sink';
import { ProgressTracker } from './progress';
import { registryAuthEnv } from './registry-auth';
import { resolvePlatformPush } from './attestations';
import { RegistryClient } from './registry';
import { userFault } from '../domain/errors';
import { baseImagesFromSteps } from '../domain/oci';

export interface BuildActivityDeps {
  db: Db;
  /** buildctl binary. */
  buildctl: string;
  /** This worker's buildkitd, e.g. `unix:///run/buildkit/buildkitd.sock` or `tcp://host:1234`. */
  buildkitAddr: string;
  /** Registry host[:port] the images are pushed to. */
  registry: string;
  /** Per-build work dirs go here; removed after each build. */
  workRoot: string;
  /** Prepares a git checkout for `source.kind === 'git'`; returns context and Dockerfile paths. */
  checkoutSource?: (req: PlatformBuildRequest, workDir: string, signal: AbortSignal) => Promise<BuildContext>;
  /** Unpacks an uploaded local context for `source.kind === 'context'` (activities/context.ts). */
  fetchContext?: (req: PlatformBuildRequest, workDir: string, signal: AbortSignal) => Promise<BuildContext>;
  /** Decrypts a build's registry credentials (PAI RegistryAuths) for pulling private bases. */
  secretKey?: string;
  /**
   * The registry is Kiln's own (token auth with Kiln as issuer): each build gets a credential of its
   * own for it, scoped to its namespace (domain/registry-access.ts). Needs `secretKey`.
   */
  issueBuildCredentials?: boolean;
  /** The dedicated pool this worker serves (named in the build log); unset: the shared pool. */
  buildPool?: string;
  /** KILN_MAX_LOG_BYTES: log bytes a whole build may store. */
  maxLogBytes?: number;
}

export const DEFAULT_MAX_LOG_BYTES = 64 * 1024 * 1024;

export interface BuildContext {
  contextDir: string;
  dockerfileDir: string;
  dockerfileName: string;
}

// Cancellation reaches the activity only in a heartbeat's answer: beat often so a cancel lands fast.
const HEARTBEAT_MS = 1_000;

export function createBuildActivities(deps: BuildActivityDeps) {
  return {
    /**
     * Builds one platform's image with buildctl and pushes it by digest; with `accelerated`, then
     * pushes its eStargz variant from the same BuildKit cache. Streams progress into the build
     * log, heartbeats so cancellation can reach it, and on cancel stops the solve.
     */
    async buildPlatformImage(req: PlatformBuildRequest): Promise<PlatformImage> {
      // The `building` phase, per platform; outcome `error` includes cancels and retried attempts.
      const endPhase = buildMetrics().phaseDuration.startTimer({ phase: 'building', platform: req.platform });
      let outcome = 'error';
      const ctx = Context.current();
      const { db } = deps;
      const log = new LogSink(dbLogStore(db), req.buildId, req.platform, { maxBuildBytes: deps.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES });
      let tracker = new ProgressTracker();
      await mkdir(deps.workRoot, { recursive: true });
      const workDir = await mkdtemp(path.join(deps.workRoot, `${req.buildId.slice(0, 8)}-${req.platform.replace('/', '-')}-`));
      const mainTracker = tracker;
      let savedProgress = '';
      let progressWrite: Promise<void> = Promise.resolve();
      let progressStopped = false;
      // Per-step progress is saved as it changes so GET /builds/:id shows it while the build runs.
      const saveProgress = () => {
        const steps = mainTracker.steps();
        const key = `${steps.length}:${steps.filter((st) => st.completedAt).length}:${steps.reduce((n, st) => n + (st.logBytes ?? 0), 0)}`;
        if (progressStopped || key === savedProgress) return;
        savedProgress = key;
        progressWrite = progressWrite.then(() =>
          progressStopped
            ? undefined
            : updateBuildPlatform(db, req.buildId, req.platform, { steps, cacheHits: mainTracker.cacheHits() }).catch(() => {
                savedProgress = '';
              }),
        );
      };
      /** Before the final platform record, so a late progress write cannot overwrite it. */
      const stopProgress = () => {
        progressStopped = true;
        return progressWrite;
      };
      const heartbeat = setInterval(() => {
        ctx.heartbeat({ steps: tracker.steps().length });
        // A step that ended while nothing else arrives still gets its DONE line.
        log.pushBytes(tracker.tick());
        if (tracker === mainTracker) saveProgress();
      }, HEARTBEAT_MS);
      try {
        const attempt = ctx.info.attempt > 1 ? ` (attempt ${ctx.info.attempt})` : '';
        const pool = deps.buildPool ? `pool ${deps.buildPool}` : 'shared pool';
        // The worker as Temporal names it (pid@host): which of several workers on one host took the build.
        log.pushLines([`==> building ${req.platform} on ${process.pid}@${hostname()} (${pool})${attempt}`]);
        ctx.heartbeat();
        // Independent of each other, and all before buildctl can start: at once, not in turn. All
        // settle before a failure is thrown, so nothing still writes into workDir as it is removed.
        const kilnLogin = kilnRegistryLogin(req, deps, ctx.info);
        // Reads back what buildctl pushed (the image and its attestation), with the build's own login.
        const registry = new RegistryClient(deps.registry, kilnLogin);
        const [running, prepared, auth] = await Promise.allSettled([
          updateBuildPlatform(db, req.buildId, req.platform, { status: 'running', startedAt: new Date(), finishedAt: null }),
          prepareContext(req, workDir, deps, ctx.cancellationSignal),
          registryAuthEnv({ db, secretKey: deps.secretKey, buildId: req.buildId, workDir, kilnRegistry: kilnLogin }),
        ]);
        for (const r of [prepared, auth, running]) if (r.status === 'rejected') throw r.reason;
        const context = (prepared as PromiseFulfilledResult<BuildContext>).value;
        const env = (auth as PromiseFulfilledResult<NodeJS.ProcessEnv | undefined>).value;
        const metadataFile = path.join(workDir, 'metadata.json');
        const solve = async (args: string[]) => {
          const exit = await runBuildctl({
            buildctl: deps.buildctl,
            args,
            signal: ctx.cancellationSignal,
            env,
            onLine: (line) => log.pushBytes(tracker.push(line)),
          });
          log.pushBytes(tracker.flush());
          return exit;
        };
        /** Ends the activity for a canceled or failed solve: records it, then throws. */
        const fail = async (exit: BuildctlExit, steps: BuildStep[], cacheHits: number): Promise<never> => {
          await stopProgress();
          if (exit.canceled) {
            log.pushLines([`==> ${req.platform} canceled`]);
            await updateBuildPlatform(db, req.buildId, req.platform, { status: 'canceled', finishedAt: new Date(), steps, cacheHits });
            throw new CancelledFailure('build canceled');
          }
          const failure = classifyBuildFailure(tracker.plainOutput, exit);
          if (failure.retryable) {
            log.pushLines([`==> ${req.platform}: transient failure, will retry: ${failure.message}`]);
            throw new Error(failure.message);
          }
          log.pushLines([`==> ${req.platform} failed: ${failure.message}`]);
          await updateBuildPlatform(db, req.buildId, req.platform, { status: 'failed', finishedAt: new Date(), steps, cacheHits });
          throw userFault(failure.code, failure.message);
        };

        const exit = await solve(buildctlArgs(req, context, deps, metadataFile));
        const steps = tracker.steps();
        const cacheHits = tracker.cacheHits();
        if (exit.canceled || exit.code !== 0) return await fail(exit, steps, cacheHits);
        const { image: descriptor, attestation } = await resolvePlatformPush(registry, req.repository, await readDescriptor(metadataFile));
        log.pushLines([
          `==> ${req.platform} pushed ${descriptor.digest} (${cacheHits} cached steps)`,
          ...(attestation ? [`==> ${req.platform} provenance (mode=${req.provenance ?? 'min'}) attestation ${attestation.digest}`] : []),
        ]);

        let accelerated: AcceleratedPlatformImage | undefined;
        if (req.accelerated) {
          // A second solve of the same definition on the same buildkitd: every step is a cache hit
          // of the solve that just ran, so only the layers are recompressed (as eStargz) and
          // pushed. Its progress shows that no step ran twice; a step that did is reported.
          log.pushLines([`==> ${req.platform}: eStargz variant from the same BuildKit cache`]);
          tracker = new ProgressTracker({ firstIndex: tracker.nextIndex });
          const accMetadataFile = path.join(workDir, 'metadata-estargz.json');
          const accExit = await solve(buildctlArgs(req, context, deps, accMetadataFile, 'estargz'));
          if (accExit.canceled || accExit.code !== 0) return await fail(accExit, steps, cacheHits);
          const accPush = await resolvePlatformPush(registry, req.repository, await readDescriptor(accMetadataFile));
          const accDescriptor = { ...accPush.image, ...(accPush.attestation ? { attestation: accPush.attestation } : {}) };
          const passSteps = dockerfileSteps(tracker.steps());
          const rerun = passSteps.filter((s) => !s.cached);
          accelerated = { ...accDescriptor, steps: passSteps.length, cacheHits: passSteps.length - rerun.length };
          log.pushLines([
            `==> ${req.platform} eStargz variant pushed ${accDescriptor.digest} (${accelerated.cacheHits} of ${passSteps.length} steps from cache)`,
            ...(rerun.length ? [`==> WARNING: the eStargz pass re-ran ${rerun.map((s) => s.name).join('; ')}`] : []),
          ]);
        }

        const baseImages = baseImagesFromSteps(steps.map((s) => s.name));
        if (baseImages.length) log.pushLines([`==> ${req.platform} base images: ${baseImages.map((b) => `${b.image}@${b.digest}`).join(', ')}`]);
        await stopProgress();
        await updateBuildPlatform(db, req.buildId, req.platform, {
          status: 'succeeded',
          baseImages,
          digest: descriptor.digest,
          acceleratedDigest: accelerated?.digest ?? null,
          attestationDigest: attestation?.digest ?? null,
          finishedAt: new Date(),
          steps,
          cacheHits,
        });
        // Dockerfile steps (`[stage n/m]`), as cacheHits counts them.
        const dockerSteps = steps.filter((st) => /^\[.*\d+\/\d+\]/.test(st.name)).length;
        const metrics = buildMetrics();
        metrics.steps.inc({ platform: req.platform, cached: 'true' }, cacheHits);
        metrics.steps.inc({ platform: req.platform, cached: 'false' }, Math.max(0, dockerSteps - cacheHits));
        activityLog().info('platform image pushed', { platform: req.platform, digest: descriptor.digest, steps: steps.length, cacheHits });
        outcome = 'ok';
        return { platform: req.platform, ...descriptor, cacheHits, ...(attestation ? { attestation } : {}), ...(accelerated ? { accelerated } : {}) };
      } finally {
        endPhase({ outcome });
        clearInterval(heartbeat);
        await Promise.all([log.flush(), rm(workDir, { recursive: true, force: true })]);
      }
    },
  };
}

async function readDescriptor(metadataFile: string): Promise<ImageDescriptor> {
  const meta = JSON.parse(await readFile(metadataFile, 'utf8')) as {
    'containerimage.descriptor': { mediaType: string; digest: string; size: number };
  };
  const { digest, mediaType, size } = meta['containerimage.descriptor'];
  return { digest, mediaType, size };
}

/** The steps of the Dockerfile that do work (`[stage n/m] RUN|COPY|...`); FROM only resolves its base. */
export function dockerfileSteps(steps: BuildStep[]): BuildStep[] {
  return steps.filter((s) => /^\[[^\]]*\d+\/\d+\] /.test(s.name) && !/^\[[^\]]*\] FROM /.test(s.name));
}

export type BuildActivities = ReturnType<typeof createBuildActivities>;

/** The dockerfile frontend's build arg that prefixes every cache mount id. */
export const CACHE_MOUNT_NS_ARG = 'BUILDKIT_CACHE_MOUNT_NS';

/** `ns/name` → the cache-mount namespace of its builds: one per Kiln namespace. */
export function cacheMountNamespace(repository: string): string {
  return `kiln-ns/${repository.split('/')[0]}`;
}

/** This build's own login for Kiln's registry, valid a little longer than the activity may run. */
function kilnRegistryLogin(req: PlatformBuildRequest, deps: BuildActivityDeps, info: { startToCloseTimeoutMs: number }) {
  if (!deps.issueBuildCredentials || !deps.secretKey) return undefined;
  const expiresAt = Math.floor((Date.now() + info.startToCloseTimeoutMs) / 1000) + 600;
  const password = mintBuildCredential(deps.secretKey, {
    buildId: req.buildId,
    namespace: req.repository.split('/')[0]!,
    repository: req.repository,
    expiresAt,
  });
  return { host: deps.registry, username: REGISTRY_BUILD_USER, password };
}

async function prepareContext(
  req: PlatformBuildRequest,
  workDir: string,
  deps: BuildActivityDeps,
  signal: AbortSignal,
): Promise<BuildContext> {
  if (req.source.kind === 'inline') {
    // An inline Dockerfile has no other files: its context is an empty directory.
    const contextDir = path.join(workDir, 'context');
    const dockerfileDir = path.join(workDir, 'dockerfile');
    await mkdir(contextDir);
    await mkdir(dockerfileDir);
    await writeFile(path.join(dockerfileDir, 'Dockerfile'), req.source.dockerfile);
    return { contextDir, dockerfileDir, dockerfileName: 'Dockerfile' };
  }
  const prepare = req.source.kind === 'context' ? deps.fetchContext : deps.checkoutSource;
  if (!prepare) {
    throw userFault('invalid_source', `This worker cannot build ${req.source.kind} sources`);
  }
  return prepare(req, workDir, signal);
}

/**
 * The registry cache of one repository and platform: `<registry>/<ns>/<name>/buildcache:<os>-<arch>`.
 * A repository of its own beside the image's (never a tag of it), so cache manifests never show
 * up as image versions, in the image's tag list, in registry notifications (Kiln records
 * `ns/name` repositories only) or in immutable-tag checks. One ref per platform, as each
 * platform's build exports its own (`mode=max`) cache and would overwrite a shared one.
 */
export function registryCacheRef(registry: string, repository: string, platform: string): string {
  return `${registry}/${repository}/buildcache:${platform.replace(/\//g, '-')}`;
}

/**
 * A SLSA provenance attestation for the image, made by BuildKit in the daemon (it pulls nothing).
 * For a git build the repository and the commit go into its `vcs` metadata, as buildx records
 * them: Kiln checks the commit out itself, so BuildKit sees only a local directory.
 */
export function provenanceArgs(req: PlatformBuildRequest): string[] {
  const args = ['--opt', `attest:provenance=mode=${req.provenance ?? 'min'}`];
  if (req.source.kind === 'git') {
    args.push('--opt', `vcs:source=${req.source.url}`, '--opt', `vcs:revision=${req.source.commit}`);
    const dir = req.source.contextDir.replace(/^\/+|\/+$/g, '');
    args.push('--opt', `vcs:localdir:context=${dir || '.'}`);
  }
  return args;
}

/**
 * buildctl arguments for one platform. `image` is the build itself: push by digest, import the
 * registry cache (unless noCache) and export it (`mode=max`: every step, so a fresh build host
 * gets hits on all of them). `estargz` is the accelerated pass that follows it on the same
 * buildkitd: the same definition (so the same cache keys), an eStargz output, no export (the
 * build just exported) and never `--no-cache`, which would run every step again.
 */
export function buildctlArgs(
  req: PlatformBuildRequest,
  context: BuildContext,
  deps: Pick<BuildActivityDeps, 'buildkitAddr' | 'registry'>,
  metadataFile: string,
  variant: 'image' | 'estargz' = 'image',
): string[] {
  const image = `type=image,name=${deps.registry}/${req.repository},push=true,push-by-digest=true,oci-mediatypes=true`;
  const cacheRef = registryCacheRef(deps.registry, req.repository, req.platform);
  const args = [
    '--addr', deps.buildkitAddr,
    'build',
    '--progress=rawjson',
    '--frontend', 'dockerfile.v0',
    '--local', `context=${context.contextDir}`,
    '--local', `dockerfile=${context.dockerfileDir}`,
    '--opt', `filename=${context.dockerfileName}`,
    '--opt', `platform=${req.platform}`,
    '--output', variant === 'estargz' ? `${image},compression=estargz,force-compression=true` : image,
    '--metadata-file', metadataFile,
  ];
  for (const [k, v] of Object.entries(req.buildArgs)) if (k !== CACHE_MOUNT_NS_ARG) args.push('--opt', `build-arg:${k}=${v}`);
  // Cache mounts (`RUN --mount=type=cache`) live in the daemon, shared by every build it runs:
  // prefixing their ids with the namespace keeps one tenant from reading or poisoning another's.
  args.push('--opt', `build-arg:${CACHE_MOUNT_NS_ARG}=${cacheMountNamespace(req.repository)}`);
  for (const [k, v] of Object.entries(req.labels)) args.push('--opt', `label:${k}=${v}`);
  if (req.target) args.push('--opt', `target=${req.target}`);
  args.push(...provenanceArgs(req));
  if (!req.noCache) args.push('--import-cache', `type=registry,ref=${cacheRef}`);
  if (variant === 'image') {
    if (req.noCache) args.push('--no-cache');
    // The image is what the user asked for; a cache that cannot be written must not fail it
    // (BuildKit then reports the export step with its error in the log).
    args.push('--export-cache', `type=registry,ref=${cacheRef},mode=max,ignore-error=true`);
  }
  return args;
}
