// The git hosts Kiln talks to: each sends signed push webhooks and takes commit statuses back.
// `git` is a plain git server (clone only). db/schema.ts feeds its column enum from these.

export const GIT_HOST_PROVIDERS = ['github', 'gitlab', 'gitee', 'bitbucket', 'gitea', 'forgejo'] as const;
export const SOURCE_PROVIDERS = [...GIT_HOST_PROVIDERS, 'git'] as const;

export type GitHostProvider = (typeof GIT_HOST_PROVIDERS)[number];
export type SourceProvider = (typeof SOURCE_PROVIDERS)[number];

export function isGitHostProvider(p: string | null | undefined): p is GitHostProvider {
  return (GIT_HOST_PROVIDERS as readonly string[]).includes(p ?? '');
}
