// Push and tag events shaped like each platform's documented payloads, signed the way each
// platform signs them (GitHub/Bitbucket HMAC of the body, GitLab token, Gitee timestamp HMAC).
import { createHmac, randomUUID } from 'node:crypto';

export interface PushSpec {
  repoUrl: string;
  ref: string; // refs/heads/x or refs/tags/x
  before?: string;
  after: string | null; // null → deletion
  files?: { added?: string[]; modified?: string[]; removed?: string[] };
  secret: string;
  deliveryId?: string;
}

export interface SignedDelivery {
  headers: Record<string, string>;
  body: string;
}

const ZERO = '0'.repeat(40);
const hmacHex = (secret: string, data: string) => createHmac('sha256', secret).update(data).digest('hex');
const commits = (s: PushSpec) =>
  s.after ? [{ id: s.after, message: 'test', added: s.files?.added ?? [], modified: s.files?.modified ?? [], removed: s.files?.removed ?? [] }] : [];

export function githubPush(s: PushSpec): SignedDelivery {
  const body = JSON.stringify({
    ref: s.ref,
    before: s.before ?? ZERO,
    after: s.after ?? ZERO,
    created: !s.before,
    deleted: s.after === null,
    repository: { clone_url: s.repoUrl, html_url: s.repoUrl.replace(/\.git$/, '') },
    commits: commits(s),
    head_commit: commits(s)[0] ?? null,
  });
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-github-delivery': s.deliveryId ?? randomUUID(),
      'x-hub-signature-256': `sha256=${hmacHex(s.secret, body)}`,
    },
  };
}

export function gitlabPush(s: PushSpec): SignedDelivery {
  const tag = s.ref.startsWith('refs/tags/');
  const list = commits(s);
  const body = JSON.stringify({
    object_kind: tag ? 'tag_push' : 'push',
    ref: s.ref,
    before: s.before ?? ZERO,
    after: s.after ?? ZERO,
    checkout_sha: s.after,
    project: { git_http_url: s.repoUrl, web_url: s.repoUrl.replace(/\.git$/, '') },
    commits: list,
    total_commits_count: list.length,
  });
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'x-gitlab-event': tag ? 'Tag Push Hook' : 'Push Hook',
      'x-gitlab-token': s.secret,
      'x-gitlab-event-uuid': s.deliveryId ?? randomUUID(),
    },
  };
}

export function giteePush(s: PushSpec & { timestamp?: number; hookId?: number }): SignedDelivery {
  const timestamp = String(s.timestamp ?? Date.now());
  const sign = createHmac('sha256', s.secret).update(`${timestamp}\n${s.secret}`).digest('base64');
  const body = JSON.stringify({
    hook_name: 'push_hooks',
    hook_id: s.hookId ?? 1,
    timestamp,
    ref: s.ref,
    before: s.before ?? ZERO,
    after: s.after ?? ZERO,
    created: !s.before,
    deleted: s.after === null,
    repository: { clone_url: s.repoUrl, html_url: s.repoUrl.replace(/\.git$/, '') },
    commits: commits(s),
  });
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'x-gitee-event': s.ref.startsWith('refs/tags/') ? 'Tag Push Hook' : 'Push Hook',
      'x-gitee-token': sign,
      'x-gitee-timestamp': timestamp,
      'user-agent': 'git-oschina-hook',
    },
  };
}

export function bitbucketPush(s: PushSpec): SignedDelivery {
  const tag = s.ref.startsWith('refs/tags/');
  const name = s.ref.replace(/^refs\/(heads|tags)\//, '');
  const type = tag ? 'tag' : 'branch';
  const body = JSON.stringify({
    push: {
      changes: [
        {
          new: s.after ? { type, name, target: { hash: s.after } } : null,
          old: s.before ? { type, name, target: { hash: s.before } } : null,
          created: !s.before,
          closed: s.after === null,
        },
      ],
    },
    repository: { full_name: 'team/app', links: { html: { href: s.repoUrl.replace(/\.git$/, '') } } },
  });
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'x-event-key': 'repo:push',
      'x-request-uuid': s.deliveryId ?? randomUUID(),
      'x-hub-signature': `sha256=${hmacHex(s.secret, body)}`,
    },
  };
}

/** Gitea's push (GitHub-shaped body), signed as Gitea signs it: hex HMAC-SHA256 of the body, no prefix. */
function giteaLikePush(host: 'gitea' | 'forgejo', s: PushSpec): SignedDelivery {
  const body = JSON.stringify({
    ref: s.ref,
    before: s.before ?? ZERO,
    after: s.after ?? ZERO,
    commits: commits(s),
    total_commits: commits(s).length,
    head_commit: commits(s)[0] ?? null,
    repository: { clone_url: s.repoUrl, html_url: s.repoUrl.replace(/\.git$/, '') },
  });
  return {
    body,
    headers: {
      'content-type': 'application/json',
      [`x-${host}-event`]: 'push',
      [`x-${host}-delivery`]: s.deliveryId ?? randomUUID(),
      [`x-${host}-signature`]: hmacHex(s.secret, body),
    },
  };
}

export const giteaPush = (s: PushSpec) => giteaLikePush('gitea', s);
/** Forgejo's own headers only (it also sends X-Gitea-*, which Kiln accepts as a fallback). */
export const forgejoPush = (s: PushSpec) => giteaLikePush('forgejo', s);
