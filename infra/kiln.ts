import path from 'node:path';
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { scheduleContextSweep } from '../activities/context';
import { RegistryClient } from '../activities/registry';
import { createApp } from '../api/app';
import type { RegistryTokenSigner } from '../api/routes/registry-token';
import { REGISTRY_SYSTEM_USER, registrySystemPassword } from '../domain/registry-access';
import { backfillSourceUrlKeys } from '../db/queries/repositories';
import { createTemporalBuildStarter } from '../api/build-starter';
import { createTemporalRuleScheduler } from '../api/rule-schedules';
import { createTemporalDeliveryStarter } from '../activities/notify';
import { createPushDispatcher, eventLoopBusy, type PushDispatcher } from '../api/push-dispatcher';
import { createTemporalPushStarter } from '../api/push-starter';
import type { SubmissionRate } from '../api/submission-limits';
import type { NamespaceQuotas } from '../domain/quotas';
import { serveApi } from '../api/server';
import { metricsOnlyApp } from '../observability/metrics-server';
import { rootLogger } from '../observability/log';
import { openDatabase, type DbHandle } from '../db/client';
import type { GitHostProvider } from '../domain/git-hosts';
import type { Component, Platform } from '../env';
import { installQuietRuntime, startWorkers, type RunningWorkers } from './workers';

export interface KilnOptions {
  dataDir: string;
  host: string;
  port: number;
  databaseUrl?: string;
  temporalAddress: string;
  temporalNamespace: string;
  temporalUiUrl: string | null;
  registry: string;
  registryCredentials?: { username: string; password: string };
  /**
   * The registry is Kiln's own, with Kiln as its token issuer: Kiln's services log in with a
   * credential derived from the secret key and every build gets one of its own (unless
   * registryCredentials says otherwise for the services).
   */
  ownRegistry?: boolean;
  /** Signs registry tokens at /registry/token (the API of a Kiln whose registry trusts it). */
  registryTokenSigner?: RegistryTokenSigner;
  /** KILN_BUILD_POOL: the build workers serve this dedicated pool. */
  buildPool?: string;
  buildkit: Record<Platform, string>;
  buildctl: string;
  apiToken: string;
  secretKey: string;
  /** KILN_PUBLIC_URL: webhook URLs and the build links of commit statuses (default: where the API listens). */
  publicUrl?: string;
  /** KILN_GIT_API_URLS: git host API bases that replace the ones derived from clone URLs. */
  gitApiUrls?: Partial<Record<GitHostProvider, string>>;
  maxBodyBytes: number;
  /** KILN_MAX_CONTEXT_BYTES (default 512 MiB). */
  maxContextBytes?: number;
  /** How long an unused uploaded context is kept (default 24 h). */
  contextRetentionMs?: number;
  /** KILN_MAX_LOG_BYTES (default 64 MiB). */
  maxLogBytes?: number;
  /** Builds one build worker runs at once (per platform). */
  buildConcurrency?: number;
  /** Caps on live log followers (defaults 100 and 100). */
  logFollowers?: { perBuild: number; perToken: number };
  components: Component[];
  /** KILN_METRICS_TOKEN: GET /metrics requires it as a bearer token. */
  metricsToken?: string;
  /** KILN_METRICS_PORT: without the API in this process, serve GET /metrics alone on this port. */
  metricsPort?: number;
  /** Extra readiness checks (e.g. buildkitd) shown by /readyz. */
  readiness?: Record<string, () => Promise<void>>;
  /** Reuse an open database (tests share one across instances). */
  db?: DbHandle;
  /** KILN_NAMESPACE_MAX_*: quotas of namespaces without their own. */
  quotaDefaults?: NamespaceQuotas;
  /** KILN_MAX_CONCURRENT_BUILDS: builds running at once per build pool. */
  buildCapacity?: number;
  /** The build scheduler's workflow id (default `kiln-build-scheduler`): one per deployment on a Temporal namespace. */
  schedulerWorkflowId?: string;
  /** KILN_SUBMISSIONS_PER_MINUTE, KILN_SUBMISSION_BURST. */
  submissionRate?: SubmissionRate;
}

const DEFAULT_MAX_CONTEXT_BYTES = 512 * 1024 * 1024;
const DEFAULT_CONTEXT_RETENTION_MS = 24 * 3600_000;
const CONTEXT_SWEEP_MS = 10 * 60_000;

export interface Kiln {
  url: string | null;
  /** Where this process serves GET /metrics (the API's, or KILN_METRICS_PORT's); null: nowhere. */
  metricsUrl: string | null;
  db: DbHandle;
  client: Client;
  workers: RunningWorkers;
  close(): Promise<void>;
}

/** Runs the Kiln processes (API, control worker, build workers) that `components` selects. */
export async function startKiln(opts: KilnOptions): Promise<Kiln> {
  const db = opts.db ?? (await openDatabase({ url: opts.databaseUrl, dataDir: opts.dataDir }));
  // Repositories bound before source_url_key existed get their key (webhooks find them by it).
  await backfillSourceUrlKeys(db.db);
  const registry = new RegistryClient(
    opts.registry,
    opts.registryCredentials ?? (opts.ownRegistry ? { username: REGISTRY_SYSTEM_USER, password: registrySystemPassword(opts.secretKey) } : undefined),
  );
  installQuietRuntime();
  // One native connection for the workers and the API's client: with a control worker in this
  // process, the server can hand a new build's first workflow task straight back (eager start).
  const connection = await NativeConnection.connect({ address: opts.temporalAddress });
  const client = new Client({ connection, namespace: opts.temporalNamespace });

  // Known once the API listens when the port is chosen by the system (port 0).
  let publicUrl = opts.publicUrl ?? `http://${opts.host}:${opts.port}`;
  const workers = await startWorkers({
    publicUrl: () => publicUrl,
    gitApiUrls: opts.gitApiUrls,
    connection,
    namespace: opts.temporalNamespace,
    db: db.db,
    registry,
    registryHost: registry.host,
    buildctl: opts.buildctl,
    buildkit: opts.buildkit,
    workRoot: path.join(opts.dataDir, 'work'),
    components: opts.components,
    secretKey: opts.secretKey,
    issueBuildCredentials: !!opts.ownRegistry,
    buildPool: opts.buildPool,
    maxLogBytes: opts.maxLogBytes,
    buildConcurrency: opts.buildConcurrency,
    quotaDefaults: opts.quotaDefaults,
    buildCapacity: opts.buildCapacity,
    schedulerWorkflowId: opts.schedulerWorkflowId,
  });

  let server: { url: string; close(): Promise<void> } | null = null;
  let metricsServer: { url: string; close(): Promise<void> } | null = null;
  let pushes: PushDispatcher | null = null;
  let busyLoop: ReturnType<typeof eventLoopBusy> | null = null;
  if (opts.components.includes('api')) {
    busyLoop = eventLoopBusy();
    pushes = createPushDispatcher({
      db: db.db,
      starter: createTemporalPushStarter(client),
      log: rootLogger().child({ component: 'push-outbox' }),
      busy: busyLoop.busy,
    });
    // Deliveries recorded while no API node ran (or whose node died) start now, not at the first tick.
    pushes.sweep().catch(() => undefined);
    const app = createApp({
      db: db.db,
      logSignals: db.logSignals,
      config: {
        apiToken: opts.apiToken,
        maxBodyBytes: opts.maxBodyBytes,
        temporalUiUrl: opts.temporalUiUrl,
        temporalNamespace: opts.temporalNamespace,
        registry: registry.host,
        secretKey: opts.secretKey,
        publicUrl,
        ...(opts.logFollowers ? { logFollowers: opts.logFollowers } : {}),
        ...(opts.metricsToken ? { metricsToken: opts.metricsToken } : {}),
        ...(opts.quotaDefaults ? { quotaDefaults: opts.quotaDefaults } : {}),
        ...(opts.submissionRate ? { submissionRate: opts.submissionRate } : {}),
      },
      builds: createTemporalBuildStarter(client, { schedulerWorkflowId: opts.schedulerWorkflowId }),
      pushes,
      deliveries: createTemporalDeliveryStarter(client),
      schedules: createTemporalRuleScheduler(client),
      contexts: {
        registry,
        maxContextBytes: opts.maxContextBytes ?? DEFAULT_MAX_CONTEXT_BYTES,
        retentionMs: opts.contextRetentionMs ?? DEFAULT_CONTEXT_RETENTION_MS,
      },
      registryTokenSigner: opts.registryTokenSigner,
      readiness: {
        temporal: async () => {
          await connection.workflowService.getSystemInfo({});
        },
        database: async () => {
          await db.db.execute('select 1');
        },
        registry: () => registry.ping(),
        ...opts.readiness,
      },
    });
    server = await serveApi(app, { port: opts.port, host: opts.host });
    if (!opts.publicUrl) publicUrl = server.url;
  } else if (opts.metricsPort !== undefined) {
    metricsServer = await serveApi(metricsOnlyApp(opts.metricsToken), { port: opts.metricsPort, host: opts.host });
  }

  // Every control worker sweeps; the sweep is idempotent, so several at once are harmless.
  const stopSweep = opts.components.includes('control')
    ? scheduleContextSweep({ db: db.db, registry }, opts.contextRetentionMs ?? DEFAULT_CONTEXT_RETENTION_MS, CONTEXT_SWEEP_MS)
    : () => {};

  return {
    url: server?.url ?? null,
    metricsUrl: metricsServer ? `${metricsServer.url}/metrics` : server ? `${server.url}/metrics` : null,
    db,
    client,
    workers,
    async close() {
      stopSweep();
      await server?.close();
      await pushes?.close();
      busyLoop?.stop();
      await metricsServer?.close();
      await workers.shutdown();
      await connection.close();
      if (!opts.db) await db.close();
    },
  };
}
