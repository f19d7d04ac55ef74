// How each git host takes a commit status: where its API lives (derived from the clone URL, so
// self-hosted GitLab, Gitea and GitHub Enterprise work without configuration), and the one request
// that sets a status. Pure: activities/commit-status.ts sends the request.
import { createHash } from 'node:crypto';
import type { GitHostProvider } from '../domain/git-hosts';

/** Kiln's view of a commit's state; each host spells it its own way. */
export type CommitState = 'pending' | 'success' | 'failure' | 'error' | 'canceled';

export interface CommitStatus {
  state: CommitState;
  /** `kiln/<rule>`: one status per rule on the commit. */
  context: string;
  description: string;
  targetUrl: string;
}

export interface StatusRequest {
  method: 'POST';
  url: string;
  headers: Record<string, string>;
  body: string;
}

/** GitHub, Gitea and GitLab cap the description; 140 is GitHub's. */
const MAX_DESCRIPTION = 140;
/** Bitbucket's status key is at most 40 characters. */
const MAX_BITBUCKET_KEY = 40;

interface RepoLocation {
  /** scheme://host[:port] of the web/API server. */
  origin: string;
  hostname: string;
  /** Path segments of the repository (without `.git`), e.g. ['group', 'sub', 'app']. */
  segments: string[];
}

/** Reads https, ssh:// and scp-like (`git@host:o/r.git`) clone URLs; ssh ones map to https. */
export function locateRepository(cloneUrl: string): RepoLocation {
  const scp = /^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):(?!\/\/)(.+)$/.exec(cloneUrl);
  let origin: string;
  let hostname: string;
  let path: string;
  if (scp) {
    hostname = scp[1]!;
    origin = `https://${hostname}`;
    path = scp[2]!;
  } else {
    const u = new URL(cloneUrl);
    hostname = u.hostname;
    const web = u.protocol === 'http:' || u.protocol === 'https:';
    origin = web ? `${u.protocol}//${u.host}` : `https://${u.hostname}`;
    path = u.pathname;
  }
  const segments = decodeURIComponent(path)
    .replace(/\.git\/?$/, '')
    .split('/')
    .filter(Boolean);
  if (segments.length < 2) throw new Error(`cannot tell the owner and repository from "${cloneUrl}"`);
  return { origin, hostname: hostname.toLowerCase(), segments };
}

/**
 * The API base for a repository: the public service's for the SaaS hosts, else derived from the
 * clone URL's server (GitHub Enterprise `/api/v3`, GitLab `/api/v4`, Gitea/Forgejo `/api/v1`, the
 * latter under the sub-path Gitea may be served from).
 */
export function deriveApiBase(provider: GitHostProvider, loc: RepoLocation): string {
  switch (provider) {
    case 'github':
      return loc.hostname === 'github.com' ? 'https://api.github.com' : `${loc.origin}/api/v3`;
    case 'gitlab':
      return `${loc.origin}/api/v4`;
    case 'gitee':
      return loc.hostname === 'gitee.com' ? 'https://gitee.com/api/v5' : `${loc.origin}/api/v5`;
    case 'bitbucket':
      return loc.hostname === 'bitbucket.org' ? 'https://api.bitbucket.org/2.0' : `${loc.origin}/2.0`;
    case 'gitea':
    case 'forgejo': {
      const subPath = loc.segments.slice(0, -2).map(encodeURIComponent).join('/');
      return `${loc.origin}${subPath ? `/${subPath}` : ''}/api/v1`;
    }
  }
}

function cap(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The request that sets `status` on `commit`. `apiBase` overrides the derived one (KILN_GIT_API_URLS). */
export function commitStatusRequest(input: {
  provider: GitHostProvider;
  cloneUrl: string;
  commit: string;
  token: string;
  status: CommitStatus;
  apiBase?: string;
}): StatusRequest {
  const { provider, commit, token, status } = input;
  const loc = locateRepository(input.cloneUrl);
  const base = (input.apiBase ?? deriveApiBase(provider, loc)).replace(/\/+$/, '');
  // The host owns the repository's last two path segments (GitLab: the whole path, sub-groups too).
  const owner = encodeURIComponent(loc.segments.at(-2)!);
  const repo = encodeURIComponent(loc.segments.at(-1)!);
  const sha = encodeURIComponent(commit);
  const description = cap(status.description, MAX_DESCRIPTION);
  const json = { 'content-type': 'application/json', accept: 'application/json', 'user-agent': 'kiln' };
  switch (provider) {
    case 'github':
      return {
        method: 'POST',
        url: `${base}/repos/${owner}/${repo}/statuses/${sha}`,
        headers: { ...json, accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28', authorization: `Bearer ${token}` },
        body: JSON.stringify({ state: githubState(status.state), target_url: status.targetUrl, description, context: status.context }),
      };
    case 'gitea':
    case 'forgejo':
      return {
        method: 'POST',
        url: `${base}/repos/${owner}/${repo}/statuses/${sha}`,
        headers: { ...json, authorization: `token ${token}` },
        body: JSON.stringify({ state: githubState(status.state), target_url: status.targetUrl, description, context: status.context }),
      };
    case 'gitee':
      // Gitee's v5 API takes the token as the `access_token` parameter (in the body, never the URL).
      return {
        method: 'POST',
        url: `${base}/repos/${owner}/${repo}/statuses/${sha}`,
        headers: json,
        body: JSON.stringify({
          access_token: token,
          state: githubState(status.state),
          target_url: status.targetUrl,
          description,
          context: status.context,
        }),
      };
    case 'gitlab': {
      const project = encodeURIComponent(loc.segments.join('/'));
      const state = { pending: 'pending', success: 'success', failure: 'failed', error: 'failed', canceled: 'canceled' }[status.state];
      return {
        method: 'POST',
        url: `${base}/projects/${project}/statuses/${sha}`,
        headers: { ...json, 'private-token': token },
        body: JSON.stringify({ state, name: status.context, target_url: status.targetUrl, description }),
      };
    }
    case 'bitbucket': {
      const state = { pending: 'INPROGRESS', success: 'SUCCESSFUL', failure: 'FAILED', error: 'FAILED', canceled: 'STOPPED' }[status.state];
      const key =
        status.context.length <= MAX_BITBUCKET_KEY
          ? status.context
          : `kiln/${createHash('sha256').update(status.context).digest('hex').slice(0, MAX_BITBUCKET_KEY - 5)}`;
      return {
        method: 'POST',
        url: `${base}/repositories/${owner}/${repo}/commit/${sha}/statuses/build`,
        headers: { ...json, authorization: `Bearer ${token}` },
        body: JSON.stringify({ key, state, name: status.context, url: status.targetUrl, description }),
      };
    }
  }
}

/** GitHub, Gitea and Gitee have no "canceled": a canceled build is an error, not a failed one. */
function githubState(state: CommitState): 'pending' | 'success' | 'failure' | 'error' {
  return state === 'canceled' ? 'error' : state;
}

/**
 * What an answer means. `refused`: the host will not take it as it stands (token, scope, unknown
 * repository or commit) — retrying cannot help. `retry`: the host is down or busy.
 */
export function classifyStatusAnswer(provider: GitHostProvider, status: number, body: string): 'posted' | 'refused' | 'retry' {
  if (status >= 200 && status < 300) return 'posted';
  // GitLab answers 400 when the status already is in that state (a retried request that landed).
  if (provider === 'gitlab' && status === 400 && /Cannot transition status/i.test(body)) return 'posted';
  if (status === 408 || status === 429 || status >= 500) return 'retry';
  return 'refused';
}

/** Which permission the token lacks, in the host's own words, for the one log line. */
export const STATUS_SCOPE_HINT: Record<GitHostProvider, string> = {
  github: 'a token with the "repo:status" scope (fine-grained: "Commit statuses: write")',
  gitlab: 'a token with the "api" scope and at least Developer access',
  gitee: 'a token with the "projects" scope',
  bitbucket: 'an access token with the "repository:write" scope',
  gitea: 'a token with the "write:repository" scope',
  forgejo: 'a token with the "write:repository" scope',
};
