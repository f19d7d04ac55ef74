// Per-namespace quotas: each namespace column is null until an admin sets it, and null means the
// deployment's default (KILN_NAMESPACE_MAX_*). Imported by the workflow sandbox: no Node imports.

export interface NamespaceQuotas {
  /** Builds of the namespace running at once; more wait as `queued`. */
  maxConcurrentBuilds: number;
  /** Largest `timeoutMinutes` a build of the namespace may ask for. */
  maxTimeoutMinutes: number;
  /** Repositories the namespace may hold. */
  maxRepositories: number;
  /** Build rules, over all of the namespace's repositories. */
  maxRules: number;
}

export const QUOTA_KEYS = ['maxConcurrentBuilds', 'maxTimeoutMinutes', 'maxRepositories', 'maxRules'] as const;

/** The schema's own ceiling for timeoutMinutes (a day). */
export const TIMEOUT_MINUTES_CEILING = 1440;

export const DEFAULT_NAMESPACE_QUOTAS: NamespaceQuotas = {
  maxConcurrentBuilds: 4,
  maxTimeoutMinutes: TIMEOUT_MINUTES_CEILING,
  maxRepositories: 1000,
  maxRules: 1000,
};

/** KILN_MAX_CONCURRENT_BUILDS: builds running at once per build pool, all namespaces together. */
export const DEFAULT_BUILD_CAPACITY = 8;

/** What holds for a namespace: its own values where set, else the deployment's defaults. */
export function effectiveQuotas(
  ns: { [K in keyof NamespaceQuotas]: number | null },
  defaults: NamespaceQuotas = DEFAULT_NAMESPACE_QUOTAS,
): NamespaceQuotas {
  return {
    maxConcurrentBuilds: ns.maxConcurrentBuilds ?? defaults.maxConcurrentBuilds,
    maxTimeoutMinutes: ns.maxTimeoutMinutes ?? defaults.maxTimeoutMinutes,
    maxRepositories: ns.maxRepositories ?? defaults.maxRepositories,
    maxRules: ns.maxRules ?? defaults.maxRules,
  };
}

export interface SubmissionRate {
  /** Builds a namespace may submit per minute, sustained. */
  perMinute: number;
  /** Builds it may submit at once after a quiet spell (the bucket's size). */
  burst: number;
}

/** KILN_SUBMISSIONS_PER_MINUTE, KILN_SUBMISSION_BURST. */
export const DEFAULT_SUBMISSION_RATE: SubmissionRate = { perMinute: 60, burst: 30 };
