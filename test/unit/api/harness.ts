// Shared set-up for the API unit tests: the real app over in-memory PGlite, Temporal faked.
import { randomBytes } from 'node:crypto';
import { count } from 'drizzle-orm';
import postgres from 'postgres';
import { openDatabase, type DbHandle } from '../../../db/client';
import { builds, namespaces, repositories } from '../../../db/schema';
import { createApp, type AppDeps } from '../../../api/app';
import type { BuildStarter, StartBuildRequest } from '../../../api/build-starter';
import type { RuleScheduler } from '../../../api/rule-schedules';
import type { DeliveryStarter } from '../../../domain/notifications';
import type { RuleSchedule } from '../../../domain/schedules';

/** Temporal's schedules as a map `scheduleId → state`; `failWith` makes the next calls throw. */
export class FakeRuleScheduler implements RuleScheduler {
  schedules = new Map<string, RuleSchedule & { paused: boolean }>();
  failWith: Error | null = null;
  async sync(ruleId: string, schedules: RuleSchedule[], paused: boolean, previousCount: number): Promise<void> {
    if (this.failWith) throw this.failWith;
    schedules.forEach((s, i) => this.schedules.set(`rule-${ruleId}-${i}`, { ...s, paused }));
    for (let i = schedules.length; i < previousCount; i++) this.schedules.delete(`rule-${ruleId}-${i}`);
  }
  async remove(ruleId: string, count: number): Promise<void> {
    if (this.failWith) throw this.failWith;
    for (let i = 0; i < count; i++) this.schedules.delete(`rule-${ruleId}-${i}`);
  }
}

export class FakeDeliveryStarter implements DeliveryStarter {
  starts: string[] = [];
  answer: 'started' | 'running' = 'started';
  async start(deliveryId: string): Promise<'started' | 'running'> {
    this.starts.push(deliveryId);
    return this.answer;
  }
}
import type { PushStarter } from '../../../api/push-starter';
import { createPushDispatcher, type PushDispatcher } from '../../../api/push-dispatcher';
import type { PushWorkflowInput } from '../../../domain/push';

export const TOKEN = 'test-admin-token-0123456789';
export const SECRET_KEY = 'unit-test-secret-key';
export const PUBLIC_URL = 'https://kiln.example.test';
/** Opening PGlite and migrating takes seconds on a busy machine. */
export const DB_TIMEOUT = 60_000;

export class FakeBuildStarter implements BuildStarter {
  starts: StartBuildRequest[] = [];
  cancels: string[] = [];
  cancelReasons: ({ code: string; message: string } | undefined)[] = [];
  startError: Error | null = null;
  cancelError: Error | null = null;
  limits: [string, number][] = [];

  async setNamespaceLimit(namespace: string, maxConcurrentBuilds: number): Promise<void> {
    this.limits.push([namespace, maxConcurrentBuilds]);
  }

  async start(req: StartBuildRequest): Promise<void> {
    this.starts.push(req);
    if (this.startError) throw this.startError;
  }

  async cancel(workflowId: string, reason?: { code: string; message: string }): Promise<void> {
    this.cancels.push(workflowId);
    this.cancelReasons.push(reason);
    if (this.cancelError) throw this.cancelError;
  }

  reset(): void {
    this.starts = [];
    this.cancels = [];
    this.cancelReasons = [];
    this.limits = [];
    this.startError = null;
    this.cancelError = null;
  }
}

/** Temporal's part of a push: one workflow per id, a second start of an id refused as Temporal does. */
export class FakePushStarter implements PushStarter {
  starts: { workflowId: string; input: PushWorkflowInput }[] = [];
  private ids = new Set<string>();
  startError: Error | null = null;

  async start(workflowId: string, input: PushWorkflowInput): Promise<'started' | 'duplicate'> {
    if (this.startError) throw this.startError;
    if (this.ids.has(workflowId)) return 'duplicate';
    this.ids.add(workflowId);
    this.starts.push({ workflowId, input });
    return 'started';
  }

  reset(): void {
    this.starts = [];
    this.startError = null;
  }
}

export interface Res {
  status: number;
  headers: Headers;
  text: string;
  body: any;
}

export interface Harness {
  handle: DbHandle;
  db: DbHandle['db'];
  starter: FakeBuildStarter;
  scheduler: FakeRuleScheduler;
  deliveries: FakeDeliveryStarter;
  pushes: FakePushStarter;
  /** The webhook outbox: `sweep()` retries what the fake refused, `idle()` waits for the marks. */
  pushDispatcher: PushDispatcher;
  app: ReturnType<typeof createApp>;
  /** Calls the app with the admin token unless `token` says otherwise (null: no header). */
  call(path: string, init?: { method?: string; json?: unknown; body?: string; token?: string | null; headers?: Record<string, string> }): Promise<Res>;
  counts(): Promise<{ namespaces: number; repositories: number; builds: number }>;
  close(): Promise<void>;
}

export function makeApp(
  handle: DbHandle,
  starter: BuildStarter,
  overrides: Partial<Omit<AppDeps, 'config'>> & { config?: Partial<AppDeps['config']> } = {},
) {
  const { config, ...rest } = overrides;
  return createApp({
    db: handle.db,
    logSignals: handle.logSignals,
    builds: starter,
    config: {
      apiToken: TOKEN,
      maxBodyBytes: 1024 * 1024,
      temporalUiUrl: 'http://temporal-ui.test:8233/',
      temporalNamespace: 'default',
      registry: '127.0.0.1:5000',
      secretKey: SECRET_KEY,
      publicUrl: PUBLIC_URL,
      // The route tests submit hundreds of builds from one namespace; the limiter has tests of its own.
      submissionRate: { perMinute: 1_000_000, burst: 1_000_000 },
      ...config,
    },
    ...rest,
  });
}

export async function request(
  app: { request: (path: string, init?: RequestInit) => Response | Promise<Response> },
  path: string,
  init: { method?: string; json?: unknown; body?: string; token?: string | null; headers?: Record<string, string> } = {},
): Promise<Res> {
  const headers: Record<string, string> = { ...init.headers };
  const token = init.token === undefined ? TOKEN : init.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers['content-type'] ??= 'application/json';
  }
  const res = await app.request(path, { method: init.method ?? (body !== undefined ? 'POST' : 'GET'), headers, body });
  const text = await res.text();
  let parsed: unknown = undefined;
  if (res.headers.get('content-type')?.includes('json')) parsed = JSON.parse(text);
  return { status: res.status, headers: res.headers, text, body: parsed };
}

/**
 * In-memory PGlite by default; with KILN_UNIT_POSTGRES_URL (a server URL), a fresh database on
 * that server, to run the same tests against real Postgres.
 */
async function openUnitDatabase(): Promise<DbHandle> {
  const server = process.env.KILN_UNIT_POSTGRES_URL;
  if (!server) return openDatabase({ dataDir: 'memory://' });
  const name = `kiln_unit_${randomBytes(6).toString('hex')}`;
  const admin = postgres(server, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  return openDatabase({ url: server.replace(/\/[^/]*$/, `/${name}`) });
}

export async function createHarness(overrides: Parameters<typeof makeApp>[2] = {}): Promise<Harness> {
  const handle = await openUnitDatabase();
  const starter = new FakeBuildStarter();
  const scheduler = new FakeRuleScheduler();
  const deliveries = new FakeDeliveryStarter();
  const pushes = new FakePushStarter();
  // The real outbox over the fake starter: a recorded delivery's start is called before the answer returns.
  const pushDispatcher = createPushDispatcher({ db: handle.db, starter: pushes, retryMs: 0, sweepMs: 60_000 });
  const app = makeApp(handle, starter, { schedules: scheduler, deliveries, pushes: pushDispatcher, ...overrides });
  return {
    handle,
    db: handle.db,
    starter,
    scheduler,
    deliveries,
    pushes,
    pushDispatcher,
    app,
    call: (path, init) => request(app, path, init),
    async counts() {
      const [[n], [r], [b]] = await Promise.all([
        handle.db.select({ n: count() }).from(namespaces),
        handle.db.select({ n: count() }).from(repositories),
        handle.db.select({ n: count() }).from(builds),
      ]);
      return { namespaces: Number(n!.n), repositories: Number(r!.n), builds: Number(b!.n) };
    },
    async close() {
      await pushDispatcher.close();
      await handle.close();
    },
  };
}

export const DOCKERFILE = 'FROM 127.0.0.1:5000/base/busybox\nRUN echo hi > /x\n';

/** Submits an inline build to `repository` through the API and returns its id. */
export async function submitBuild(h: Pick<Harness, 'call'>, repository: string): Promise<string> {
  const res = await h.call('/api/v1/builds', { json: buildBody({ repository }) });
  if (res.status !== 202) throw new Error(`POST /builds: ${res.status} ${res.text}`);
  return res.body.buildId;
}

export function buildBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    repository: 'team/web',
    dockerfile: DOCKERFILE,
    platforms: ['linux/amd64', 'linux/arm64'],
    tags: ['v1'],
    ...overrides,
  };
}
