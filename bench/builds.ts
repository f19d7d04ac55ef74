// Build rows of `npm run bench`: Kiln's overhead over raw buildctl, the fan-out of a two-platform
// build, and the registry cache on a fresh buildkitd. Each compares two sides measured in the
// same run, interleaved, on the same buildkitd and registry.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildctlArgs } from '../activities/build';
import type { Kiln } from '../infra/kiln';
import type { Stack } from '../infra/stack';
import { toolPaths } from '../infra/tools';
import type { Platform } from '../domain/platforms';
import { median, timed } from './stats';

const run = promisify(execFile);

export interface BuildCtx {
  stack: Stack;
  kiln: Kiln;
  token: string;
  workDir: string;
  runs: number;
}

export async function api(ctx: Pick<BuildCtx, 'kiln' | 'token'>, pathname: string, json?: unknown): Promise<any> {
  const res = await fetch(`${ctx.kiln.url}${pathname}`, {
    method: json ? 'POST' : 'GET',
    headers: { authorization: `Bearer ${ctx.token}`, 'content-type': 'application/json' },
    body: json ? JSON.stringify(json) : undefined,
  });
  const body = await res.json();
  if (res.status >= 400) throw new Error(`${pathname}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/**
 * A build through the API, end to end: from POST /builds until the workflow has pushed the index
 * and recorded success. The end is awaited on the workflow itself (a long poll), not by polling
 * the view at some interval, which would add up to that interval to every figure; the view is then
 * read once to confirm what a client sees.
 */
export async function kilnBuild(ctx: Pick<BuildCtx, 'kiln' | 'token'>, body: Record<string, unknown>): Promise<any> {
  const { buildId, workflowId } = await api(ctx, '/api/v1/builds', body);
  await ctx.kiln.client.workflow.getHandle(workflowId).result().catch(() => undefined);
  const b = await api(ctx, `/api/v1/builds/${buildId}`);
  if (b.status !== 'succeeded') throw new Error(`build ${buildId} ${b.status}: ${b.error?.message}`);
  return b;
}

/**
 * The same build with buildctl alone: exactly the arguments Kiln's build activity passes
 * (activities/build.ts buildctlArgs), so both sides push by digest and import and export the same
 * registry cache. `cache: false` drops the cache flags, to show what they cost.
 */
async function rawBuild(ctx: BuildCtx, o: { dockerfile: string; platform: Platform; repository: string; cache: boolean }): Promise<void> {
  const dir = path.join(ctx.workDir, `raw-${randomBytes(4).toString('hex')}`);
  const contextDir = path.join(dir, 'context');
  mkdirSync(contextDir, { recursive: true });
  writeFileSync(path.join(dir, 'Dockerfile'), o.dockerfile);
  let args = buildctlArgs(
    { buildId: 'bench', repository: o.repository, platform: o.platform, source: { kind: 'inline', dockerfile: o.dockerfile }, buildArgs: {}, labels: {}, target: null, noCache: false },
    { contextDir, dockerfileDir: dir, dockerfileName: 'Dockerfile' },
    { buildkitAddr: ctx.stack.buildkit[o.platform], registry: ctx.stack.registry },
    path.join(dir, 'metadata.json'),
  );
  if (!o.cache) args = args.filter((a, i) => !['--import-cache', '--export-cache'].includes(a) && !['--import-cache', '--export-cache'].includes(args[i - 1]!));
  await run(toolPaths().buildctl, args, { maxBuffer: 64 * 1024 * 1024 });
  rmSync(dir, { recursive: true, force: true });
}

export interface Side {
  median: number;
  samples: number[];
}

const side = (samples: number[]): Side => ({ median: median(samples), samples });

/** Where the time of one Kiln build went, from its workflow history (server time stamps). */
export interface Breakdown {
  'submit → workflow started': number;
  'started → build activity scheduled (startBuild)': number;
  'scheduled → build activity running': number;
  'build activity (buildctl inside)': number;
  'activity done → workflow done (index push, record)': number;
  'workflow done → client has the view': number;
}

async function breakdown(ctx: BuildCtx, workflowId: string, t0: number, t1: number): Promise<Breakdown> {
  const history = await ctx.kiln.client.workflow.getHandle(workflowId).fetchHistory();
  const at = (type: number) => {
    const e = history.events?.find((ev) => ev.eventType === type);
    if (!e?.eventTime) throw new Error(`no event ${type} in ${workflowId}`);
    return Number(e.eventTime.seconds) * 1000 + Math.round((e.eventTime.nanos ?? 0) / 1e6);
  };
  // EventType numbers: 1 execution started, 10/11/12 activity scheduled/started/completed, 2 execution completed.
  const [started, scheduled, running, done, completed] = [at(1), at(10), at(11), at(12), at(2)];
  return {
    'submit → workflow started': started - t0,
    'started → build activity scheduled (startBuild)': scheduled - started,
    'scheduled → build activity running': running - scheduled,
    'build activity (buildctl inside)': done - running,
    'activity done → workflow done (index push, record)': completed - done,
    'workflow done → client has the view': t1 - completed,
  };
}

/** 1. Kiln end to end vs raw buildctl + push, same Dockerfile, warm cache, one platform. */
export async function benchOverhead(ctx: BuildCtx) {
  const dockerfile = `FROM ${ctx.stack.registry}/base/busybox\nRUN echo bench > /bench\nRUN head -c 1000000 /dev/zero > /blob\n`;
  const repository = 'bench/overhead';
  const parts: Breakdown[] = [];
  const kiln = async () => {
    const t0 = Date.now();
    const view = await kilnBuild(ctx, { repository, dockerfile, platforms: ['linux/amd64'], tags: ['warm'] });
    parts.push(await breakdown(ctx, view.workflowId, t0, Date.now()));
  };
  const raw = (cache: boolean) => rawBuild(ctx, { dockerfile, platform: 'linux/amd64', repository, cache });
  // Warm BuildKit's cache, the registry cache and Kiln's own paths (database, workflow bundle).
  for (let i = 0; i < 2; i++) {
    await kiln();
    await raw(true);
    await raw(false);
  }
  const k: number[] = [];
  const r: number[] = [];
  const rn: number[] = [];
  const sides: [number[], () => Promise<unknown>][] = [
    [r, () => raw(true)],
    [rn, () => raw(false)],
    [k, kiln],
  ];
  for (let i = 0; i < ctx.runs; i++) {
    // Rotate the order, so no side always runs right after the same other one.
    for (let j = 0; j < sides.length; j++) {
      const [samples, fn] = sides[(i + j) % sides.length]!;
      samples.push(await timed(fn));
    }
  }
  if (process.env.KILN_BENCH_DEBUG) console.log({ kiln: k.map(Math.round), raw: r.map(Math.round), rawNoCache: rn.map(Math.round) });
  const measured = parts.slice(-ctx.runs); // not the warm-up builds
  const keys = Object.keys(measured[0]!) as (keyof Breakdown)[];
  const where = Object.fromEntries(keys.map((key) => [key, median(measured.map((p) => p[key]))])) as unknown as Breakdown;
  return { kiln: side(k), raw: side(r), rawNoCache: side(rn), where };
}

/**
 * 2. A two-platform build vs the two single-platform builds one after the other, all through
 * Kiln. noCache, so every step runs each time. The Dockerfile waits on I/O (a stand-in for
 * downloads), burns CPU and writes a layer: arm64 runs under QEMU here, so its CPU steps cost
 * several times amd64's, which the single-platform times show next to the ratio.
 */
export async function benchFanOut(ctx: BuildCtx) {
  const dockerfile = [
    `FROM ${ctx.stack.registry}/base/busybox`,
    'RUN sleep 1',
    'RUN i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo $i > /count',
    'RUN head -c 4000000 /dev/urandom > /blob',
  ].join('\n');
  const build = (platforms: Platform[]) =>
    timed(() => kilnBuild(ctx, { repository: 'bench/fanout', dockerfile, platforms, tags: ['fanout'], noCache: true }));
  await build(['linux/amd64', 'linux/arm64']); // warm: base image pulled for both platforms
  const both: number[] = [];
  const sums: number[] = [];
  const amd: number[] = [];
  const arm: number[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    both.push(await build(['linux/amd64', 'linux/arm64']));
    const a = await build(['linux/amd64']);
    const b = await build(['linux/arm64']);
    amd.push(a);
    arm.push(b);
    sums.push(a + b);
  }
  return { both: side(both), sequential: side(sums), amd64: side(amd), arm64: side(arm) };
}

/**
 * 3. A fresh buildkitd (its state directory emptied before every run, as on a new build host)
 * building a Dockerfile with a slow step, with the registry cache vs without it (noCache: no
 * import, every step runs). `fresh` restarts that buildkitd on an empty root; `kiln` builds
 * linux/amd64 on it.
 */
export async function benchCache(ctx: BuildCtx, fresh: () => Promise<void>) {
  const dockerfile = [
    `FROM ${ctx.stack.registry}/base/busybox`,
    'RUN sleep 3 && head -c 2000000 /dev/urandom > /slow',
    'RUN echo after > /after',
  ].join('\n');
  const build = (noCache: boolean) =>
    kilnBuild(ctx, { repository: 'bench/cache', dockerfile, platforms: ['linux/amd64'], tags: ['cache'], noCache });
  await fresh();
  await build(false); // exports the registry cache the "with" side imports
  const withCache: number[] = [];
  const without: number[] = [];
  let hits = 0;
  for (let i = 0; i < ctx.runs; i++) {
    // Alternate which side goes first, so neither always follows the other.
    for (const noCache of i % 2 ? [true, false] : [false, true]) {
      await fresh();
      let view: any;
      const t = await timed(async () => (view = await build(noCache)));
      (noCache ? without : withCache).push(t);
      if (!noCache) hits = view.platforms[0].cacheHits;
    }
  }
  return { withCache: side(withCache), without: side(without), cacheHits: hits };
}

/**
 * 1c. What the sandbox costs: the same warm build, sandboxed (RUN on buildkitd's firewalled
 * bridge, pushing to a registry with token auth, Kiln the issuer, a credential per build) and open
 * (the design before the sandbox: RUN on the host's network, an open registry). One Kiln per side
 * (a control worker talks to one registry), so the sides run one after the other in the same run.
 * The base is cached; one RUN runs every time (a new NONCE), so each run pays for a step's network
 * namespace and for the token exchanges of pull, cache import/export and push.
 */
export async function benchSandboxSide(c: BuildCtx & { registry: string }) {
  const build = () =>
    kilnBuild(c, {
      repository: 'bench/sandbox',
      dockerfile: `FROM ${c.registry}/base/busybox\nARG NONCE\nRUN echo $NONCE > /nonce\n`,
      platforms: ['linux/amd64'],
      buildArgs: { NONCE: randomBytes(8).toString('hex') },
      tags: ['warm'],
    });
  for (let i = 0; i < 2; i++) await build();
  const samples: number[] = [];
  for (let i = 0; i < c.runs; i++) samples.push(await timed(build));
  return side(samples);
}
