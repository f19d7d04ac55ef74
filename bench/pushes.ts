// Row 4c/4d of `npm run bench` (issue #10 b): webhook ingest when the rules match, so every
// delivery leads to a build. This checkout (the delivery is recorded and a PushWorkflow started;
// builds come from the workflow) next to a baseline checkout, by default the commit this branch
// left main at (the request itself plans the builds, inserts them and starts their workflows),
// each an API process of its own on its own database, runs interleaved. No worker runs yet
// (bench/run.ts runs these rows first), and the workflows they start wait in a Temporal namespace
// no worker polls. Loopback only; every run is bounded in time.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../infra/tools';
import { githubPush } from '../test/support/webhooks';
import { call, describeRun, sendDeliveries, summarizeDeliveries, type ApiProcess, type DeliveryRun, type Load } from './http';

/** `git archive` of `rev` into `dir`, sharing this checkout's node_modules; null when rev is unknown. */
export function baselineTree(rev: string, dir: string): { root: string; commit: string } | null {
  let commit: string;
  try {
    commit = execFileSync('git', ['-C', REPO_ROOT, 'rev-parse', '--verify', `${rev}^{commit}`], { encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
  mkdirSync(dir, { recursive: true });
  execFileSync('bash', ['-c', `git -C "${REPO_ROOT}" archive "${commit}" | tar -x -C "${dir}"`]);
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return { root: dir, commit };
}

export interface PushIngest {
  small: Load & { statuses: Record<string, number> };
  large: Load & { statuses: Record<string, number> };
  largeBytes: number;
}

/** A repository bound to a loopback URL nobody serves, with a rule that matches every push to main. */
async function setup(api: ApiProcess, token: string) {
  const secret = 'bench-webhook-secret-0123456789';
  const name = `pushes-${randomUUID().slice(0, 8)}`;
  // Port 9 (discard) on loopback: should a worker ever pick these up, git fails at once, locally.
  const repoUrl = `http://127.0.0.1:9/bench/${name}.git`;
  const repo = await call(api.url, token, 'POST', '/api/v1/repositories', {
    namespace: 'bench',
    name,
    source: { provider: 'github', url: repoUrl, webhookSecret: secret },
  });
  await call(api.url, token, 'POST', `/api/v1/repositories/${repo.id}/rules`, { type: 'branch', match: 'main', platforms: ['linux/amd64'], tags: [{ template: 'main' }] });
  const sha = 'a'.repeat(40);
  const small = githubPush({ repoUrl, ref: 'refs/heads/main', after: sha, secret, files: { modified: ['src/app.ts'] } });
  // Near the 1 MiB body limit: one commit listing 12,000 changed files (GitHub repeats it as head_commit).
  const files = Array.from({ length: 12_000 }, (_, i) => `svc-${i % 97}/src/module-${i}/index.ts`);
  const large = githubPush({ repoUrl, ref: 'refs/heads/main', after: sha, secret, files: { modified: files } });
  return { url: `${api.url}/webhooks/github`, small, large };
}

function send(url: string, d: ReturnType<typeof githubPush>, seconds: number): Promise<DeliveryRun> {
  const { 'x-github-delivery': _, ...headers } = d.headers;
  return sendDeliveries({ url, headers, body: Buffer.from(d.body), idHeader: 'x-github-delivery', seconds });
}

/** Interleaved runs of every side: small deliveries, then large ones. */
export async function benchPushIngest(sides: Record<string, ApiProcess>, o: { token: string; runs: number }): Promise<Record<string, PushIngest>> {
  const SECONDS = 3;
  const targets = Object.fromEntries(await Promise.all(Object.entries(sides).map(async ([k, api]) => [k, await setup(api, o.token)] as const)));
  const small: Record<string, DeliveryRun[]> = {};
  const large: Record<string, DeliveryRun[]> = {};
  for (const [k, t] of Object.entries(targets)) {
    // One delivery at a time first: its answer time with the API otherwise idle.
    const probe: string[] = [];
    for (let i = 0; i < 5; i++) {
      const d = { ...t.small.headers, 'x-github-delivery': randomUUID() };
      const started = performance.now();
      const res = await fetch(t.url, { method: 'POST', headers: d, body: t.small.body });
      await res.arrayBuffer();
      probe.push(`${res.status} ${(performance.now() - started).toFixed(0)} ms`);
    }
    console.log(`bench: pushes ${k}, one at a time: ${probe.join(', ')}`);
  }
  for (const k of Object.keys(sides)) {
    // A discarded warm-up per side: V8 compiles the hot paths and the pools fill.
    await send(targets[k]!.url, targets[k]!.small, 2);
    small[k] = [];
    large[k] = [];
  }
  // A run ends when the load stops sending, not when the API has finished what it was sent
  // (the baseline keeps working on its unanswered deliveries for seconds): the next run, of either
  // side, starts once that process is quiet again.
  const run = async (k: string, d: ReturnType<typeof githubPush>) => {
    const r = await send(targets[k]!.url, d, SECONDS);
    // Every run in the log: the table shows medians, this shows the spread behind them.
    console.log(`bench: pushes ${k}, ${(Buffer.byteLength(d.body) / 1e3).toFixed(0)} KB: ${describeRun(r)}`);
    await quiet(sides[k]!.pid);
    return r;
  };
  for (let i = 0; i < o.runs; i++) {
    for (const k of Object.keys(sides)) small[k]!.push(await run(k, targets[k]!.small));
  }
  for (let i = 0; i < o.runs; i++) {
    for (const k of Object.keys(sides)) large[k]!.push(await run(k, targets[k]!.large));
  }
  const largeBytes = Buffer.byteLength(Object.values(targets)[0]!.large.body);
  return Object.fromEntries(
    Object.keys(sides).map((k) => [k, { small: summarizeDeliveries(small[k]!), large: summarizeDeliveries(large[k]!), largeBytes }]),
  );
}

/** CPU time (ms) a process has used, from /proc. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, in 1/100 s
}

/** Resolves once the process used under 5% of a core over half a second (at most 60 s). */
async function quiet(pid: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  let before = cpuMs(pid);
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    const now = cpuMs(pid);
    if (now - before < 25) return;
    before = now;
  }
}
