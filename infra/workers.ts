import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, NativeConnection, Runtime, Worker, bundleWorkflowCode, type WorkflowBundle } from '@temporalio/worker';
import { createAccelerateActivities } from '../activities/accelerate';
import { createBuildActivities } from '../activities/build';
import { createContextAccess } from '../activities/context';
import { createControlActivities } from '../activities/control';
import type { RegistryClient } from '../activities/registry';
import { createSourceAccess } from '../activities/source';
import type { Db } from '../db/client';
import type { Component, Platform } from '../env';
import { buildTaskQueue, CONTROL_TASK_QUEUE } from '../workflows/types';

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

/** Temporal's core logs at INFO by default: noise next to the API's own output. */
export function installQuietRuntime(level: 'WARN' | 'ERROR' = 'WARN'): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({
    logger: new DefaultLogger(level, (entry) => {
      // Build workers run activities only; the SDK warns about that at every start.
      if (entry.message.startsWith('No workflows registered')) return;
      console.error(`[temporal ${entry.level}] ${entry.message}`, entry.meta ?? '');
    }),
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
        activities: {
          ...createControlActivities({
            db: opts.db,
            registry: opts.registry,
            resolveSource: source.resolveSource,
            ...opts.controlActivities,
          }),
          ...createAccelerateActivities({ db: opts.db, registry: opts.registry }),
        },
      }),
    );
  }
  for (const platform of ['linux/amd64', 'linux/arm64'] as const) {
    if (!opts.components.includes(`build-${platform.replace('/', '-')}` as Component)) continue;
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
        activities: createBuildActivities({
          db: opts.db,
          buildctl: opts.buildctl,
          buildkitAddr: opts.buildkit[platform],
          registry: opts.registryHost,
          workRoot: opts.workRoot,
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
