/**
 * The local, single-machine stack Kiln runs on (SPEC §1, §6): Temporal dev server, a CNCF
 * Distribution registry, one buildkitd that builds linux/amd64 and linux/arm64 (arm64 through
 * QEMU binfmt), and optionally Postgres. Each part configured from outside is skipped.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ensureBaseImage } from './base-image.js';
import { type NetworkAllowEntry } from './build-network.js';
import { type ProcessHandle } from './supervisor.js';
import { ensureTools as runSetupTools, toolPaths } from './tools.js';
import { DEFAULT_PORTS, httpStatus, isLoopback, logsDir } from './stack-common.js';
import { startTemporalDevServer } from './temporal-dev-server.js';
import { startRegistry, type RegistryTokenAuth } from './registry-server.js';
import { startBuildkitd, type RegistryMirrors } from './buildkitd.js';
import { startPostgres } from './postgres.js';

// One module per service (stack-common, temporal-dev-server, registry-server, buildkitd,
// postgres); this module starts them together. Import a service's own parts from its module.

export interface StackOptions {
  dataDir: string;
  /** Use this Temporal frontend (host:port); start no dev server. */
  temporalAddress?: string;
  /** Use this registry (host:port); start none. */
  registry?: string;
  /** Use these buildkitd addresses (unix:// or tcp://); a local one serves any arch not given. */
  buildkitAmd64?: string;
  buildkitArm64?: string;
  ports?: { temporal?: number; temporalUi?: number; registry?: number; postgres?: number };
  withPostgres?: boolean;
  /** Pull-through mirrors for the local buildkitd (KILN_REGISTRY_MIRRORS); see buildkitdToml. */
  registryMirrors?: RegistryMirrors;
  /** Exceptions to the build firewall of the local buildkitd (KILN_BUILD_NETWORK_ALLOW). */
  buildNetworkAllow?: NetworkAllowEntry[];
  /** Registry events (pushes, deletes) are POSTed here with `Authorization: Bearer <token>`. */
  registryNotifications?: { url: string; token: string };
  /** Start the local registry with token auth, Kiln as the issuer. */
  registryTokenAuth?: RegistryTokenAuth;
  log?: (msg: string) => void;
  /** Run infra/setup-tools.sh first (default true; it is quick when everything is present). */
  ensureTools?: boolean;
  /** Push the busybox base image (base/busybox:latest) if missing (default: when a local buildkitd runs). */
  baseImage?: boolean;
}

export interface Stack {
  temporalAddress: string;
  temporalUiUrl: string | null;
  /** host:port */
  registry: string;
  /** unix:///... (or whatever address was given) per platform */
  buildkit: { 'linux/amd64': string; 'linux/arm64': string };
  postgresUrl?: string;
  components: Record<string, ProcessHandle>;
  stop(): Promise<void>;
}

// ------------------------------------------------------------------ the whole stack

export async function startStack(opts: StackOptions): Promise<Stack> {
  const log = opts.log ?? ((m: string) => console.error(`[kiln-stack] ${m}`));
  const dataDir = resolve(opts.dataDir);
  mkdirSync(logsDir(dataDir), { recursive: true });
  if (opts.ensureTools !== false) await runSetupTools();
  const tools = toolPaths();
  const ports = { ...DEFAULT_PORTS, ...opts.ports };

  // Registered in start order; stop() goes in reverse.
  const started: Array<[string, ProcessHandle]> = [];
  const stopAll = async () => {
    for (const [name, h] of [...started].reverse()) {
      try {
        await h.stop();
      } catch (err) {
        log(`stopping ${name} failed: ${(err as Error).message}`);
      }
    }
  };
  const track = <T extends { handle: ProcessHandle }>(name: string, p: Promise<T>): Promise<T> =>
    p.then((r) => {
      started.push([name, r.handle]);
      return r;
    });

  let plainHttp: string[] = [];
  if (opts.registry && !isLoopback(opts.registry)) {
    // An outside registry that answers plain HTTP needs buildkitd's `http = true` for its host.
    const s = await httpStatus(`http://${opts.registry}/v2/`);
    if (s === 200 || s === 401) plainHttp = [opts.registry];
  }
  const needLocalBuildkit = !opts.buildkitAmd64 || !opts.buildkitArm64;

  const results = await Promise.allSettled([
    opts.temporalAddress
      ? Promise.resolve(undefined)
      : track('temporal', startTemporalDevServer({ dataDir, port: ports.temporal, uiPort: ports.temporalUi, temporalBin: tools.temporal, log })),
    opts.registry
      ? Promise.resolve(undefined)
      : track('registry', startRegistry({ dataDir, port: ports.registry, notifications: opts.registryNotifications, tokenAuth: opts.registryTokenAuth, log })),
    needLocalBuildkit
      ? track('buildkitd', startBuildkitd({ dataDir, plainHttpRegistries: plainHttp, registryMirrors: opts.registryMirrors, networkAllow: opts.buildNetworkAllow, busyboxArm64: tools.busybox.arm64, log }))
      : Promise.resolve(undefined),
    opts.withPostgres ? track('postgres', startPostgres({ dataDir, port: ports.postgres, pgBin: tools.pgBin, log })) : Promise.resolve(undefined),
  ]);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failures.length) {
    await stopAll();
    throw new Error(`Kiln stack failed to start:\n${failures.map((f) => `- ${(f.reason as Error)?.message ?? f.reason}`).join('\n')}`);
  }
  const [temporal, registry, buildkitd, postgres] = results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
    Awaited<ReturnType<typeof startTemporalDevServer>> | undefined,
    Awaited<ReturnType<typeof startRegistry>> | undefined,
    Awaited<ReturnType<typeof startBuildkitd>> | undefined,
    Awaited<ReturnType<typeof startPostgres>> | undefined,
  ];

  const localBk = buildkitd?.address;
  const stack: Stack = {
    temporalAddress: opts.temporalAddress ?? temporal!.address,
    temporalUiUrl: temporal?.uiUrl ?? null,
    registry: opts.registry ?? registry!.address,
    buildkit: {
      'linux/amd64': opts.buildkitAmd64 ?? localBk!,
      'linux/arm64': opts.buildkitArm64 ?? localBk!,
    },
    postgresUrl: postgres?.url,
    components: Object.fromEntries(started),
    stop: stopAll,
  };

  // The base image is made with the local buildkitd (it builds both platforms); with only outside
  // builders (e.g. docker compose) it is opt-in, as those hosts need not have busybox binaries.
  // With token auth the realm (Kiln's API) is not up yet: infra/start.ts pushes it once it is.
  if (opts.baseImage ?? (!!localBk && !opts.registryTokenAuth)) {
    try {
      await ensureBaseImage({
        registry: stack.registry,
        buildctl: tools.buildctl,
        buildkitAddr: localBk ?? stack.buildkit['linux/amd64'],
        busybox: tools.busybox,
        workDir: join(dataDir, 'base-image'),
        insecure: plainHttp.length > 0,
        log,
      });
    } catch (err) {
      await stopAll();
      throw err;
    }
  }
  log(
    `stack ready: temporal ${stack.temporalAddress}${stack.temporalUiUrl ? ` (UI ${stack.temporalUiUrl})` : ''}, registry ${stack.registry}, ` +
      `buildkit ${stack.buildkit['linux/amd64']}${stack.buildkit['linux/arm64'] !== stack.buildkit['linux/amd64'] ? ` + ${stack.buildkit['linux/arm64']}` : ''}` +
      (stack.postgresUrl ? `, postgres ${stack.postgresUrl}` : ''),
  );
  return stack;
}
