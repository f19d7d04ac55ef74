// What a namespace may ask for: the submission rate (a token bucket per namespace, in this API
// process) and the quotas checked when a build, repository or rule is created. Each refusal is a
// 4xx that changes nothing.
import type { Db } from '../db/client';
import { countRepositories, countRules, lockNamespace } from '../db/queries/namespaces';
import type { Namespace } from '../db/schema';
import { DEFAULT_SUBMISSION_RATE, effectiveQuotas, type NamespaceQuotas, type SubmissionRate } from '../domain/quotas';
import { ApiError } from './errors';

export { DEFAULT_SUBMISSION_RATE, type SubmissionRate } from '../domain/quotas';

/** One token bucket per namespace: `take` spends a token or throws 429 with Retry-After. */
export function createSubmissionLimiter(rate: SubmissionRate = DEFAULT_SUBMISSION_RATE, now: () => number = Date.now) {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const perMs = rate.perMinute / 60_000;
  return {
    take(namespace: string): void {
      const t = now();
      const b = buckets.get(namespace) ?? { tokens: rate.burst, at: t };
      b.tokens = Math.min(rate.burst, b.tokens + (t - b.at) * perMs);
      b.at = t;
      buckets.set(namespace, b);
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return;
      }
      const retryAfter = Math.max(1, Math.ceil((1 - b.tokens) / perMs / 1000));
      throw new ApiError(
        'too_many_requests',
        `Namespace "${namespace}" submits more than ${rate.perMinute} builds per minute (bursts of ${rate.burst}); retry in ${retryAfter} s`,
        { namespace, perMinute: rate.perMinute, burst: rate.burst, retryAfterSeconds: retryAfter },
        { 'Retry-After': String(retryAfter) },
      );
    },
  };
}

export type SubmissionLimiter = ReturnType<typeof createSubmissionLimiter>;

function quotaExceeded(ns: Namespace, what: keyof NamespaceQuotas, limit: number, message: string): ApiError {
  return new ApiError('unprocessable', message, { namespace: ns.name, quota: what, limit });
}

/** A build's or rule's timeoutMinutes within the namespace's maxTimeoutMinutes, else 422 naming it. */
export function assertTimeoutWithinQuota(ns: Namespace, timeoutMinutes: number, defaults?: NamespaceQuotas): void {
  const { maxTimeoutMinutes } = effectiveQuotas(ns, defaults);
  if (timeoutMinutes > maxTimeoutMinutes) {
    throw quotaExceeded(
      ns,
      'maxTimeoutMinutes',
      maxTimeoutMinutes,
      `timeoutMinutes ${timeoutMinutes} is above namespace "${ns.name}"'s maxTimeoutMinutes of ${maxTimeoutMinutes}`,
    );
  }
}

/** Room for one more repository (inside the creating transaction: it locks the namespace row). */
export async function assertRepositoryQuota(tx: Db, ns: Namespace, defaults?: NamespaceQuotas): Promise<void> {
  const { maxRepositories } = effectiveQuotas(ns, defaults);
  await lockNamespace(tx, ns.id);
  if ((await countRepositories(tx, ns.id)) >= maxRepositories) {
    throw quotaExceeded(ns, 'maxRepositories', maxRepositories, `Namespace "${ns.name}" holds its maximum of ${maxRepositories} repositories`);
  }
}

/** Room for one more rule (inside the creating transaction: it locks the namespace row). */
export async function assertRuleQuota(tx: Db, ns: Namespace, defaults?: NamespaceQuotas): Promise<void> {
  const { maxRules } = effectiveQuotas(ns, defaults);
  await lockNamespace(tx, ns.id);
  if ((await countRules(tx, ns.id)) >= maxRules) {
    throw quotaExceeded(ns, 'maxRules', maxRules, `Namespace "${ns.name}" holds its maximum of ${maxRules} build rules`);
  }
}

const limiters = new WeakMap<object, SubmissionLimiter>();

/** The app's one limiter (routes share their deps object), made from config.submissionRate. */
export function submissionLimiter(deps: { config: { submissionRate?: SubmissionRate }; submissionLimiter?: SubmissionLimiter }): SubmissionLimiter {
  if (deps.submissionLimiter) return deps.submissionLimiter;
  let limiter = limiters.get(deps);
  if (!limiter) limiters.set(deps, (limiter = createSubmissionLimiter(deps.config.submissionRate)));
  return limiter;
}
