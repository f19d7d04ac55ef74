// HTTP rows of `npm run bench`: webhook ingest and build reads, against an API process of its own
// (`npm start` with KILN_COMPONENTS=api, as an API node runs when scaled out) on Postgres. The
// load comes from this process (autocannon, and `sendDeliveries` for webhook deliveries), so the
// API's event loop is the API's alone. All traffic goes to 127.0.0.1 and every run is bounded in time.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import autocannon from 'autocannon';
import { REPO_ROOT } from '../infra/tools';
import { githubPush } from '../test/support/webhooks';
import { median, percentile } from './stats';

export interface ApiProcess {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** Runs infra/start.ts as an API-only node against the bench's Temporal, registry and Postgres. */
export async function startApiProcess(o: {
  dataDir: string;
  port: number;
  databaseUrl: string;
  temporalAddress: string;
  /** The Temporal namespace its workflows start in (default: the server's `default`). */
  temporalNamespace?: string;
  registry: string;
  apiToken: string;
  secretKey: string;
  /** Extra node flags, e.g. `--cpu-prof` to profile the API under load. */
  nodeArgs?: string[];
  /** Another checkout of Kiln to run (a baseline measured side by side); this one by default. */
  root?: string;
}): Promise<ApiProcess> {
  const root = o.root ?? REPO_ROOT;
  mkdirSync(o.dataDir, { recursive: true });
  const out = openSync(path.join(o.dataDir, 'api.log'), 'a');
  const child: ChildProcess = spawn(process.execPath, [...(o.nodeArgs ?? []), '--import', 'tsx', path.join(root, 'infra/start.ts')], {
    cwd: root,
    stdio: ['ignore', out, out],
    env: {
      ...process.env,
      PORT: String(o.port),
      HOST: '127.0.0.1',
      KILN_DATA_DIR: o.dataDir,
      DATABASE_URL: o.databaseUrl,
      TEMPORAL_ADDRESS: o.temporalAddress,
      TEMPORAL_NAMESPACE: o.temporalNamespace ?? 'default',
      KILN_REGISTRY: o.registry,
      KILN_COMPONENTS: 'api',
      KILN_API_TOKEN: o.apiToken,
      KILN_SECRET_KEY: o.secretKey,
      KILN_SKIP_TOOL_SETUP: '1',
      NODE_ENV: 'production',
    },
  });
  const url = `http://127.0.0.1:${o.port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the API process exited (${child.exitCode}); see ${o.dataDir}/api.log`);
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`the API process did not become healthy; see ${o.dataDir}/api.log`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface Load {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

/** One load run of `sendDeliveries`. */
export interface DeliveryRun {
  /** Answers received (any status). */
  answered: number;
  seconds: number;
  p50: number;
  p99: number;
  statuses: Record<string, number>;
  /** Connection errors and requests unanswered after 10 s. */
  errors: number;
}

/**
 * Webhook deliveries over `connections` keep-alive connections for `seconds`, each with its own
 * delivery id in `idHeader` (the signature covers the body only, so one body serves them all).
 * Not autocannon: to vary a header it rebuilds the whole request, a copy of the body per delivery
 * (0.82 MB in row 4d), and the collections that follow took ~0.5 of a core from the API on this
 * 2-core machine. Here headers and body go out as they are (node:http writes them together).
 */
export async function sendDeliveries(o: {
  url: string;
  headers: Record<string, string>;
  body: Buffer;
  idHeader: string;
  connections?: number;
  seconds: number;
}): Promise<DeliveryRun> {
  const target = new URL(o.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.connections ?? 10 });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const sent = performance.now();
      const req = http.request(
        {
          agent,
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: 'POST',
          headers: { ...o.headers, 'content-length': String(o.body.byteLength), [o.idHeader]: randomUUID() },
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            latencies.push(performance.now() - sent);
            statuses[res.statusCode!] = (statuses[res.statusCode!] ?? 0) + 1;
            resolve();
          });
          res.on('error', () => {
            errors++;
            resolve();
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('no answer in 10 s')));
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(o.body);
    });
  const started = performance.now();
  const until = started + o.seconds * 1000;
  await Promise.all(
    Array.from({ length: o.connections ?? 10 }, async () => {
      while (performance.now() < until) await one();
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  const at = (p: number) => (latencies.length ? percentile(latencies, p) : Number.NaN);
  return { answered: latencies.length, seconds, p50: at(50), p99: at(99), statuses, errors };
}

/** One run as the bench log shows it. */
export const describeRun = (r: DeliveryRun) =>
  `${(r.answered / r.seconds).toFixed(0)}/s, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms${r.errors ? `, ${r.errors} errors` : ''}, statuses ${JSON.stringify(r.statuses)}`;

/** Medians over runs of `sendDeliveries`; non-2xx answers and errors summed. */
export function summarizeDeliveries(runs: DeliveryRun[]): Load & { statuses: Record<string, number> } {
  const statuses: Record<string, number> = {};
  for (const r of runs) for (const [code, n] of Object.entries(r.statuses)) statuses[code] = (statuses[code] ?? 0) + n;
  return {
    rps: median(runs.map((r) => r.answered / r.seconds)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    non2xx: Object.entries(statuses).reduce((n, [code, c]) => (code.startsWith('2') ? n : n + c), 0),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    statuses,
  };
}

/** `runs` autocannon runs of `seconds` each; medians of their throughput and latency percentiles. */
export async function load(runs: number, seconds: number, opts: autocannon.Options): Promise<Load> {
  const results: autocannon.Result[] = [];
  // A discarded warm-up: V8 compiles the hot paths and the connection pools fill.
  await autocannon({ connections: 10, duration: 2, ...opts });
  for (let i = 0; i < runs; i++) results.push(await autocannon({ connections: 10, duration: seconds, ...opts }));
  return {
    rps: median(results.map((r) => r.requests.total / (r.duration || seconds))),
    p50: median(results.map((r) => r.latency.p50)),
    p99: median(results.map((r) => r.latency.p99)),
    non2xx: results.reduce((n, r) => n + r.non2xx, 0),
    errors: results.reduce((n, r) => n + r.errors + r.timeouts, 0),
  };
}

export async function call(url: string, token: string, method: string, pathname: string, json?: unknown): Promise<any> {
  const res = await fetch(`${url}${pathname}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: json === undefined ? undefined : JSON.stringify(json),
  });
  const body = res.status === 204 ? null : await res.json();
  if (res.status >= 400) throw new Error(`${method} ${pathname}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/**
 * 4. Signed GitHub push deliveries, each with its own delivery id, to a repository whose only rule
 * matches nothing (verify, record, start its PushWorkflow; no build); then 50 deliveries whose
 * rule matches, one at a time: from sending the delivery to the start of its PushWorkflow (by the
 * push outbox, after the answer) as Temporal recorded it. No worker runs: the started workflows
 * wait in a Temporal namespace no worker polls, so builds do not share the machine with the
 * measurement.
 */
export async function benchIngest(
  api: ApiProcess,
  o: {
    token: string;
    runs: number;
    describeStart: (workflowId: string) => Promise<Date>;
    /** Resolves once the outbox has started every delivery recorded so far (the load's backlog). */
    drained: () => Promise<void>;
  },
) {
  const secret = 'bench-webhook-secret-0123456789';
  const repoUrl = `https://github.com/bench/ingest-${Date.now().toString(36)}.git`;
  const repo = await call(api.url, o.token, 'POST', '/api/v1/repositories', {
    namespace: 'bench',
    name: `ingest-${Date.now().toString(36)}`,
    source: { provider: 'github', url: repoUrl, webhookSecret: secret },
  });
  await call(api.url, o.token, 'POST', `/api/v1/repositories/${repo.id}/rules`, {
    type: 'branch',
    match: 'never-matches',
    platforms: ['linux/amd64'],
    tags: [{ template: 'x' }],
  });
  // The signature covers the body only, so one signed body serves every delivery id.
  const delivery = githubPush({ repoUrl, ref: 'refs/heads/main', after: 'a'.repeat(40), secret });
  const { 'x-github-delivery': _, ...headers } = delivery.headers;
  const url = `${api.url}/webhooks/github`;
  const send = (seconds: number) => sendDeliveries({ url, headers, body: Buffer.from(delivery.body), idHeader: 'x-github-delivery', seconds });
  await send(2); // a discarded warm-up: V8 compiles the hot paths and the connection pools fill
  const runs: DeliveryRun[] = [];
  for (let i = 0; i < o.runs; i++) {
    runs.push(await send(3));
    console.log(`bench: ingest run ${i + 1}: ${describeRun(runs[i]!)}`);
  }
  const ingest = summarizeDeliveries(runs);

  // Deliveries that start builds, one at a time, once the load's backlog is started: what one
  // delivery waits for on an idle outbox, not for the thousands ahead of it.
  await o.drained();
  await call(api.url, o.token, 'POST', `/api/v1/repositories/${repo.id}/rules`, {
    type: 'branch',
    match: 'bench-(?<n>\\d+)',
    platforms: ['linux/amd64'],
    tags: [{ template: 'bench-${n}' }],
  });
  const startMs: number[] = [];
  const responseMs: number[] = [];
  for (let i = 0; i < 50; i++) {
    const d = githubPush({ repoUrl, ref: `refs/heads/bench-${i}`, after: randomUUID().replace(/-/g, '').padEnd(40, '0').slice(0, 40), secret });
    const sent = Date.now();
    const t = performance.now();
    const res = await fetch(url, { method: 'POST', headers: d.headers, body: d.body });
    responseMs.push(performance.now() - t);
    const body = (await res.json()) as { workflowId?: string };
    if (res.status !== 202 || !body.workflowId) throw new Error(`delivery ${i}: ${res.status} ${JSON.stringify(body)}`);
    // The push outbox starts the delivery's PushWorkflow after the answer: wait for it to exist.
    const workflowId = body.workflowId;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const at = await o.describeStart(workflowId).catch((err: Error) => {
        if (err.name !== 'WorkflowNotFoundError' || Date.now() > deadline) throw err;
        return null;
      });
      if (at) {
        startMs.push(at.getTime() - sent);
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  return {
    ingest,
    start: { p50: percentile(startMs, 50), p99: percentile(startMs, 99) },
    response: { p50: percentile(responseMs, 50), p99: percentile(responseMs, 99) },
  };
}

/** 5. GET /api/v1/builds/:id of a finished two-platform build, under load, on Postgres. */
export async function benchReads(api: ApiProcess, o: { token: string; runs: number; buildId: string }): Promise<Load> {
  return load(o.runs, 3, { url: `${api.url}/api/v1/builds/${o.buildId}`, headers: { authorization: `Bearer ${o.token}` } });
}
