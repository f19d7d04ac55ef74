import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import type { Db } from '../db/client';
import { updateBuildPlatform } from '../db/queries/builds';
import type { PlatformBuildRequest, PlatformImage } from '../workflows/types';
import { classifyBuildFailure } from './build-errors';
import { runBuildctl } from './buildctl';
import { LogSink } from './log-sink';
import { ProgressTracker } from './progress';

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
}

export interface BuildContext {
  contextDir: string;
  dockerfileDir: string;
  dockerfileName: string;
}

const HEARTBEAT_MS = 5_000;

export function createBuildActivities(deps: BuildActivityDeps) {
  return {
    /**
     * Builds one platform's image with buildctl and pushes it by digest. Streams progress into the
     * build log, heartbeats so cancellation can reach it, and on cancel stops the solve.
     */
    async buildPlatformImage(req: PlatformBuildRequest): Promise<PlatformImage> {
      const ctx = Context.current();
      const { db } = deps;
      const log = new LogSink(db, req.buildId, req.platform);
      const tracker = new ProgressTracker();
      await mkdir(deps.workRoot, { recursive: true });
      const workDir = await mkdtemp(path.join(deps.workRoot, `${req.buildId.slice(0, 8)}-${req.platform.replace('/', '-')}-`));
      const heartbeat = setInterval(() => ctx.heartbeat({ steps: tracker.steps().length }), HEARTBEAT_MS);
      try {
        await updateBuildPlatform(db, req.buildId, req.platform, { status: 'running', startedAt: new Date(), finishedAt: null });
        const attempt = ctx.info.attempt > 1 ? ` (attempt ${ctx.info.attempt})` : '';
        log.push([`==> building ${req.platform} on ${hostname()}${attempt}`]);
        ctx.heartbeat();

        const context = await prepareContext(req, workDir, deps, ctx.cancellationSignal);
        const metadataFile = path.join(workDir, 'metadata.json');
        const exit = await runBuildctl({
          buildctl: deps.buildctl,
          args: buildctlArgs(req, context, deps, metadataFile),
          signal: ctx.cancellationSignal,
          onLine: (line) => {
            log.push(tracker.push(line));
          },
        });
        log.push(tracker.flush());
        const steps = tracker.steps();
        const cacheHits = tracker.cacheHits();

        if (exit.canceled) {
          log.push([`==> ${req.platform} canceled`]);
          await updateBuildPlatform(db, req.buildId, req.platform, { status: 'canceled', finishedAt: new Date(), steps, cacheHits });
          throw new CancelledFailure('build canceled');
        }
        if (exit.code !== 0) {
          const failure = classifyBuildFailure(tracker.plainOutput, exit);
          if (failure.retryable) {
            log.push([`==> ${req.platform}: transient failure, will retry: ${failure.message}`]);
            throw new Error(failure.message);
          }
          log.push([`==> ${req.platform} failed: ${failure.message}`]);
          await updateBuildPlatform(db, req.buildId, req.platform, { status: 'failed', finishedAt: new Date(), steps, cacheHits });
          throw ApplicationFailure.create({ type: failure.code, message: failure.message, nonRetryable: true });
        }

        const meta = JSON.parse(await readFile(metadataFile, 'utf8')) as {
          'containerimage.digest': string;
          'containerimage.descriptor': { mediaType: string; digest: string; size: number };
        };
        const descriptor = meta['containerimage.descriptor'];
        log.push([`==> ${req.platform} pushed ${descriptor.digest} (${cacheHits} cached steps)`]);
        await updateBuildPlatform(db, req.buildId, req.platform, {
          status: 'succeeded',
          digest: descriptor.digest,
          finishedAt: new Date(),
          steps,
          cacheHits,
        });
        return { platform: req.platform, digest: descriptor.digest, mediaType: descriptor.mediaType, size: descriptor.size, cacheHits };
      } finally {
        clearInterval(heartbeat);
        await log.flush();
        await rm(workDir, { recursive: true, force: true });
      }
    },
  };
}

export type BuildActivities = ReturnType<typeof createBuildActivities>;

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
  if (!deps.checkoutSource) {
    throw ApplicationFailure.create({ type: 'invalid_source', message: 'This worker cannot build git sources', nonRetryable: true });
  }
  return deps.checkoutSource(req, workDir, signal);
}

export function buildctlArgs(req: PlatformBuildRequest, context: BuildContext, deps: BuildActivityDeps, metadataFile: string): string[] {
  const args = [
    '--addr', deps.buildkitAddr,
    'build',
    '--progress=rawjson',
    '--frontend', 'dockerfile.v0',
    '--local', `context=${context.contextDir}`,
    '--local', `dockerfile=${context.dockerfileDir}`,
    '--opt', `filename=${context.dockerfileName}`,
    '--opt', `platform=${req.platform}`,
    '--output', `type=image,name=${deps.registry}/${req.repository},push=true,push-by-digest=true,oci-mediatypes=true`,
    '--metadata-file', metadataFile,
  ];
  for (const [k, v] of Object.entries(req.buildArgs)) args.push('--opt', `build-arg:${k}=${v}`);
  for (const [k, v] of Object.entries(req.labels)) args.push('--opt', `label:${k}=${v}`);
  if (req.target) args.push('--opt', `target=${req.target}`);
  if (req.noCache) args.push('--no-cache');
  return args;
}
