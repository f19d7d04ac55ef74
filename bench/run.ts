// `npm run bench`: Kiln measured side by side with raw `buildctl` on the same buildkitd and
// registry, in the same run, medians of several runs. Prints a table; asserts nothing.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startKiln, type Kiln } from '../infra/kiln';
import { startStack, type Stack } from '../infra/stack';
import { toolPaths } from '../infra/tools';
import { installQuietRuntime } from '../infra/workers';
import { median, printTable, timed } from './stats';

const run = promisify(execFile);
const RUNS = Math.max(5, Number(process.env.KILN_BENCH_RUNS ?? 7));
const PORTS = { temporal: 37233, temporalUi: 38233, registry: 35000, postgres: 35432 };

interface Ctx {
  stack: Stack;
  kiln: Kiln;
  token: string;
  workDir: string;
}

async function api(ctx: Ctx, pathname: string, json?: unknown): Promise<any> {
  const res = await fetch(`${ctx.kiln.url}${pathname}`, {
    method: json ? 'POST' : 'GET',
    headers: { authorization: `Bearer ${ctx.token}`, 'content-type': 'application/json' },
    body: json ? JSON.stringify(json) : undefined,
  });
  const body = await res.json();
  if (res.status >= 400) throw new Error(`${pathname}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** Submits a build and polls until it ends, as a client would. */
async function kilnBuild(ctx: Ctx, body: Record<string, unknown>): Promise<void> {
  const { buildId } = await api(ctx, '/api/v1/builds', body);
  for (;;) {
    const b = await api(ctx, `/api/v1/builds/${buildId}`);
    if (b.status === 'succeeded') return;
    if (['failed', 'canceled', 'timed_out'].includes(b.status)) throw new Error(`build ${buildId} ${b.status}: ${b.error?.message}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The same build with buildctl alone: build one platform and push it by digest. */
async function rawBuild(ctx: Ctx, dockerfile: string, platform: string, repo: string): Promise<void> {
  const dir = path.join(ctx.workDir, `raw-${randomBytes(4).toString('hex')}`);
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
  await run(toolPaths().buildctl, [
    '--addr', ctx.stack.buildkit['linux/amd64'],
    'build', '--frontend', 'dockerfile.v0',
    '--local', `context=${dir}`, '--local', `dockerfile=${dir}`,
    '--opt', `platform=${platform}`,
    '--output', `type=image,name=${ctx.stack.registry}/${repo},push=true,push-by-digest=true,oci-mediatypes=true`,
  ]);
  rmSync(dir, { recursive: true, force: true });
}

async function benchOverhead(ctx: Ctx) {
  const dockerfile = `FROM ${ctx.stack.registry}/base/busybox\nRUN echo bench > /bench\nRUN head -c 1000000 /dev/zero > /blob\n`;
  const kiln = () => kilnBuild(ctx, { repository: 'bench/overhead', dockerfile, platforms: ['linux/amd64'], tags: ['warm'] });
  const raw = () => rawBuild(ctx, dockerfile, 'linux/amd64', 'bench/overhead-raw');
  await kiln(); // warm the cache for both
  await raw();
  const k: number[] = [];
  const r: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    r.push(await timed(raw));
    k.push(await timed(kiln));
  }
  return { name: 'overhead: warm 1-platform build, Kiln end to end vs buildctl+push', kiln: median(k), raw: median(r) };
}

async function main() {
  installQuietRuntime('ERROR');
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kiln-bench-'));
  console.log(`bench: ${cpus().length} cores (${cpus()[0]?.model}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${RUNS} runs per side`);
  const stack = await startStack({ dataDir, ports: PORTS, log: () => {} });
  const token = randomBytes(24).toString('hex');
  const kiln = await startKiln({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    temporalAddress: stack.temporalAddress,
    temporalNamespace: 'default',
    temporalUiUrl: stack.temporalUiUrl,
    registry: stack.registry,
    buildkit: stack.buildkit,
    buildctl: toolPaths().buildctl,
    apiToken: token,
    secretKey: randomBytes(32).toString('hex'),
    maxBodyBytes: 1024 * 1024,
    components: ['api', 'control', 'build-linux-amd64', 'build-linux-arm64'],
  });
  const ctx: Ctx = { stack, kiln, token, workDir: path.join(dataDir, 'bench') };
  mkdirSync(ctx.workDir);
  try {
    const results = [await benchOverhead(ctx)];
    printTable(
      results.map((r) => ({
        scenario: r.name,
        'Kiln median (ms)': r.kiln.toFixed(0),
        'buildctl median (ms)': r.raw.toFixed(0),
        ratio: `${(r.kiln / r.raw).toFixed(2)}x`,
        'overhead (ms)': (r.kiln - r.raw).toFixed(0),
      })),
    );
  } finally {
    await kiln.close();
    await stack.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
