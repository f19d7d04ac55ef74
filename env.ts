import { z } from 'zod';
import { parseNetworkAllow } from './infra/build-network';
import { GIT_HOST_PROVIDERS, type GitHostProvider } from './domain/git-hosts';
import { DEFAULT_BUILD_CAPACITY, DEFAULT_NAMESPACE_QUOTAS, DEFAULT_SUBMISSION_RATE, TIMEOUT_MINUTES_CEILING } from './domain/quotas';

export { PLATFORMS, type Platform } from './domain/platforms';

export const COMPONENTS = ['api', 'control', 'build-linux-amd64', 'build-linux-arm64'] as const;
export type Component = (typeof COMPONENTS)[number];

const optionalString = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .optional();

const bool = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no'])
  .transform((v) => v === '1' || v === 'true' || v === 'yes');

/**
 * `KILN_REGISTRY_MIRRORS`: comma-separated `registry=mirror` pairs, e.g.
 * `docker.io=127.0.0.1:5001,docker.io=http://mirror.lan:5000,ghcr.io=mirror.lan:5002`; a registry
 * named twice gets its mirrors in that order. Mirrors are `host[:port]`, `http://` for a
 * plain-HTTP one off loopback. Applies to the buildkitd Kiln starts (KILN_BUILDKIT_* unset).
 */
const registryMirrors = z
  .string()
  .default('')
  .transform((v, ctx) => {
    const out: Record<string, string[]> = {};
    for (const pair of v.split(',').map((s) => s.trim()).filter(Boolean)) {
      const m = /^([a-z0-9.-]+(?::\d+)?)=((?:https?:\/\/)?(?:[A-Za-z0-9.-]+|\[[0-9a-f:]+\])(?::\d+)?)\/?$/i.exec(pair);
      if (!m) {
        ctx.addIssue({ code: 'custom', message: `"${pair}" is not registry=mirror (e.g. docker.io=127.0.0.1:5001)` });
        return z.NEVER;
      }
      (out[m[1]!.toLowerCase()] ??= []).push(m[2]!);
    }
    return out;
  });

/** `KILN_BUILD_NETWORK_ALLOW`: CIDRs, addresses or host:port a RUN step may reach (infra/build-network.ts). */
const networkAllow = z
  .string()
  .default('')
  .transform((v, ctx) => {
    try {
      return parseNetworkAllow(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

/**
 * `KILN_GIT_API_URLS`: `provider=url` pairs, e.g. `github=https://ghe.corp/api/v3,gitlab=https://git.corp/api/v4`,
 * for a host whose API is not where the clone URL suggests (activities/commit-status-api.ts derives it otherwise).
 */
const gitApiUrls = z
  .string()
  .default('')
  .transform((v, ctx) => {
    const out: Partial<Record<GitHostProvider, string>> = {};
    for (const pair of v.split(',').map((s) => s.trim()).filter(Boolean)) {
      const m = /^([a-z]+)=(https?:\/\/\S+)$/.exec(pair);
      if (!m || !(GIT_HOST_PROVIDERS as readonly string[]).includes(m[1]!)) {
        ctx.addIssue({ code: 'custom', message: `"${pair}" is not provider=http(s)://url with provider one of ${GIT_HOST_PROVIDERS.join(', ')}` });
        return z.NEVER;
      }
      out[m[1] as GitHostProvider] = m[2]!.replace(/\/+$/, '');
    }
    return out;
  });

/** Configuration from the environment (SPEC §6), parsed once. Unset means "start it locally". */
export const envSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().default('127.0.0.1'),
  KILN_DATA_DIR: z.string().default('./.kiln'),
  DATABASE_URL: optionalString.pipe(z.string().url().optional()),
  TEMPORAL_ADDRESS: optionalString,
  TEMPORAL_NAMESPACE: z.string().default('default'),
  TEMPORAL_UI_URL: optionalString,
  KILN_REGISTRY: optionalString,
  KILN_REGISTRY_USERNAME: optionalString,
  KILN_REGISTRY_PASSWORD: optionalString,
  /** KILN_REGISTRY trusts Kiln as its token issuer (as in infra/docker-compose.yml): Kiln serves the realm and gives builds their own credentials. */
  KILN_REGISTRY_TOKEN_AUTH: bool.default(false),
  KILN_BUILDKIT_AMD64: optionalString,
  KILN_BUILDKIT_ARM64: optionalString,
  KILN_REGISTRY_MIRRORS: registryMirrors,
  KILN_BUILD_NETWORK_ALLOW: networkAllow,
  /** This process's build workers serve only this dedicated pool (task queues `kiln-build-<os>-<arch>@<pool>`). */
  KILN_BUILD_POOL: optionalString.pipe(z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'KILN_BUILD_POOL is lowercase letters, digits and "-"').optional()),
  KILN_API_TOKEN: optionalString.pipe(z.string().min(16, 'KILN_API_TOKEN must be at least 16 characters').optional()),
  KILN_SECRET_KEY: optionalString,
  /** Base of the webhook URLs given to git hosts and of the build links in commit statuses. */
  KILN_PUBLIC_URL: optionalString,
  KILN_GIT_API_URLS: gitApiUrls,
  KILN_MAX_BODY_BYTES: z.coerce.number().int().positive().default(1024 * 1024),
  /** Largest local build context (`kiln build DIR`) accepted; 413 beyond. */
  KILN_MAX_CONTEXT_BYTES: z.coerce.number().int().positive().default(512 * 1024 * 1024),
  /** Uploaded contexts no build used for this long are removed from the registry. */
  KILN_CONTEXT_RETENTION_HOURS: z.coerce.number().positive().default(24),
  /** Log bytes one build may store (all platforms); beyond it the log ends with a truncation marker. */
  KILN_MAX_LOG_BYTES: z.coerce.number().int().positive().default(64 * 1024 * 1024),
  /** Live log followers (`GET /builds/:id/logs?follow=1`) per build and per token; more get 429. */
  KILN_MAX_LOG_FOLLOWERS_PER_BUILD: z.coerce.number().int().positive().default(100),
  KILN_MAX_LOG_FOLLOWERS_PER_TOKEN: z.coerce.number().int().positive().default(100),
  /** Builds one build worker process runs at once, per platform (Temporal activity slots). */
  KILN_BUILD_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(8),
  /** Which parts this process runs; split them across hosts to scale out. */
  KILN_COMPONENTS: z
    .string()
    .default(COMPONENTS.join(','))
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(z.enum(COMPONENTS)).min(1)),
  KILN_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  /** Logs are JSON lines, printed readably on a terminal unless `json` (observability/log.ts). */
  KILN_LOG_FORMAT: z.enum(['auto', 'json']).default('auto'),
  /** When set, GET /metrics requires `Authorization: Bearer <it>`. */
  /** A process without the API serves GET /metrics alone on this port (its build metrics are its own). */
  KILN_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  KILN_METRICS_TOKEN: optionalString.pipe(z.string().min(16, 'KILN_METRICS_TOKEN must be at least 16 characters').optional()),
  KILN_SKIP_TOOL_SETUP: bool.default(false),
  /** Per-namespace quotas where an admin set none (PATCH /namespaces/{name}); domain/quotas.ts. */
  KILN_NAMESPACE_MAX_CONCURRENT_BUILDS: z.coerce.number().int().min(1).max(1000).default(DEFAULT_NAMESPACE_QUOTAS.maxConcurrentBuilds),
  KILN_NAMESPACE_MAX_TIMEOUT_MINUTES: z.coerce.number().int().min(1).max(TIMEOUT_MINUTES_CEILING).default(DEFAULT_NAMESPACE_QUOTAS.maxTimeoutMinutes),
  KILN_NAMESPACE_MAX_REPOSITORIES: z.coerce.number().int().min(0).max(1_000_000).default(DEFAULT_NAMESPACE_QUOTAS.maxRepositories),
  KILN_NAMESPACE_MAX_RULES: z.coerce.number().int().min(0).max(1_000_000).default(DEFAULT_NAMESPACE_QUOTAS.maxRules),
  /** Builds running at once per build pool, all namespaces together (what the pool's build workers run at once). */
  KILN_MAX_CONCURRENT_BUILDS: z.coerce.number().int().min(1).max(100_000).default(DEFAULT_BUILD_CAPACITY),
  /** Build submissions per namespace: a token bucket refilled at this rate, holding this many; more get 429. */
  KILN_SUBMISSIONS_PER_MINUTE: z.coerce.number().positive().default(DEFAULT_SUBMISSION_RATE.perMinute),
  KILN_SUBMISSION_BURST: z.coerce.number().int().min(1).default(DEFAULT_SUBMISSION_RATE.burst),
});

export type Env = z.infer<typeof envSchema>;

export function parseEnv(source: Record<string, string | undefined> = process.env): Env {
  return envSchema.parse(source);
}

/** Parses process.env or exits with a readable list of what is wrong. */
export function loadEnv(): Env {
  const result = envSchema.safeParse(process.env);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    console.error(`Invalid configuration:\n${lines.join('\n')}`);
    process.exit(1);
  }
  return result.data;
}
