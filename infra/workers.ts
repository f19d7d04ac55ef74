import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@temporalio/client';
import {
  DefaultLogger,
  NativeConnection,
  Runtime,
  Worker,
  bundleWorkflowCode,
  type ActivityInterceptorsFactory,
  type LogLevel,
  type WorkflowBundle,
} from '@temporalio/worker';
import { createAccelerateActivities } from '../activities/accelerate';
import { createBuildActivities } from '../activities/build';
import { createCommitStatusActivities } from '../activities/commit-status';
import type { GitHostProvider } from '../domain/git-hosts';
import { createContextAccess } from '../activities/context';
import { createControlActivities } from '../activities/control';
import { createNotifyActivities, createTemporalDeliveryStarter } from '../activities/notify';
import { createTemporalBuildStarter } from '../api/build-starter';
import { startScheduledRuleBuild } from '../api/rule-builds';
import { createSchedulingActivities } from '../activities/scheduling';
import type { RegistryClient } from '../activities/registry';
import { createPushActivities } from '../activities/push';
import { createSourceAccess } from '../activities/source';
import type { Db } from '../db/client';
import type { Component } from '../env';
import { PLATFORMS, platformSlug, type Platform } from '../domain/platforms';
import { rootLogger } from '../observability/log';
import { buildTaskQueue, CONTROL_TASK_QUEUE } from '../domain/temporal';
import { claimWorkRoot } from './work-dirs';
import type { NamespaceQuotas } from '../domain/quotas';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WORKFLOWS_PATH = createRequire(import.meta.url).resolve(path.join(here, '../workflows/index.ts'));

let bundlePromise: Promise<WorkflowBundle> | undefined;

/** Bundles the workflow code once per process (webpack takes seconds; workers share it). */
export function workflowBundle(): Promise<WorkflowBundle> {
  bundlePromise ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundlerLogger });
  return bundlePromise;
}

const quietBundlerLogger = {
  log() {},
  trace() {},
  debug() {},
  info() {},
  warn(message: string, meta?: unknown) {
    console.warn(message, meta ?? '');
  },
  error(message: string, meta?: unknown) {
    console.error(message, meta ?? '');
  },
};

export interface WorkerOptions {
  /** The connection the workers poll on; the caller owns it (a Client may share it). */
  connection: NativeConnection;
  namespace: string;
  db: Db;
  registry: RegistryClient;
  /** host:port images are pushed to (as buildkitd sees it). */
  registryHost: string;
  buildctl: string;
  buildkit: Record<Platform, string>;
  workRoot: string;
  components: Component[];
  /** Decrypts stored git tokens inside activities. */
  secretKey: string;
  /** Mint each build its own credential for Kiln's registry (see activities/build.ts). */
  issueBuildCredentials?: boolean;
  /** Serve this dedicated build pool instead of the shared one. */
  buildPool?: string;
  /** KILN_MAX_LOG_BYTES for the build activities. */
  maxLogBytes?: number;
  /** Concurrent builds one build worker runs. */
  buildConcurrency?: number;
  /** KILN_PUBLIC_URL, for the build links in commit statuses (read when a status is sent). */
  publicUrl?: () => string;
  /** KILN_GIT_API_URLS: a git host API base per provider instead of the one derived from the clone URL. */
  gitApiUrls?: Partial<Record<GitHostProvider, string>>;
  /** KILN_NAMESPACE_MAX_*: quotas of namespaces that have none of their own. */
  quotaDefaults?: NamespaceQuotas;
  /** KILN_MAX_CONCURRENT_BUILDS: builds running at once per build pool, all namespaces together. */
  buildCapacity?: number;
  /** The build scheduler's workflow id (default `kiln-build-scheduler`). */
  schedulerWorkflowId?: string;
  controlActivities?: Partial<Parameters<typeof createControlActivities>[0]>;
  buildActivities?: Partial<Parameters<typeof createBuildActivities>[0]>;
}

export interface RunningWorkers {
  workers: Worker[];
  /** Resolves when every worker has stopped; rejects if one crashes. */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

let runtimeInstalled = false;

export const BUILD_HEARTBEAT_THROTTLE = '1 second';

const SEVERITY: Record<LogLevel, number> = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4 };
const PINO_LEVEL = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' } as const;

/**
 * Temporal's logs go to Kiln's structured log. The SDK and core log worker life at INFO: noise
 * next to the API's own output, so only `level` and above of those pass; lines the activities
 * write themselves (`Context.current().log`, component `activity`, with their build and workflow
 * ids) pass at INFO too, unless `level` is ERROR (tests, where expected failures would be noise).
 */
export function installQuietRuntime(level: 'WARN' | 'ERROR' = 'WARN'): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const log = rootLogger().child({ component: 'temporal' });
  const activityMin = level === 'ERROR' ? SEVERITY.ERROR : SEVERITY.INFO;
  Runtime.install({
    logger: new DefaultLogger('DEBUG', (entry) => {
      const meta = (entry.meta ?? {}) as Record<string, unknown>;
      const min = meta.sdkComponent === 'activity' ? activityMin : SEVERITY[level];
      if (SEVERITY[entry.level] < min) return;
      // Build workers run activities only; the SDK warns about that at every start.
      if (entry.message.startsWith('No workflows registered')) return;
      // pino serializes Errors (message, stack) under `err` only.
      const { error, ...rest } = meta;
      log[PINO_LEVEL[entry.level]](error instanceof Error ? { ...rest, err: error } : meta, entry.message);
    }),
  });
}

/** Every activity log line names its build: Kiln's workflow ids are `build-<buildId>`. */
export const buildIdLogAttributes: ActivityInterceptorsFactory = (ctx) => ({
  outbound: {
    getLogAttributes(input, next) {
      const buildId = /^build-(.+)$/.exec(ctx.info.workflowExecution?.workflowId ?? '')?.[1];
      return next(buildId ? { ...input, buildId } : input);
    },
  },
});

/** Notification deliveries and scheduled builds start workflows: a client on the workers' connection. */
function notifyActivities(opts: WorkerOptions) {
  const client = new Client({ connection: opts.connection, namespace: opts.namespace });
  return createNotifyActivities({
    db: opts.db,
    secretKey: opts.secretKey,
    registryHost: opts.registryHost,
    deliveries: createTemporalDeliveryStarter(client),
    startScheduledRuleBuild: (input) => startScheduledRuleBuild({ db: opts.db, builds: createTemporalBuildStarter(client) }, input),
  });
}

/** Starts the control worker and one build worker per platform, as `components` selects. */
export async function startWorkers(opts: WorkerOptions): Promise<RunningWorkers> {
  const { connection } = opts;
  const source = createSourceAccess({ db: opts.db, secretKey: opts.secretKey });
  const contexts = createContextAccess({ registry: opts.registry });
  const workers: Worker[] = [];
  if (opts.components.includes('control')) {
    workers.push(
      await Worker.create({
        connection,
        namespace: opts.namespace,
        taskQueue: CONTROL_TASK_QUEUE,
        workflowBundle: await workflowBundle(),
        // The index pushes learn of a cancel in a heartbeat's answer, as the builds do.
        maxHeartbeatThrottleInterval: BUILD_HEARTBEAT_THROTTLE,
        defaultHeartbeatThrottleInterval: BUILD_HEARTBEAT_THROTTLE,
        interceptors: { activity: [buildIdLogAttributes] },
        activities: {
          ...createControlActivities({
            db: opts.db,
            registry: opts.registry,
            resolveSource: source.resolveSource,
            ...opts.controlActivities,
          }),
          ...createAccelerateActivities({ db: opts.db, registry: opts.registry }),
          ...notifyActivities(opts),
          ...createPushActivities({ db: opts.db, source }),
          ...createCommitStatusActivities({
            db: opts.db,
            secretKey: opts.secretKey,
            publicUrl: opts.publicUrl ?? (() => 'http://127.0.0.1:3000'),
            apiUrls: opts.gitApiUrls,
          }),
          ...createSchedulingActivities({
            db: opts.db,
            client: new Client({ connection, namespace: opts.namespace }),
            quotaDefaults: opts.quotaDefaults,
            capacity: opts.buildCapacity,
            schedulerWorkflowId: opts.schedulerWorkflowId,
          }),
        },
      }),
    );
  }
  const buildPlatforms = PLATFORMS.filter((p) => opts.components.includes(`build-${platformSlug(p)}` as Component));
  const workRoot = buildPlatforms.length ? await claimWorkRoot(opts.workRoot) : undefined;
  if (workRoot?.removed.length) rootLogger().child({ component: 'worker' }).warn({ removed: workRoot.removed }, 'removed work directories left by stopped workers');
  for (const platform of buildPlatforms) {
    workers.push(
      await Worker.create({
        connection,
        namespace: opts.namespace,
        taskQueue: buildTaskQueue(platform, opts.buildPool),
        maxConcurrentActivityTaskExecutions: opts.buildConcurrency ?? 8,
        // Cancellation reaches an activity only in a heartbeat's answer; by default heartbeats are
        // throttled to 80% of heartbeatTimeout (24 s), far too slow for "canceled within seconds".
        maxHeartbeatThrottleInterval: BUILD_HEARTBEAT_THROTTLE,
        defaultHeartbeatThrottleInterval: BUILD_HEARTBEAT_THROTTLE,
        interceptors: { activity: [buildIdLogAttributes] },
        activities: createBuildActivities({
          db: opts.db,
          buildctl: opts.buildctl,
          buildkitAddr: opts.buildkit[platform],
          registry: opts.registryHost,
          workRoot: workRoot!.dir,
          checkoutSource: source.checkoutSource,
          fetchContext: contexts.fetchContext,
          secretKey: opts.secretKey,
          issueBuildCredentials: opts.issueBuildCredentials,
          buildPool: opts.buildPool,
          maxLogBytes: opts.maxLogBytes,
          ...opts.buildActivities,
        }),
      }),
    );
  }
  const done = Promise.all(workers.map((w) => w.run())).then(() => undefined);
  return {
    workers,
    done,
    async shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await done.catch(() => undefined);
    },
  };
}
