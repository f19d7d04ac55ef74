// `npm start`: the whole Kiln stack on one machine (SPEC §7). Each component not configured
// from outside (TEMPORAL_ADDRESS, KILN_REGISTRY, KILN_BUILDKIT_*, DATABASE_URL) is started here
// as a supervised child; Ctrl-C stops everything.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { registryNotificationToken } from '../api/routes/registry-events';
import { ensurePublicRepository } from '../db/queries/repositories';
import { REGISTRY_SYSTEM_USER, REGISTRY_TOKEN_ISSUER, REGISTRY_TOKEN_SERVICE, registrySystemPassword } from '../domain/registry-access';
import { loadEnv } from '../env';
import { setLogLevel } from '../observability/log';
import { BASE_IMAGE_REPO, ensureBaseImage } from './base-image';
import { startKiln } from './kiln';
import { loadOrCreateRegistryTokenKeys } from './registry-token-keys';
import { loadOrCreateSecret } from './secrets';
import { startStack } from './stack';
import { toolPaths } from './tools';

const env = loadEnv();
setLogLevel(env.KILN_LOG_LEVEL);
const dataDir = path.resolve(env.KILN_DATA_DIR);
mkdirSync(dataDir, { recursive: true });
const runsBuilds = env.KILN_COMPONENTS.some((c) => c.startsWith('build-'));
const apiToken = loadOrCreateSecret(dataDir, 'api-token', env.KILN_API_TOKEN);
const secretKey = loadOrCreateSecret(dataDir, 'secret-key', env.KILN_SECRET_KEY);
const publicUrl = env.KILN_PUBLIC_URL ?? `http://${env.HOST}:${env.PORT}`;
// The registry reports every push to /webhooks/registry, so tags pushed by hand are recorded as
// `user push`. A local registry reaches an API in this process over loopback.
const wildcard = ['0.0.0.0', '::', ''].includes(env.HOST);
const apiBase = env.KILN_COMPONENTS.includes('api') ? `http://${wildcard ? '127.0.0.1' : env.HOST}:${env.PORT}` : publicUrl;
const registryNotifications = {
  url: `${apiBase.replace(/\/+$/, '')}/webhooks/registry`,
  token: registryNotificationToken(secretKey.value),
};
// For a registry configured from outside (KILN_REGISTRY): the token to put in its notifications
// endpoint, kept next to the other secrets (it is derived from the secret key, so always current).
{
  const file = path.join(dataDir, 'secrets', 'registry-notifications-token');
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(`${file}.tmp`, `${registryNotifications.token}\n`, { mode: 0o600 });
  chmodSync(`${file}.tmp`, 0o600);
  renameSync(`${file}.tmp`, file);
}

// The registry Kiln starts enforces access, with Kiln's API as its token realm (SPEC §2 Isolation).
// KILN_REGISTRY_TOKEN_AUTH: a registry started elsewhere (docker compose) that trusts Kiln the same way.
const ownRegistry = !env.KILN_REGISTRY || env.KILN_REGISTRY_TOKEN_AUTH;
const tokenKeys = ownRegistry ? await loadOrCreateRegistryTokenKeys(path.join(dataDir, 'secrets')) : undefined;
const registryTokenAuth = tokenKeys && !env.KILN_REGISTRY
  ? {
      realm: `${(env.KILN_PUBLIC_URL ?? apiBase).replace(/\/+$/, '')}/registry/token`,
      service: REGISTRY_TOKEN_SERVICE,
      issuer: REGISTRY_TOKEN_ISSUER,
      rootCertBundle: tokenKeys.certFile,
    }
  : undefined;

console.log(`kiln: data dir ${dataDir}`);
const stack = await startStack({
  registryTokenAuth,
  dataDir,
  temporalAddress: env.TEMPORAL_ADDRESS,
  registry: env.KILN_REGISTRY,
  // A process that runs no build worker needs no buildkitd: give it placeholders.
  buildkitAmd64: env.KILN_BUILDKIT_AMD64 ?? (runsBuilds ? undefined : 'none'),
  buildkitArm64: env.KILN_BUILDKIT_ARM64 ?? (runsBuilds ? undefined : 'none'),
  ensureTools: !env.KILN_SKIP_TOOL_SETUP,
  registryMirrors: env.KILN_REGISTRY_MIRRORS,
  buildNetworkAllow: env.KILN_BUILD_NETWORK_ALLOW,
  registryNotifications,
  log: (msg) => console.log(`kiln: ${msg}`),
});

const buildctl = toolPaths().buildctl;
const run = promisify(execFile);
const kiln = await startKiln({
  dataDir,
  host: env.HOST,
  port: env.PORT,
  databaseUrl: env.DATABASE_URL,
  temporalAddress: stack.temporalAddress,
  temporalNamespace: env.TEMPORAL_NAMESPACE,
  temporalUiUrl: env.TEMPORAL_UI_URL ?? stack.temporalUiUrl,
  registry: stack.registry,
  registryCredentials:
    env.KILN_REGISTRY_USERNAME && env.KILN_REGISTRY_PASSWORD
      ? { username: env.KILN_REGISTRY_USERNAME, password: env.KILN_REGISTRY_PASSWORD }
      : undefined,
  ownRegistry,
  registryTokenSigner: tokenKeys,
  buildPool: env.KILN_BUILD_POOL,
  buildkit: stack.buildkit,
  buildctl,
  apiToken: apiToken.value,
  secretKey: secretKey.value,
  publicUrl,
  gitApiUrls: env.KILN_GIT_API_URLS,
  maxBodyBytes: env.KILN_MAX_BODY_BYTES,
  maxContextBytes: env.KILN_MAX_CONTEXT_BYTES,
  contextRetentionMs: env.KILN_CONTEXT_RETENTION_HOURS * 3600_000,
  maxLogBytes: env.KILN_MAX_LOG_BYTES,
  buildConcurrency: env.KILN_BUILD_CONCURRENCY,
  metricsToken: env.KILN_METRICS_TOKEN,
  metricsPort: env.KILN_METRICS_PORT,
  logFollowers: { perBuild: env.KILN_MAX_LOG_FOLLOWERS_PER_BUILD, perToken: env.KILN_MAX_LOG_FOLLOWERS_PER_TOKEN },
  components: env.KILN_COMPONENTS,
  quotaDefaults: {
    maxConcurrentBuilds: env.KILN_NAMESPACE_MAX_CONCURRENT_BUILDS,
    maxTimeoutMinutes: env.KILN_NAMESPACE_MAX_TIMEOUT_MINUTES,
    maxRepositories: env.KILN_NAMESPACE_MAX_REPOSITORIES,
    maxRules: env.KILN_NAMESPACE_MAX_RULES,
  },
  buildCapacity: env.KILN_MAX_CONCURRENT_BUILDS,
  submissionRate: { perMinute: env.KILN_SUBMISSIONS_PER_MINUTE, burst: env.KILN_SUBMISSION_BURST },
  readiness: runsBuilds
    ? Object.fromEntries(
        Object.entries(stack.buildkit).map(([platform, addr]) => [
          `buildkit-${platform.replace('/', '-')}`,
          async () => {
            await run(buildctl, ['--addr', addr, 'debug', 'workers'], { timeout: 5000 });
          },
        ]),
      )
    : {},
}).catch(async (err) => {
  await stack.stop();
  throw err;
});

// Kiln's own base image: pushed now that the realm answers, and public (anyone may pull it).
if (ownRegistry && runsBuilds && !env.KILN_BUILDKIT_AMD64) {
  await ensurePublicRepository(kiln.db.db, BASE_IMAGE_REPO);
  await ensureBaseImage({
    registry: stack.registry,
    buildctl,
    buildkitAddr: stack.buildkit['linux/amd64'],
    busybox: toolPaths().busybox,
    workDir: path.join(dataDir, 'base-image'),
    credentials: { username: REGISTRY_SYSTEM_USER, password: registrySystemPassword(secretKey.value) },
    log: (msg) => console.log(`kiln: ${msg}`),
  }).catch(async (err) => {
    await kiln.close();
    await stack.stop();
    throw err;
  });
}

console.log(`
Kiln is running (${env.KILN_COMPONENTS.join(', ')})
  API          ${kiln.url ?? '(not in this process)'}/api/v1
  API docs     ${kiln.url ?? ''}/docs
  Metrics      ${kiln.metricsUrl ?? '(not served: no API here; set KILN_METRICS_PORT)'}
  Temporal UI  ${env.TEMPORAL_UI_URL ?? stack.temporalUiUrl ?? '(external Temporal)'}
  Registry     ${stack.registry}  (base image: ${stack.registry}/base/busybox)${
    env.KILN_REGISTRY
      ? `\n               its notifications: POST ${publicUrl.replace(/\/+$/, '')}/webhooks/registry, Authorization: Bearer <${path.join(dataDir, 'secrets/registry-notifications-token')}>`
      : ''
  }
  Database     ${kiln.db.kind}
  API token    ${
    // A token given in the environment is the operator's secret already: never echo it into logs.
    env.KILN_API_TOKEN
      ? '(from KILN_API_TOKEN, not shown)'
      : apiToken.generated
        ? apiToken.value
        : `${apiToken.value}  (from ${path.join(dataDir, 'secrets/api-token')})`
  }
Press Ctrl-C to stop.
`);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`kiln: ${signal}, stopping`);
  const force = setTimeout(() => process.exit(1), 30_000);
  force.unref();
  await kiln.close().catch((err) => console.error('kiln: close failed', err));
  await stack.stop().catch((err) => console.error('kiln: stack stop failed', err));
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
kiln.workers.done.catch(async (err) => {
  console.error('kiln: a worker stopped unexpectedly', err);
  await shutdown('worker failure');
});
