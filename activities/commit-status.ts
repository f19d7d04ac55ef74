// Commit statuses back to the git host (workflows/commit-status.ts calls these). Everything is
// read here from the database, the repository's token included, so no secret travels through
// Temporal. A refusal (token, scope, unknown repository) writes one line to the build log and is
// not retried; a host that is down or busy throws, and Temporal retries with backoff.
import { Context } from '@temporalio/activity';
import type { Db } from '../db/client';
import { decryptSecret } from '../db/crypto';
import { getBuild, type BuildWithDetails } from '../db/queries/builds';
import { appendBuildLogs } from '../db/queries/logs';
import { getRepository } from '../db/queries/repositories';
import { getRule } from '../db/queries/rules';
import type { Repository } from '../db/schema';
import { isGitHostProvider, type GitHostProvider } from '../domain/git-hosts';
import { activityLog } from '../observability/log';
import { classifyStatusAnswer, commitStatusRequest, STATUS_SCOPE_HINT, type CommitStatus } from './commit-status-api';

export interface CommitStatusDeps {
  db: Db;
  secretKey: string;
  /** KILN_PUBLIC_URL: build links point at `<it>/builds/<id>` (a function: tests learn it once the API listens). */
  publicUrl: () => string;
  /** KILN_GIT_API_URLS: an API base per host, instead of the one derived from the clone URL. */
  apiUrls?: Partial<Record<GitHostProvider, string>>;
  /** One request's time limit; a slow host is retried like a down one. */
  requestTimeoutMs?: number;
}

export type StatusPhase = 'started' | 'finished';
/** `refused` and `skipped` end the reporting: nothing more is sent for this build. */
export type StatusOutcome = 'posted' | 'refused' | 'skipped';

/** Builds of a rule or a push on a git host, with a commit, report their status. */
function reports(build: BuildWithDetails, repo: Repository | undefined): repo is Repository & { sourceProvider: GitHostProvider; sourceUrl: string } {
  if (!repo || !isGitHostProvider(repo.sourceProvider) || !repo.sourceUrl) return false;
  if (build.dockerfile !== null || build.contextDigest !== null) return false;
  return build.ruleId !== null || build.trigger === 'push' || build.trigger === 'tag';
}

function statusOf(build: BuildWithDetails, phase: StatusPhase): Pick<CommitStatus, 'state' | 'description'> {
  if (phase === 'started') return { state: 'pending', description: 'Kiln is building the image' };
  switch (build.status) {
    case 'succeeded':
      return { state: 'success', description: `Image built: ${build.repository}${build.pushedTags[0] ? `:${build.pushedTags[0]}` : ''}` };
    case 'failed':
      return { state: 'failure', description: build.errorCode ?? 'build_failed' };
    case 'canceled':
      return { state: 'canceled', description: build.errorCode ?? 'canceled' };
    case 'timed_out':
      return { state: 'error', description: 'timed_out' };
    default:
      // The build workflow ended without recording an outcome (terminated): say so, never "pending" forever.
      return { state: 'error', description: 'internal_error: the build did not record an outcome' };
  }
}

export function createCommitStatusActivities(deps: CommitStatusDeps) {
  const { db } = deps;
  const timeoutMs = deps.requestTimeoutMs ?? 15_000;

  return {
    /** Whether this build reports commit statuses, and how long its outcome may take to arrive. */
    async commitStatusReporting(buildId: string): Promise<{ timeoutMinutes: number } | null> {
      const build = await getBuild(db, buildId);
      if (!build) return null;
      return reports(build, await getRepository(db, build.repositoryId)) ? { timeoutMinutes: build.timeoutMinutes } : null;
    },

    /** Sets the commit's status for the build's start (pending) or its recorded outcome. */
    async postCommitStatus(input: { buildId: string; phase: StatusPhase }): Promise<StatusOutcome> {
      const build = await getBuild(db, input.buildId);
      if (!build) return 'skipped';
      const repo = await getRepository(db, build.repositoryId);
      if (!reports(build, repo) || !build.sourceCommit) return 'skipped';
      const rule = build.ruleId ? await getRule(db, build.ruleId) : undefined;
      const context = `kiln/${rule?.match ?? build.sourceRef?.replace(/^refs\/(heads|tags)\//, '') ?? 'build'}`;
      const say = (line: string) => appendBuildLogs(db, build.id, [{ platform: null, line: `==> commit status ${context}: ${line}` }]);
      if (!repo.sourceTokenEnc) {
        await say(`not set on the ${repo.sourceProvider} commit: the repository has no access token (${STATUS_SCOPE_HINT[repo.sourceProvider]})`);
        return 'refused';
      }
      const status: CommitStatus = {
        ...statusOf(build, input.phase),
        context,
        targetUrl: `${deps.publicUrl().replace(/\/+$/, '')}/builds/${build.id}`,
      };
      let request;
      try {
        request = commitStatusRequest({
          provider: repo.sourceProvider,
          cloneUrl: repo.sourceUrl,
          commit: build.sourceCommit,
          token: decryptSecret(deps.secretKey, repo.sourceTokenEnc),
          status,
          apiBase: deps.apiUrls?.[repo.sourceProvider],
        });
      } catch (err) {
        await say(`not set: ${(err as Error).message}`);
        return 'refused';
      }
      const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...cancellation()]);
      let res: Response;
      try {
        res = await fetch(request.url, { method: request.method, headers: request.headers, body: request.body, signal, redirect: 'error' });
      } catch (err) {
        // Down, unreachable or slow: Temporal retries. Only the process log hears of each attempt.
        activityLog().warn('commit status not delivered, will retry', { context, state: status.state, error: (err as Error).message });
        throw new Error(`${repo.sourceProvider} did not answer the commit status request: ${(err as Error).message}`);
      }
      const text = await res.text().catch(() => '');
      const outcome = classifyStatusAnswer(repo.sourceProvider, res.status, text);
      if (outcome === 'retry') {
        activityLog().warn('commit status not delivered, will retry', { context, state: status.state, status: res.status });
        throw new Error(`${repo.sourceProvider} answered ${res.status} to the commit status request`);
      }
      if (outcome === 'refused') {
        const why = [401, 403, 404].includes(res.status)
          ? `the token cannot set commit statuses on this repository (Kiln needs ${STATUS_SCOPE_HINT[repo.sourceProvider]})`
          : 'the request was not accepted';
        await say(`${repo.sourceProvider} refused it with HTTP ${res.status}${hostMessage(text)}: ${why}; no further statuses are sent for this build`);
        return 'refused';
      }
      return 'posted';
    },
  };
}

/** The host's own short reason, when its error body has one (never the request, which holds the token). */
function hostMessage(body: string): string {
  try {
    const m = (JSON.parse(body) as { message?: unknown; error?: { message?: unknown } }) ?? {};
    const text = typeof m.message === 'string' ? m.message : typeof m.error?.message === 'string' ? m.error.message : '';
    return text ? ` ("${text.replace(/\s+/g, ' ').slice(0, 120)}")` : '';
  } catch {
    return '';
  }
}

function cancellation(): AbortSignal[] {
  try {
    return [Context.current().cancellationSignal];
  } catch {
    return [];
  }
}

export type CommitStatusActivities = ReturnType<typeof createCommitStatusActivities>;
