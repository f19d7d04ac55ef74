// Runs Kiln in-process (API, control worker, build workers) against the shared test stack.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { inject } from 'vitest';
import type { RegistryTokenSigner } from '../../api/routes/registry-token';
import { openDatabase, type DbHandle } from '../../db/client';
import type { Component } from '../../env';
import type { GitHostProvider } from '../../domain/git-hosts';
import { installQuietRuntime } from '../../infra/workers';
import { startKiln, type Kiln, type KilnOptions } from '../../infra/kiln';
import { toolPaths } from '../../infra/tools';
import type { TestStack } from './global-setup';

/** A Response whose JSON body tests may read without declaring its type. */
export type ApiResponse = Omit<Response, 'json'> & { json(): Promise<any> };

export interface TestKiln extends Kiln {
  url: string;
  token: string;
  registry: string;
  /** Per-build work dirs of the build workers (they must be empty between builds). */
  workRoot: string;
  /** KILN_SECRET_KEY of this instance (e.g. to derive the registry notification token). */
  secretKey: string;
  /** The build scheduler workflow of this instance's deployment. */
  schedulerWorkflowId: string;
  /** fetch against the API with the bearer token. */
  api(pathname: string, init?: RequestInit & { json?: unknown }): Promise<ApiResponse>;
}

/** A fresh, empty Postgres database on the test server. */
export async function createPostgresDatabase(): Promise<string> {
  const base = inject('stack').postgresUrl;
  const name = `kiln_${randomBytes(6).toString('hex')}`;
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  return base.replace(/\/[^/]*$/, `/${name}`);
}

export async function openTestDatabase(kind: 'pglite' | 'postgres'): Promise<DbHandle> {
  return kind === 'postgres' ? openDatabase({ url: await createPostgresDatabase() }) : openDatabase({ dataDir: 'memory://' });
}

export interface TestKilnOptions {
  db?: 'pglite' | 'postgres';
  /** Another registry (host:port) than the shared stack's, e.g. a dedicated one a test stops. */
  registry?: string;
  /** Other buildkitd addresses than the shared stack's. */
  buildkit?: TestStack['buildkit'];
  /** KILN_MAX_CONTEXT_BYTES of this instance. */
  maxContextBytes?: number;
  /** Address the API binds (default 127.0.0.1). */
  host?: string;
  /** The registry is Kiln's own with token auth: Kiln logs in, builds get credentials, the API is the realm. */
  registryTokenSigner?: RegistryTokenSigner;
  /** Which parts run (default: all). */
  components?: Component[];
  /** KILN_BUILD_POOL of this instance's build workers. */
  buildPool?: string;
  /** Postgres database URL to use (e.g. one other processes of the test use too). */
  databaseUrl?: string;
  /** Share another instance's database (a second process of the same deployment); not closed here. */
  shareDatabaseOf?: TestKiln;
  /** KILN_METRICS_TOKEN of this instance. */
  metricsToken?: string;
  /** KILN_GIT_API_URLS of this instance (local receivers standing in for the git hosts' APIs). */
  gitApiUrls?: Partial<Record<GitHostProvider, string>>;
  /** KILN_NAMESPACE_MAX_* of this instance. */
  quotaDefaults?: KilnOptions['quotaDefaults'];
  /** KILN_MAX_CONCURRENT_BUILDS of this instance. */
  buildCapacity?: number;
  /** KILN_SUBMISSIONS_PER_MINUTE / KILN_SUBMISSION_BURST of this instance. */
  submissionRate?: KilnOptions['submissionRate'];
}

export async function startTestKiln(opts: TestKilnOptions = {}): Promise<TestKiln> {
  installQuietRuntime('ERROR'); // expected failures would otherwise log stack traces
  const stack = inject('stack');
  const token = randomBytes(24).toString('hex');
  const secretKey = opts.shareDatabaseOf?.secretKey ?? randomBytes(32).toString('hex');
  const registry = opts.registry ?? stack.registry;
  const db =
    opts.shareDatabaseOf?.db ?? (opts.databaseUrl ? await openDatabase({ url: opts.databaseUrl }) : await openTestDatabase(opts.db ?? 'pglite'));
  const dataDir = path.join(stack.dataDir, `kiln-${randomBytes(4).toString('hex')}`);
  // Test files share one Temporal: a scheduler of its own per instance (and per deployment when
  // a second process shares the database), so builds a finished file left behind hold no slot here.
  const schedulerWorkflowId = opts.shareDatabaseOf?.schedulerWorkflowId ?? `kiln-build-scheduler-${randomBytes(4).toString('hex')}`;
  const kiln = await startKiln({
    dataDir,
    host: opts.host ?? '127.0.0.1',
    port: 0,
    db,
    temporalAddress: stack.temporalAddress,
    temporalNamespace: 'default',
    temporalUiUrl: stack.temporalUiUrl,
    registry,
    buildkit: opts.buildkit ?? stack.buildkit,
    buildctl: toolPaths().buildctl,
    apiToken: token,
    secretKey,
    maxBodyBytes: 1024 * 1024,
    maxContextBytes: opts.maxContextBytes,
    ownRegistry: !!opts.registryTokenSigner,
    registryTokenSigner: opts.registryTokenSigner,
    components: opts.components ?? ['api', 'control', 'build-linux-amd64', 'build-linux-arm64'],
    buildPool: opts.buildPool,
    metricsToken: opts.metricsToken,
    gitApiUrls: opts.gitApiUrls,
    quotaDefaults: opts.quotaDefaults,
    buildCapacity: opts.buildCapacity,
    schedulerWorkflowId,
    submissionRate: opts.submissionRate,
  });
  const url = kiln.url ?? opts.shareDatabaseOf?.url ?? '';
  return {
    ...kiln,
    url,
    token,
    registry,
    secretKey,
    schedulerWorkflowId,
    // In-process build workers: this process's own directory (infra/work-dirs.ts).
    workRoot: path.join(dataDir, 'work', `${hostname()}-${process.pid}`),
    async close() {
      await kiln.close();
      if (!opts.shareDatabaseOf) await db.close();
    },
    api(pathname, init = {}) {
      const { json, ...rest } = init;
      return fetch(`${url}${pathname}`, {
        ...rest,
        method: rest.method ?? (json !== undefined ? 'POST' : 'GET'),
        headers: {
          authorization: `Bearer ${token}`,
          ...(json !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(rest.headers as Record<string, string>),
        },
        body: json !== undefined ? JSON.stringify(json) : rest.body,
      });
    },
  };
}

/** Polls GET /builds/:id until the build is terminal. */
/**
 * The result of a webhook delivery's PushWorkflow. The webhook answers once the delivery is
 * recorded and the push outbox starts the workflow a moment later, so this waits for it to exist.
 */
export async function pushWorkflowResult<T = any>(kiln: TestKiln, workflowId: string, timeoutMs = 30_000): Promise<T> {
  const handle = kiln.client.workflow.getHandle(workflowId);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await handle.describe();
      break;
    } catch (err) {
      if ((err as Error).name !== 'WorkflowNotFoundError' || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return handle.result();
}

export async function waitForBuild(kiln: TestKiln, buildId: string, timeoutMs = 150_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await kiln.api(`/api/v1/builds/${buildId}`);
    const body = (await res.json()) as any;
    if (['succeeded', 'failed', 'canceled', 'timed_out'].includes(body.status)) return body;
    if (Date.now() > deadline) throw new Error(`build ${buildId} still ${body.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
