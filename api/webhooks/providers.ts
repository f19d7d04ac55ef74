// One parser and one signature check per git host. Parsing reads only what routing needs (which
// repository, which refs); nothing is trusted until `verify` passes with that repository's secret.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { EmitterWebhookEvent } from '@octokit/webhooks';
import { GIT_HOST_PROVIDERS, type GitHostProvider } from '../../domain/git-hosts';
import { parseFullRef, type RefName } from '../../domain/rules';

/** Every git host Kiln knows sends webhooks (domain/git-hosts.ts). */
export const WEBHOOK_PROVIDERS = GIT_HOST_PROVIDERS;
export type WebhookProvider = GitHostProvider;

export interface RefUpdate {
  ref: RefName;
  before: string | null;
  after: string | null;
  deleted: boolean;
  /** Files the push touched, or null when the payload does not say (path filters then ask git). */
  changedFiles: string[] | null;
}

export type ParsedDelivery =
  | { kind: 'push'; deliveryId: string; repoUrls: string[]; updates: RefUpdate[] }
  | { kind: 'ping'; deliveryId: string; repoUrls: string[] }
  | { kind: 'ignored'; deliveryId: string; repoUrls: string[]; reason: string };

export class WebhookPayloadError extends Error {}

/** Gitee signs a timestamp, not the body: older signatures are refused as replays. */
export const GITEE_MAX_AGE_MS = 5 * 60_000;
const ZERO_SHA = /^0+$/;
/** GitHub lists at most 20 commits per push; beyond that the file list is incomplete. */
const GITHUB_MAX_COMMITS = 20;

/**
 * A push's file list travels in the PushWorkflow's input; past this many paths it is left out and
 * the workflow asks git instead, so the payload, and the work per delivery, stay bounded at any body size.
 */
export const MAX_INLINE_CHANGED_FILES = 2_000;

interface Provider {
  parse(headers: Headers, body: any): ParsedDelivery;
  /** `rawBody` as received: HMACs are over these bytes, not over a decoded and re-encoded string. */
  verify(headers: Headers, rawBody: Uint8Array | string, secret: string, now: number): Promise<boolean>;
}


function sha(v: unknown): string | null {
  return typeof v === 'string' && v.length > 0 && !ZERO_SHA.test(v) ? v : null;
}

/**
 * GitHub, GitLab and Gitee list added/modified/removed paths per commit. Null when the payload does
 * not say, or when it names more than MAX_INLINE_CHANGED_FILES paths (it stops counting there).
 */
function filesOfCommits(commits: unknown, complete: boolean): string[] | null {
  if (!Array.isArray(commits) || !complete) return null;
  const files = new Set<string>();
  for (const c of commits) {
    for (const key of ['added', 'modified', 'removed']) {
      const list = c?.[key];
      if (!Array.isArray(list)) return null;
      for (const f of list) {
        if (typeof f !== 'string') continue;
        files.add(f);
        if (files.size > MAX_INLINE_CHANGED_FILES) return null;
      }
    }
  }
  return [...files];
}

const strings = (...values: unknown[]) => values.filter((v): v is string => typeof v === 'string' && v.length > 0);

function header(headers: Headers, name: string): string {
  const v = headers.get(name);
  if (!v) throw new WebhookPayloadError(`missing ${name} header`);
  return v;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const hmacHex = (secret: string, data: Uint8Array | string) => createHmac('sha256', secret).update(data).digest('hex');

/** GitHub's push event as @octokit/webhooks types it; a delivery is not trusted to have every field. */
type GitHubPush = Partial<EmitterWebhookEvent<'push'>['payload']>;

/** Push events of GitHub, GitLab and Gitee share this shape. */
function pushUpdate(body: any, changedFiles: string[] | null): RefUpdate[] {
  const ref = parseFullRef(body?.ref);
  if (!ref) return [];
  const after = sha(body.after);
  return [{ ref, before: sha(body.before), after, deleted: body.deleted === true || after === null, changedFiles }];
}

const github: Provider = {
  parse(headers, payload) {
    const deliveryId = header(headers, 'x-github-delivery');
    const event = header(headers, 'x-github-event');
    const body = payload as GitHubPush;
    const r: Partial<NonNullable<GitHubPush['repository']>> = body?.repository ?? {};
    const repoUrls = strings(r.clone_url, r.html_url, r.ssh_url, r.git_url, r.svn_url);
    if (event === 'ping') return { kind: 'ping', deliveryId, repoUrls };
    // Tag creation also arrives as a push to refs/tags/..., which is what builds it.
    if (event !== 'push') return { kind: 'ignored', deliveryId, repoUrls, reason: `event "${event}" starts no build` };
    const complete = Array.isArray(body.commits) && body.commits.length < GITHUB_MAX_COMMITS;
    return { kind: 'push', deliveryId, repoUrls, updates: pushUpdate(body, filesOfCommits(body.commits, complete)) };
  },
  async verify(headers, rawBody, secret) {
    const signature = headers.get('x-hub-signature-256');
    return signature !== null && safeEqual(signature, `sha256=${hmacHex(secret, rawBody)}`);
  },
};

const gitlab: Provider = {
  parse(headers, body) {
    const deliveryId = headers.get('x-gitlab-event-uuid') ?? header(headers, 'x-gitlab-webhook-uuid');
    const event = header(headers, 'x-gitlab-event');
    const p = body?.project ?? {};
    const r = body?.repository ?? {};
    const repoUrls = strings(p.git_http_url, p.git_ssh_url, p.web_url, p.http_url, r.git_http_url, r.git_ssh_url, r.homepage, r.url);
    if (event !== 'Push Hook' && event !== 'Tag Push Hook') {
      return { kind: 'ignored', deliveryId, repoUrls, reason: `event "${event}" starts no build` };
    }
    const commits = body.commits;
    const complete = Array.isArray(commits) && (typeof body.total_commits_count !== 'number' || body.total_commits_count <= commits.length);
    return { kind: 'push', deliveryId, repoUrls, updates: pushUpdate(body, filesOfCommits(commits, complete)) };
  },
  async verify(headers, _rawBody, secret) {
    const token = headers.get('x-gitlab-token');
    return token !== null && safeEqual(token, secret);
  },
};

const gitee: Provider = {
  parse(headers, body) {
    const event = header(headers, 'x-gitee-event');
    const r = body?.repository ?? body?.project ?? {};
    const repoUrls = strings(r.clone_url, r.git_http_url, r.html_url, r.url, r.ssh_url, r.git_ssh_url);
    // Gitee sends no delivery id: the hook, its timestamp and the ref update identify a delivery.
    const deliveryId = [body?.hook_id ?? '', headers.get('x-gitee-timestamp') ?? body?.timestamp ?? '', body?.ref ?? '', body?.after ?? ''].join(':');
    if (event !== 'Push Hook' && event !== 'Tag Push Hook') {
      return { kind: 'ignored', deliveryId, repoUrls, reason: `event "${event}" starts no build` };
    }
    return { kind: 'push', deliveryId, repoUrls, updates: pushUpdate(body, filesOfCommits(body.commits, true)) };
  },
  async verify(headers, _rawBody, secret, now) {
    const token = headers.get('x-gitee-token');
    const timestamp = headers.get('x-gitee-timestamp');
    if (!token || !timestamp || !/^\d{10,16}$/.test(timestamp)) return false;
    if (Math.abs(now - Number(timestamp)) > GITEE_MAX_AGE_MS) return false;
    const sign = createHmac('sha256', secret).update(`${timestamp}\n${secret}`, 'utf8').digest('base64');
    return safeEqual(token, sign) || safeEqual(token, secret);
  },
};

const bitbucket: Provider = {
  parse(headers, body) {
    const deliveryId = header(headers, 'x-request-uuid');
    const event = header(headers, 'x-event-key');
    const r = body?.repository ?? {};
    const html = r?.links?.html?.href;
    const repoUrls = strings(html, typeof r.full_name === 'string' ? `https://bitbucket.org/${r.full_name}` : undefined);
    if (event === 'diagnostics:ping') return { kind: 'ping', deliveryId, repoUrls };
    if (event !== 'repo:push') return { kind: 'ignored', deliveryId, repoUrls, reason: `event "${event}" starts no build` };
    const updates: RefUpdate[] = [];
    for (const change of Array.isArray(body?.push?.changes) ? body.push.changes : []) {
      const target = change?.new ?? change?.old;
      if (!target || (target.type !== 'branch' && target.type !== 'tag') || typeof target.name !== 'string') continue;
      updates.push({
        ref: { type: target.type, name: target.name },
        before: sha(change?.old?.target?.hash),
        after: sha(change?.new?.target?.hash),
        deleted: change.closed === true || !change.new,
        changedFiles: null, // Bitbucket lists no files: path filters ask git
      });
    }
    return { kind: 'push', deliveryId, repoUrls, updates };
  },
  async verify(headers, rawBody, secret) {
    const signature = headers.get('x-hub-signature');
    return signature !== null && safeEqual(signature, `sha256=${hmacHex(secret, rawBody)}`);
  },
};

/**
 * Gitea and its fork Forgejo: GitHub-shaped push payloads (tags arrive as pushes to refs/tags/...),
 * `X-<Host>-Signature` = hex HMAC-SHA256 of the body, no prefix. Forgejo also sends the X-Gitea-*
 * headers, which it accepts as a fallback.
 */
function giteaLike(names: readonly string[]): Provider {
  const first = (headers: Headers, suffix: string) => {
    for (const n of names) {
      const v = headers.get(`x-${n}-${suffix}`);
      if (v) return v;
    }
    return null;
  };
  const required = (headers: Headers, suffix: string) => {
    const v = first(headers, suffix);
    if (!v) throw new WebhookPayloadError(`missing X-${names[0]}-${suffix} header`);
    return v;
  };
  return {
    parse(headers, body) {
      const deliveryId = required(headers, 'delivery');
      const event = required(headers, 'event');
      const r = body?.repository ?? {};
      const repoUrls = strings(r.clone_url, r.html_url, r.ssh_url);
      if (event !== 'push') return { kind: 'ignored', deliveryId, repoUrls, reason: `event "${event}" starts no build` };
      const commits = body.commits;
      const ref = parseFullRef(body?.ref);
      // A tag push lists no commits: its files are unknown (path filters then ask git), not "none".
      const complete =
        ref?.type === 'branch' &&
        Array.isArray(commits) &&
        commits.length > 0 &&
        (typeof body.total_commits !== 'number' || body.total_commits <= commits.length);
      const updates = pushUpdate(body, filesOfCommits(commits, complete));
      // An annotated tag's push names the tag object; the build (and its commit status) needs the commit.
      const tagged = ref?.type === 'tag' ? sha(body.head_commit?.id) : null;
      if (tagged && updates[0]?.after) updates[0].after = tagged;
      return { kind: 'push', deliveryId, repoUrls, updates };
    },
    async verify(headers, rawBody, secret) {
      const signature = first(headers, 'signature');
      return signature !== null && safeEqual(signature.toLowerCase(), hmacHex(secret, rawBody));
    },
  };
}

const gitea = giteaLike(['gitea']);
const forgejo = giteaLike(['forgejo', 'gitea']);

export const PROVIDERS: Record<WebhookProvider, Provider> = { github, gitlab, gitee, bitbucket, gitea, forgejo };

// Moved to domain/git-url.ts (the repositories table indexes the same key).
export { normalizeGitUrl } from '../../domain/git-url';
