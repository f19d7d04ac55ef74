// The API's shared types: what createApp receives (AppDeps) and what a request carries (AppEnv).
// In a module of their own so the routes do not import api/app.ts, which imports them.
import type { CryptoKey as JoseKey } from 'jose';
import type { RegistryClient } from '../activities/registry';
import type { Db } from '../db/client';
import type { BuildLogSignals } from '../db/log-signals';
import type { Logger } from '../observability/log';
import type { NamespaceQuotas } from '../domain/quotas';
import type { BuildStarter } from './build-starter';
import type { PushDispatcher } from './push-dispatcher';
import type { SubmissionLimiter, SubmissionRate } from './submission-limits';
import type { DeliveryStarter } from '../domain/notifications';
import type { RuleScheduler } from './rule-schedules';

/**
 * Who is calling. Only the admin token exists today; a namespace-scoped token resolves to the
 * `namespace` kind and is refused (403) outside its namespace by `requireNamespace`.
 */
export type Principal = { kind: 'admin' } | { kind: 'namespace'; namespace: string };

/** Resolves a bearer token to a principal, or null when the token is unknown. */
export type Authenticate = (token: string) => Principal | null | Promise<Principal | null>;

export interface AppEnv {
  /** requestId (hono/request-id) and log (that request's logger) are set for every request. */
  Variables: { principal: Principal; requestId: string; log: Logger };
}

/** Where uploaded local contexts go (POST /contexts). */
export interface ContextConfig {
  registry: RegistryClient;
  maxContextBytes: number;
  retentionMs: number;
}

/** Signs registry tokens at /registry/token. */
export interface RegistryTokenSigner {
  /** libtrust key id of the signing key (infra/registry-token-keys.ts). */
  kid: string;
  privateKey: JoseKey;
}

export interface AppConfig {
  apiToken: string;
  maxBodyBytes: number;
  /** Base URL of the Temporal UI, for links from a build; null hides them. */
  temporalUiUrl: string | null;
  temporalNamespace: string;
  /** host:port the images go to. */
  registry: string;
  /** KILN_SECRET_KEY: encrypts stored git tokens and webhook secrets (db/crypto.ts). */
  secretKey: string;
  /** Externally reachable base URL of this API, for the webhook URLs given to git hosts. */
  publicUrl: string;
  /** Live log followers per build and per token (KILN_MAX_LOG_FOLLOWERS_*); 100 each unless set. */
  logFollowers?: { perBuild: number; perToken: number };
  /** KILN_METRICS_TOKEN: when set, GET /metrics requires `Authorization: Bearer <it>`. */
  metricsToken?: string;
  /** KILN_NAMESPACE_MAX_*: quotas of namespaces that have none of their own (domain/quotas.ts defaults). */
  quotaDefaults?: NamespaceQuotas;
  /** KILN_SUBMISSIONS_PER_MINUTE / KILN_SUBMISSION_BURST per namespace (api/submission-limits.ts defaults). */
  submissionRate?: SubmissionRate;
}

export interface AppDeps {
  db: Db;
  /** Wakes log followers when a build's log or status changes (DbHandle.logSignals). */
  logSignals: BuildLogSignals;
  config: AppConfig;
  builds: BuildStarter;
  /** Starts the PushWorkflow of each recorded webhook delivery; without it the webhook routes answer 503. */
  pushes?: PushDispatcher;
  /** name → throws when not ready (temporal, buildkit-linux-amd64, registry, ...); a database check is built in. */
  readiness?: Record<string, () => Promise<void>>;
  /** Where uploaded local contexts go (POST /contexts); without it that route answers 503. */
  contexts?: ContextConfig;
  /** Resolves bearer tokens; defaults to the single admin token `config.apiToken`. */
  authenticate?: Authenticate;
  /** Signs registry tokens when Kiln is its registry's token issuer (unset: /registry/token answers 404). */
  registryTokenSigner?: RegistryTokenSigner;
  /** Starts notification deliveries (registry pushes, redeliveries); without it those answer 503. */
  deliveries?: DeliveryStarter;
  /** Keeps rules' cron schedules as Temporal Schedules; without it a rule with schedules answers 503. */
  schedules?: RuleScheduler;
  /** Made by createApp from config.submissionRate unless given (one per app: buckets live in memory). */
  submissionLimiter?: SubmissionLimiter;
  /** Where the API logs (a child with each request's id); defaults to the process's root logger. */
  logger?: Logger;
}
