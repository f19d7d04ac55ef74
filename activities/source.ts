import path from 'node:path';
import { decryptSecret } from '../db/crypto';
import type { Db } from '../db/client';
import { updateBuild, type BuildWithDetails } from '../db/queries/builds';
import { getRepository } from '../db/queries/repositories';
import { getRule } from '../db/queries/rules';
import { InvalidTagError, matchRef, parseFullRef, renderImageTags } from '../domain/rules';
import type { BuildPlan, PlatformBuildRequest } from './build-plan';
import type { BuildContext } from './build';
import { changedFiles, checkoutCommit, refHead, resolveBuildContext, resolveRef } from './git';
import type { RefName } from '../domain/rules';
import { userFault } from '../domain/errors';

/** The basic-auth user each host expects with an access token. */
const TOKEN_USERS: Record<string, string> = {
  github: 'x-access-token',
  gitlab: 'oauth2',
  gitee: 'oauth2',
  bitbucket: 'x-token-auth',
  // Gitea and Forgejo take an access token as the password of any user name.
  gitea: 'oauth2',
  forgejo: 'oauth2',
  git: 'git',
};

/**
 * Git access for builds. Credentials are read and decrypted here, inside activities, from the
 * repository record: they never travel in workflow inputs or results.
 */
export function createSourceAccess(deps: { db: Db; secretKey: string }) {
  async function credentials(repositoryId: string): Promise<{ url: string; token?: string; username: string }> {
    const repo = await getRepository(deps.db, repositoryId);
    if (!repo?.sourceUrl) {
      throw userFault('invalid_source', 'The repository has no code source');
    }
    const token = repo.sourceTokenEnc ? decryptSecret(deps.secretKey, repo.sourceTokenEnc) : undefined;
    return { url: repo.sourceUrl, token, username: TOKEN_USERS[repo.sourceProvider ?? 'git'] ?? 'git' };
  }

  return {
    /**
     * Pins a git build to one commit (the pushed one, else `git ls-remote`) and renders its rule's
     * tags for that commit and the build's creation time, then records both on the build.
     */
    async resolveSource(plan: BuildPlan, build: BuildWithDetails): Promise<BuildPlan> {
      if (plan.source.kind !== 'git' || !build.sourceRef) return plan;
      const ref = parseFullRef(build.sourceRef);
      if (!ref) {
        throw userFault('invalid_source', `"${build.sourceRef}" is not a branch or tag`);
      }
      let commit = build.sourceCommit;
      if (!commit) {
        const creds = await credentials(plan.repositoryId);
        commit = await resolveRef({ url: creds.url, ref: ref.name, refType: ref.type, token: creds.token, username: creds.username });
      }
      let tags = plan.tags;
      if (build.ruleId && tags.length === 0) {
        const rule = await getRule(deps.db, build.ruleId);
        if (!rule) throw userFault('invalid_source', 'The build rule was deleted');
        const groups = matchRef(rule, ref)?.groups ?? {};
        try {
          tags = renderImageTags(rule, { ref, groups, commit, time: build.createdAt });
        } catch (err) {
          if (err instanceof InvalidTagError || err instanceof RangeError) {
            throw userFault('invalid_tag', `Cannot name the image: ${err.message}`);
          }
          throw err;
        }
      }
      await updateBuild(deps.db, plan.buildId, { sourceCommit: commit, tags });
      return { ...plan, tags, source: { ...plan.source, commit } };
    },

    /** What the repository's source says the ref's head is now (null: no such ref). */
    async refHead(repositoryId: string, ref: RefName): Promise<{ commit: string; objects: string[] } | null> {
      const creds = await credentials(repositoryId);
      return refHead({ url: creds.url, ref: ref.name, refType: ref.type, token: creds.token, username: creds.username });
    },

    /** Paths changed between two commits of the repository's source; null when it cannot be known (a new branch). */
    async changedFiles(repositoryId: string, before: string, after: string): Promise<string[] | null> {
      const creds = await credentials(repositoryId);
      return changedFiles({ url: creds.url, before, after, token: creds.token, username: creds.username });
    },

    /** A fresh shallow checkout of exactly the pinned commit in this build's own work dir. */
    async checkoutSource(req: PlatformBuildRequest, workDir: string, signal: AbortSignal): Promise<BuildContext> {
      if (req.source.kind !== 'git') throw new Error('checkoutSource needs a git source');
      const creds = await credentials(req.source.repositoryId);
      const dir = path.join(workDir, 'src');
      await checkoutCommit({ url: creds.url, commit: req.source.commit, token: creds.token, username: creds.username, dir, signal });
      return resolveBuildContext(dir, req.source.contextDir, req.source.dockerfilePath);
    },
  };
}
