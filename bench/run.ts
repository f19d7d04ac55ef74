// `npm run bench`: Kiln measured side by side with what it is compared to, in the same run, on
// the same buildkitd, registry and Postgres; medians of several runs (KILN_BENCH_RUNS, at least 5).
// Prints one table; asserts nothing. `npm run bench -- lazy,reads` (or
// KILN_BENCH_ONLY=overhead,sandbox,fanout,cache,ingest,pushes,reads,logs,lazy,upload,fairness) picks rows.
// KILN_BENCH_PORT_OFFSET (or KILN_TEST_PORT_OFFSET) shifts the ports.
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, mkdirSync, mkdtempSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { KILN_SEARCH_ATTRIBUTES } from '../domain/temporal';
import type { Component } from '../env';
import { startKiln, type Kiln, type KilnOptions } from '../infra/kiln';
import { startBuildkitd } from '../infra/buildkitd';
import { startRegistry } from '../infra/registry-server';
import { startStack, type Stack } from '../infra/stack';
import type { ProcessHandle } from '../infra/supervisor';
import { toolPaths } from '../infra/tools';
import { installQuietRuntime } from '../infra/workers';
import { benchCache, benchFanOut, benchOverhead, benchSandboxSide, kilnBuild, type BuildCtx } from './builds';
import { ensurePublicRepository } from '../db/queries/repositories';
import { REGISTRY_SYSTEM_USER, REGISTRY_TOKEN_ISSUER, REGISTRY_TOKEN_SERVICE, registrySystemPassword } from '../domain/registry-access';
import { BASE_IMAGE_REPO, ensureBaseImage } from '../infra/base-image';
import { loadOrCreateRegistryTokenKeys } from '../infra/registry-token-keys';
import { benchIngest, benchReads, startApiProcess } from './http';
import { baselineTree, benchPushIngest } from './pushes';
import postgres from 'postgres';
import { benchLazyPull } from './lazy';
import { benchUpload, UPLOAD_MIB } from './upload';
import { benchChatty, benchFollow, benchLogDownload, CHATTY_LINES } from './logs';
import { ms, printTable, ratio } from './stats';
import { benchFairness, FLOOD, SLEEP_SECONDS } from './fairness';

const RUNS = Math.max(5, Number(process.env.KILN_BENCH_RUNS ?? 5));
const ROWS = ['overhead', 'sandbox', 'fanout', 'cache', 'ingest', 'pushes', 'reads', 'logs', 'lazy', 'upload', 'fairness'];
const ONLY = new Set((process.argv.slice(2).join(',') || process.env.KILN_BENCH_ONLY || ROWS.join(',')).split(',').map((s) => s.trim()).filter(Boolean));
for (const r of ONLY) if (!ROWS.includes(r)) throw new Error(`unknown bench row "${r}"; rows: ${ROWS.join(', ')}`);
// KILN_BENCH_PORT_OFFSET (or KILN_TEST_PORT_OFFSET) shifts them, for two benches on one machine.
const PORT_OFFSET = Number(process.env.KILN_BENCH_PORT_OFFSET ?? process.env.KILN_TEST_PORT_OFFSET ?? 0) || 0;
const PORTS = { temporal: 37233 + PORT_OFFSET, temporalUi: 38233 + PORT_OFFSET, registry: 35000 + PORT_OFFSET, postgres: 35432 + PORT_OFFSET };
const API_PORT = 33000 + PORT_OFFSET;

/** Waits (at most 10 minutes) until every recorded delivery's PushWorkflow has started; the rate it started them at. */
async function outboxDrain(databaseUrl: string, since: Date): Promise<{ deliveries: number; startsPerSecond: number; lagMs: number }> {
  const db = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const deadline = Date.now() + 600_000;
    for (;;) {
      const [row] = await db<{ waiting: number }[]>`select count(*)::int as waiting from webhook_deliveries where workflow_started_at is null and created_at >= ${since}`;
      const waiting = row!.waiting;
      if (waiting === 0) break;
      if (Date.now() > deadline) throw new Error(`pushes: ${waiting} deliveries still not started after 10 minutes`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const [r] = await db<{ n: number; first: Date; last_received: Date; last_started: Date }[]>`
      select count(*)::int as n, min(created_at) as first, max(created_at) as last_received, max(workflow_started_at) as last_started from webhook_deliveries where created_at >= ${since}`;
    const span = r!.last_started.getTime() - r!.first.getTime();
    return { deliveries: r!.n, startsPerSecond: (r!.n * 1000) / Math.max(span, 1), lagMs: r!.last_started.getTime() - r!.last_received.getTime() };
  } finally {
    await db.end();
  }
}

/**
 * The Temporal namespace rows 4a-4e start their workflows in. No worker polls it, so the tens of
 * thousands of workflows they leave never run and need no terminating (the dev server terminates
 * a few dozen a second); the stack's data dir goes away with the bench.
 */
const INGEST_NAMESPACE = 'kiln-bench-ingest';

/** temporal.api.enums.v1.IndexedValueType: every Kiln attribute is a keyword. */
const INDEXED_VALUE_TYPE_KEYWORD = 2;

async function registerIngestNamespace(connection: Connection): Promise<void> {
  await connection.workflowService
    .registerNamespace({ namespace: INGEST_NAMESPACE, workflowExecutionRetentionPeriod: msToTs('1 day') })
    .catch((err: { code?: number }) => {
      if (err.code !== 6) throw err; // ALREADY_EXISTS
    });
  // The baseline starts build workflows with Kiln's search attributes; a new namespace has none.
  // Retried: the namespace is usable once the server's registry has refreshed.
  const searchAttributes = Object.fromEntries(KILN_SEARCH_ATTRIBUTES.map((a) => [a.name, INDEXED_VALUE_TYPE_KEYWORD]));
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await connection.operatorService.addSearchAttributes({ namespace: INGEST_NAMESPACE, searchAttributes });
      await connection.workflowService.describeNamespace({ namespace: INGEST_NAMESPACE });
      return;
    } catch (err) {
      if ((err as { code?: number }).code === 6) return; // the attributes exist
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** Main before push workflows: the webhook request planned, inserted and started the builds. */
const BASELINE_REV = '720f2cad90cd655068d72296480cb6676c99c1a7';

/** Rows run in whatever order suits the machine (ingest first, before any worker); printed by number. */
const inTableOrder = (rows: Row[]) => [...rows].sort((a, b) => parseInt(a['#']) - parseInt(b['#']) || a['#'].localeCompare(b['#']));

type Row = { '#': string; scenario: string; Kiln: string; 'side by side (same run)': string; ratio: string; target: string };

function machine(): string {
  const cpu = cpus();
  let os = process.platform;
  try {
    os = (/^PRETTY_NAME="?([^"\n]*)/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os) as NodeJS.Platform;
  } catch {}
  return `${cpu.length} cores (${cpu[0]?.model.trim()}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${os}, Node ${process.versions.node}`;
}

async function main() {
  installQuietRuntime('ERROR');
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kiln-bench-'));
  console.log(`bench: ${machine()}; ${RUNS} runs per side; data in ${dataDir}`);
  const stack = await startStack({ dataDir, ports: PORTS, withPostgres: true, log: () => {} });
  const token = randomBytes(24).toString('hex');
  const secretKey = randomBytes(32).toString('hex');
  const connection = await Connection.connect({ address: stack.temporalAddress });
  const temporal = new Client({ connection });
  const kilnOptions = (buildkit: Stack['buildkit'], name: string, components: Component[]): KilnOptions => ({
    dataDir: path.join(dataDir, name),
    host: '127.0.0.1',
    port: 0,
    databaseUrl: stack.postgresUrl,
    temporalAddress: stack.temporalAddress,
    temporalNamespace: 'default',
    temporalUiUrl: stack.temporalUiUrl,
    registry: stack.registry,
    buildkit,
    buildctl: toolPaths().buildctl,
    apiToken: token,
    secretKey,
    maxBodyBytes: 1024 * 1024,
    components,
  });
  /** An API process of its own (`npm start` with KILN_COMPONENTS=api) on the bench stack. */
  const apiProcess = (name: string, port: number, other?: { root?: string; databaseUrl?: string; temporalNamespace?: string }) =>
    startApiProcess({
      dataDir: path.join(dataDir, name),
      port,
      root: other?.root,
      databaseUrl: other?.databaseUrl ?? stack.postgresUrl!,
      temporalAddress: stack.temporalAddress,
      temporalNamespace: other?.temporalNamespace,
      registry: stack.registry,
      apiToken: token,
      secretKey,
      // KILN_BENCH_API_PROFILE=<dir>: a V8 CPU profile of each API process, written when it stops.
      ...(process.env.KILN_BENCH_API_PROFILE ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', process.env.KILN_BENCH_API_PROFILE] } : {}),
    });
  const rows: Row[] = [];
  const log = (m: string) => console.log(`bench: ${m}`);
  let kiln: Kiln | undefined;
  let readBuildId: string | undefined;
  let where: Record<string, number> | undefined;
  let lazyVersions: string | undefined;
  try {
    // ---------------------------------------------------------------- webhook ingest (rows 4a-4e)
    // Before any Kiln worker runs: these rows measure the API and its outbox. The workflows they
    // start wait in a namespace of their own, which no worker polls.
    if (ONLY.has('ingest') || ONLY.has('pushes')) await registerIngestNamespace(connection);
    const ingestTemporal = new Client({ connection, namespace: INGEST_NAMESPACE });
    if (ONLY.has('ingest')) {
      const apiProc = await apiProcess('api-ingest', API_PORT, { temporalNamespace: INGEST_NAMESPACE });
      try {
        log('4. webhook ingest');
        const ingestSince = new Date();
        const r = await benchIngest(apiProc, {
          token,
          runs: RUNS,
          describeStart: async (id) => (await ingestTemporal.workflow.getHandle(id).describe()).startTime,
          drained: async () => {
            const d = await outboxDrain(stack.postgresUrl!, ingestSince);
            log(`4. the outbox started the load's ${d.deliveries} push workflows at ${d.startsPerSecond.toFixed(0)}/s`);
          },
        });
        if (r.ingest.non2xx || r.ingest.errors) throw new Error(`ingest: ${r.ingest.non2xx} non-2xx answers, ${r.ingest.errors} errors`);
        rows.push({
          '#': '4a',
          scenario: 'Ingest: signed GitHub push deliveries (distinct ids), rules match nothing; 10 connections',
          Kiln: `${r.ingest.rps.toFixed(0)} deliveries/s`,
          'side by side (same run)': `p50 ${r.ingest.p50.toFixed(1)} ms, p99 ${r.ingest.p99.toFixed(1)} ms`,
          ratio: '',
          target: '≥ 500/s',
        });
        rows.push({
          '#': '4b',
          scenario: '50 deliveries whose rule matches, one at a time: delivery sent → its PushWorkflow started by the outbox (Temporal start time)',
          Kiln: `p50 ${ms(r.start.p50)}, p99 ${ms(r.start.p99)}`,
          'side by side (same run)': `HTTP answer p50 ${ms(r.response.p50)}, p99 ${ms(r.response.p99)}`,
          ratio: '',
          target: 'p99 ≤ 100 ms',
        });
      } finally {
        await apiProc.stop();
      }
    }
    if (ONLY.has('pushes')) {
      log('4c. webhook ingest, rules that match');
      // The baseline: main before push workflows (the request planned, inserted and started the builds).
      const rev = process.env.KILN_BENCH_BASELINE ?? BASELINE_REV;
      const tree = rev === 'none' ? null : baselineTree(rev, path.join(dataDir, 'baseline-tree'));
      const sides: Record<string, Awaited<ReturnType<typeof apiProcess>>> = {};
      try {
        sides.kiln = await apiProcess('api-pushes', API_PORT + 2, { temporalNamespace: INGEST_NAMESPACE });
        if (tree) {
          const admin = postgres(stack.postgresUrl!, { max: 1, onnotice: () => {} });
          await admin.unsafe('create database kiln_baseline');
          await admin.end();
          sides.baseline = await apiProcess('api-baseline', API_PORT + 3, {
            root: tree.root,
            databaseUrl: stack.postgresUrl!.replace(/\/[^/]*$/, '/kiln_baseline'),
            temporalNamespace: INGEST_NAMESPACE,
          });
        }
        const since = new Date();
        const r = await benchPushIngest(sides, { token, runs: RUNS });
        for (const [k, v] of Object.entries(r)) {
          if (v.small.errors || v.large.errors || v.small.non2xx || v.large.non2xx) {
            throw new Error(`pushes (${k}): ${v.small.non2xx + v.large.non2xx} non-2xx answers (small ${JSON.stringify(v.small.statuses)}, large ${JSON.stringify(v.large.statuses)}), ${v.small.errors + v.large.errors} errors`);
          }
        }
        const b = r.baseline;
        const side = (x: { rps: number; p50: number; p99: number } | undefined) =>
          x ? `baseline ${tree!.commit.slice(0, 7)}: ${x.rps.toFixed(x.rps < 10 ? 1 : 0)}/s, p50 ${x.p50.toFixed(1)} ms, p99 ${x.p99.toFixed(1)} ms` : 'no baseline';
        rows.push({
          '#': '4c',
          scenario: 'Ingest, rules that match (every delivery leads to a build): signed GitHub pushes (distinct ids), ~1 KB; 10 connections',
          Kiln: `${r.kiln!.small.rps.toFixed(0)} deliveries/s, p50 ${r.kiln!.small.p50.toFixed(1)} ms, p99 ${r.kiln!.small.p99.toFixed(1)} ms`,
          'side by side (same run)': side(b?.small),
          ratio: b && b.small.rps >= 1 ? `${(r.kiln!.small.rps / b.small.rps).toFixed(2)}× deliveries/s` : '',
          target: '≥ 1,000/s; p99 ≤ 100 ms',
        });
        rows.push({
          '#': '4d',
          scenario: `Same, ${(r.kiln!.largeBytes / 1e6).toFixed(2)} MB deliveries (one commit listing 12,000 files); 10 connections`,
          Kiln: `${r.kiln!.large.rps.toFixed(0)} deliveries/s, p50 ${r.kiln!.large.p50.toFixed(1)} ms, p99 ${r.kiln!.large.p99.toFixed(1)} ms`,
          'side by side (same run)': side(b?.large),
          ratio: b && b.large.rps >= 1 ? `${(r.kiln!.large.rps / b.large.rps).toFixed(2)}× deliveries/s` : '',
          target: 'p99 ≤ 100 ms',
        });
        // The outbox behind those answers: every recorded delivery's PushWorkflow started, and how fast.
        const drained = await outboxDrain(stack.postgresUrl!, since);
        rows.push({
          '#': '4e',
          scenario: `PushWorkflow starts behind rows 4c/4d: the ${drained.deliveries} deliveries they recorded, started by the outbox (Temporal dev server, SQLite WAL)`,
          Kiln: `${drained.startsPerSecond.toFixed(0)} starts/s; the last started ${(drained.lagMs / 1000).toFixed(1)} s after the last answer`,
          'side by side (same run)': '',
          ratio: '',
          target: 'every delivery started',
        });
      } finally {
        for (const p of Object.values(sides)) await p.stop();
      }
    }
    // ---------------------------------------------------------------- builds on the stack's buildkitd
    kiln = await startKiln(kilnOptions(stack.buildkit, 'kiln', ['api', 'control', 'build-linux-amd64', 'build-linux-arm64']));
    const ctx: BuildCtx = { stack, kiln, token, workDir: path.join(dataDir, 'bench'), runs: RUNS };
    mkdirSync(ctx.workDir);
    if (ONLY.has('overhead')) {
      log('1. overhead');
      const r = await benchOverhead(ctx);
      const over = r.kiln.median - r.raw.median;
      where = { ...r.where };
      rows.push({
        '#': '1',
        scenario: 'Overhead: warm 1-platform build, Kiln end to end vs `buildctl build` + push with the same flags (registry cache import + export)',
        Kiln: ms(r.kiln.median),
        'side by side (same run)': `buildctl ${ms(r.raw.median)}`,
        ratio: `${ratio(r.kiln.median, r.raw.median)} (+${ms(over)})`,
        target: '≤ 1.10× and ≤ 1 s',
      });
      rows.push({
        '#': '1b',
        scenario: 'What the registry cache costs a warm build: buildctl with vs without the cache flags',
        Kiln: '',
        'side by side (same run)': `with ${ms(r.raw.median)}, without ${ms(r.rawNoCache.median)}`,
        ratio: `${ratio(r.raw.median, r.rawNoCache.median)} (+${ms(r.raw.median - r.rawNoCache.median)})`,
        target: 'reported',
      });
    }
    if (ONLY.has('fanout')) {
      log('2. fan-out');
      const r = await benchFanOut(ctx);
      rows.push({
        '#': '2',
        scenario: 'Fan-out: 2-platform build vs the two 1-platform builds one after the other (no cache; arm64 under QEMU)',
        Kiln: ms(r.both.median),
        'side by side (same run)': `sum ${ms(r.sequential.median)} (amd64 ${ms(r.amd64.median)} + arm64 ${ms(r.arm64.median)})`,
        ratio: ratio(r.both.median, r.sequential.median),
        target: '≤ 0.65×',
      });
    }
    if (ONLY.has('reads')) {
      // A finished two-platform build with steps, for the read row.
      const view = await kilnBuild(ctx, {
        repository: 'bench/reads',
        dockerfile: `FROM ${stack.registry}/base/busybox\nRUN echo read > /r\n`,
        platforms: ['linux/amd64', 'linux/arm64'],
        tags: ['reads'],
      });
      readBuildId = view.id;
    }
    if (ONLY.has('lazy')) {
      log('6. lazy pull (cold start)');
      const r = await benchLazyPull(ctx, log);
      const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`;
      const faster = (x: { plain: { median: number }; accelerated: { median: number } }) => `${(x.plain.median / x.accelerated.median).toFixed(2)}× faster`;
      rows.push({
        '#': '6a',
        scenario: `Cold start, large image (${mb(r.large.layerBytes)}: busybox + one layer of 50 × 10 MB incompressible files; the command reads one small file): \`_accelerated\` (stargz, lazy) vs plain (overlayfs, full pull); pull → first line`,
        Kiln: `accelerated ${ms(r.large.accelerated.median)}`,
        'side by side (same run)': `plain ${ms(r.large.plain.median)}`,
        ratio: faster(r.large),
        target: '≥ 2× faster',
      });
      rows.push({
        '#': '6b',
        scenario: `Cold start, small image (busybox + 1 file, ${mb(r.small.layerBytes)}): same comparison`,
        Kiln: `accelerated ${ms(r.small.accelerated.median)}`,
        'side by side (same run)': `plain ${ms(r.small.plain.median)}`,
        ratio: faster(r.small),
        target: 'reported',
      });
      lazyVersions = `containerd ${r.versions.containerd} (Debian), containerd-stargz-grpc ${r.versions.stargzSnapshotter}, ctr-remote ${r.versions.ctrRemote} (Debian)`;
    }
    if (ONLY.has('upload')) {
      log('8. context upload');
      const r = await benchUpload({ url: kiln.url!, token, workDir: ctx.workDir, runs: RUNS });
      rows.push({
        '#': '8',
        scenario: `Local context upload: ${UPLOAD_MIB} MiB directory, \`kiln build --detach\` (tar made while sending) vs \`curl --data-binary\` of its tar, same endpoint`,
        Kiln: `${r.cli.toFixed(0)} MiB/s`,
        'side by side (same run)': `curl ${r.curl.toFixed(0)} MiB/s`,
        ratio: `${(r.cli / r.curl).toFixed(2)}×`,
        target: '≥ 0.8× curl',
      });
    }
    await kiln.close();
    kiln = undefined;

    if (ONLY.has('sandbox')) {
      log('1c. sandbox');
      const stops: ProcessHandle[] = [];
      try {
        // The design before the sandbox: a host-networked buildkitd and the stack's open registry.
        const hostBk = await startBuildkitd({ dataDir: path.join(dataDir, 'bk-host'), unsandboxedForBench: true, log: () => {} });
        stops.push(hostBk.handle);
        kiln = await startKiln(kilnOptions({ 'linux/amd64': hostBk.address, 'linux/arm64': hostBk.address }, 'kiln-open', ['api', 'control', 'build-linux-amd64']));
        const open = await benchSandboxSide({ stack, kiln, token, workDir: path.join(dataDir, 'bench'), runs: RUNS, registry: stack.registry });
        await kiln.close();
        // The bridge and firewall alone (open registry), to tell the two costs apart.
        kiln = await startKiln(kilnOptions(stack.buildkit, 'kiln-bridge', ['api', 'control', 'build-linux-amd64']));
        const bridgeOnly = await benchSandboxSide({ stack, kiln, token, workDir: path.join(dataDir, 'bench'), runs: RUNS, registry: stack.registry });
        await kiln.close();
        kiln = undefined;
        // The sandbox: the stack's bridge buildkitd and a registry whose token issuer is Kiln.
        const keys = await loadOrCreateRegistryTokenKeys(path.join(dataDir, 'secrets'));
        const authRegistry = `127.0.0.1:${PORTS.registry + 1}`;
        kiln = await startKiln({
          ...kilnOptions(stack.buildkit, 'kiln-sandboxed', ['api', 'control', 'build-linux-amd64']),
          registry: authRegistry,
          ownRegistry: true,
          registryTokenSigner: keys,
        });
        const reg = await startRegistry({
          dataDir: path.join(dataDir, 'auth-registry'),
          port: PORTS.registry + 1,
          tokenAuth: { realm: `${kiln.url}/registry/token`, service: REGISTRY_TOKEN_SERVICE, issuer: REGISTRY_TOKEN_ISSUER, rootCertBundle: keys.certFile },
          log: () => {},
        });
        stops.push(reg.handle);
        await ensurePublicRepository(kiln.db.db, BASE_IMAGE_REPO);
        await ensureBaseImage({
          registry: authRegistry,
          buildctl: toolPaths().buildctl,
          buildkitAddr: stack.buildkit['linux/amd64'],
          busybox: toolPaths().busybox,
          workDir: path.join(dataDir, 'auth-base'),
          credentials: { username: REGISTRY_SYSTEM_USER, password: registrySystemPassword(secretKey) },
        });
        const sandboxed = await benchSandboxSide({ stack, kiln, token, workDir: path.join(dataDir, 'bench'), runs: RUNS, registry: authRegistry });
        await kiln.close();
        kiln = undefined;
        rows.push({
          '#': '1c',
          scenario: 'Sandbox: warm build whose one RUN runs; bridge network + firewall + token-auth registry (a credential per build) vs host network + open registry (before the sandbox)',
          Kiln: ms(sandboxed.median),
          'side by side (same run)': `open ${ms(open.median)}; bridge + firewall only ${ms(bridgeOnly.median)}`,
          ratio: `${ratio(sandboxed.median, open.median)} (+${ms(sandboxed.median - open.median)}: network +${ms(bridgeOnly.median - open.median)}, registry auth +${ms(sandboxed.median - bridgeOnly.median)})`,
          target: '≤ 1.05×',
        });
      } finally {
        for (const h of stops.reverse()) await h.stop().catch(() => undefined);
      }
    }

    // ---------------------------------------------------------------- a fresh buildkitd, for the cache row
    if (ONLY.has('cache')) {
      log('3. registry cache on a fresh buildkitd');
      const freshDir = path.join(dataDir, 'fresh-host');
      const fresh = await startBuildkitd({ dataDir: freshDir, log: () => {} });
      try {
        const buildkit = { 'linux/amd64': fresh.address, 'linux/arm64': stack.buildkit['linux/arm64'] };
        kiln = await startKiln(kilnOptions(buildkit, 'kiln-fresh', ['api', 'control', 'build-linux-amd64']));
        const emptyRoot = async () => {
          await fresh.handle.stop();
          rmSync(path.join(freshDir, 'buildkit', 'root'), { recursive: true, force: true });
          await fresh.handle.start();
        };
        const r = await benchCache({ stack, kiln, token, workDir: path.join(dataDir, 'bench'), runs: RUNS }, emptyRoot);
        rows.push({
          '#': '3',
          scenario: `Cache: fresh buildkitd (empty root), Dockerfile with a 3 s step, with the registry cache (${r.cacheHits}/2 steps hit) vs without`,
          Kiln: ms(r.withCache.median),
          'side by side (same run)': `without ${ms(r.without.median)}`,
          ratio: ratio(r.withCache.median, r.without.median),
          target: 'reported',
        });
        await kiln.close();
        kiln = undefined;
      } finally {
        await fresh.handle.stop();
      }
    }

    // ---------------------------------------------------------------- HTTP, against an API process of its own
    if (ONLY.has('reads') && readBuildId) {
      const apiProc = await apiProcess('api', API_PORT);
      try {
        if (ONLY.has('reads') && readBuildId) {
          log('5. reads');
          const r = await benchReads(apiProc, { token, runs: RUNS, buildId: readBuildId });
          if (r.non2xx || r.errors) throw new Error(`reads: ${r.non2xx} non-2xx answers, ${r.errors} errors`);
          rows.push({
            '#': '5',
            scenario: 'Reads: GET /api/v1/builds/:id (2 platforms), Postgres; 10 connections',
            Kiln: `${r.rps.toFixed(0)} req/s`,
            'side by side (same run)': `p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms`,
            ratio: '',
            target: '≥ 2,000 req/s',
          });
        }
      } finally {
        await apiProc.stop();
      }
    }
    // ---------------------------------------------------------------- pushes (issue #10 b)
    // ---------------------------------------------------------------- logs (issue #9)
    if (ONLY.has('logs')) {
      kiln = await startKiln(kilnOptions(stack.buildkit, 'kiln-logs', ['api', 'control', 'build-linux-amd64', 'build-linux-arm64']));
      const ctx: BuildCtx = { stack, kiln, token, workDir: path.join(dataDir, 'bench-logs'), runs: RUNS };
      mkdirSync(ctx.workDir, { recursive: true });
      log('7a. chatty build');
      const chatty = await benchChatty(ctx);
      rows.push({
        '#': '7a',
        scenario: `Chatty build: \`RUN seq 1 ${CHATTY_LINES}\` (${(chatty.bytes / 1e6).toFixed(1)} MB of output, no cache, 1 platform), Kiln end to end (every line stored) vs \`buildctl build\` + push with the same flags`,
        Kiln: ms(chatty.kiln),
        'side by side (same run)': `buildctl ${ms(chatty.raw)}`,
        ratio: ratio(chatty.kiln, chatty.raw),
        target: '≤ 1.2×',
      });
      const apiProc = await apiProcess('api-logs', API_PORT + 1);
      try {
        log('7b. live follow');
        const f = await benchFollow(ctx, apiProc.url);
        rows.push({
          '#': '7b',
          scenario: `Live follow: a RUN prints a line every 200 ms → each of 50 SSE followers (API process of its own, Postgres NOTIFY) receives it (${f.samples} samples)`,
          Kiln: `p50 ${ms(f.p50)}, p99 ${ms(f.p99)} (last line p99 ${ms(f.lastP99)})`,
          'side by side (same run)': `buildctl --progress=plain shows it: p50 ${ms(f.rawP50)}, p99 ${ms(f.rawP99)}`,
          ratio: '',
          target: 'p99 ≤ 1 s',
        });
        log('7c. 64 MiB log, 10 downloads');
        const d = await benchLogDownload(ctx, apiProc.url, apiProc.pid, stack.postgresUrl!);
        const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
        rows.push({
          '#': '7c',
          scenario: `Memory: 10 clients download a ${mib(d.logBytes)} log at once (GET /logs, streamed; ${mib(d.received)} sent in ${d.seconds.toFixed(1)} s)`,
          Kiln: `API peak RSS ${mib(d.peak)}`,
          'side by side (same run)': `RSS before ${mib(d.before)} (+${mib(d.peak - d.before)})`,
          ratio: '',
          target: 'flat (≪ 10 × 64 MiB)',
        });
      } finally {
        await apiProc.stop();
      }
      await kiln.close();
      kiln = undefined;
    }
    // ---------------------------------------------------------------- fair slots (issue #10 a)
    if (ONLY.has('fairness')) {
      // The whole deployment runs 4 builds at once, and namespace A may use all 4: A's flood holds
      // every slot when B asks. No submission limit here (21 builds a run).
      kiln = await startKiln({
        ...kilnOptions(stack.buildkit, 'kiln-fair', ['api', 'control', 'build-linux-amd64']),
        buildCapacity: 4,
        quotaDefaults: { maxConcurrentBuilds: 4, maxTimeoutMinutes: 1440, maxRepositories: 1000, maxRules: 1000 },
        submissionRate: { perMinute: 100_000, burst: 100_000 },
      });
      log('a. fairness');
      const f = await benchFairness({ stack, kiln, token, runs: RUNS });
      rows.push({
        '#': '10a',
        scenario: `Fairness: namespace A submits ${FLOOD} builds (\`RUN sleep ${SLEEP_SECONDS}\`, no cache; 4 slots in the deployment, A may hold all 4), then B submits 1: B's wait from submit to start vs one of A's builds (start to finish)`,
        Kiln: `B waited ${ms(f.wait)}`,
        'side by side (same run)': `one build ${ms(f.duration)}`,
        ratio: `${f.ratio.toFixed(2)}×`,
        target: '≤ 1.0×',
      });
      await kiln.close();
      kiln = undefined;
    }
    console.log(`\nKiln ${process.env.npm_package_version ?? ''} on ${machine()}; medians of ${RUNS} runs\n`);
    printTable(inTableOrder(rows));
    if (lazyVersions) console.log(`\nRow 6: ${lazyVersions}`);
    if (where) {
      console.log('\nWhere a warm 1-platform Kiln build spends its time (row 1; medians, from the workflow history):\n');
      printTable(Object.entries(where).map(([step, t]) => ({ step, median: ms(t) })));
    }
  } catch (err) {
    // What was measured before the failure still counts: print it, then fail.
    if (rows.length) {
      console.log(`\nKiln ${process.env.npm_package_version ?? ''} on ${machine()}; medians of ${RUNS} runs; the bench FAILED after these rows\n`);
      printTable(inTableOrder(rows));
    }
    throw err;
  } finally {
    await kiln?.close().catch(() => undefined);
    await connection.close();
    await stack.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
