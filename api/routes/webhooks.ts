import { z } from '@hono/zod-openapi';
import { changedFiles } from '../../activities/git';
import { decryptSecret } from '../../db/crypto';
import { insertBuild } from '../../db/queries/builds';
import { claimDelivery, getDelivery } from '../../db/queries/deliveries';
import { listSourceRepositories, type RepositoryWithNamespace } from '../../db/queries/repositories';
import { listEnabledRulesFor } from '../../db/queries/rules';
import type { Build, BuildRule } from '../../db/schema';
import { fullRefName, matchesPathFilters, matchRef } from '../../domain/rules';
import type { AppDeps } from '../types';
import { ApiError, pickErrors } from '../errors';
import { ruleBuildValues, startRuleBuilds } from '../rule-builds';
import { createRouter } from '../util';
import {
  normalizeGitUrl,
  PROVIDERS,
  WEBHOOK_PROVIDERS,
  WebhookPayloadError,
  type RefUpdate,
  type WebhookProvider,
} from '../webhooks/providers';

interface Skipped {
  repository: string;
  ruleId?: string;
  ref: string;
  reason: string;
}

/**
 * `POST /webhooks/{github,gitlab,gitee,bitbucket}`: verifies the delivery against the secret of
 * the repository it names before anything else, de-duplicates it by delivery id, and starts one
 * build per matching enabled rule.
 */
export function webhookRoutes(deps: AppDeps) {
  const { db, config } = deps;
  const app = createRouter();
  documentWebhooks(app);

  app.post('/:provider', async (c) => {
    const name = c.req.param('provider') as WebhookProvider;
    if (!WEBHOOK_PROVIDERS.includes(name)) throw new ApiError('not_found', `No webhook receiver for "${name}"`);
    const provider = PROVIDERS[name];
    const raw = await c.req.text();
    const body = (() => {
      try {
        return parseBody(raw, c.req.header('content-type'));
      } catch (err) {
        if (err instanceof WebhookPayloadError) throw new ApiError('bad_request', `Not a ${name} webhook delivery: ${err.message}`);
        if (err instanceof SyntaxError) throw new ApiError('invalid_json', 'The request body is not valid JSON');
        throw err;
      }
    })();
    // A JSON object without the host's headers or fields is well-formed but no delivery: 422.
    const parsed = (() => {
      try {
        return provider.parse(c.req.raw.headers, body);
      } catch (err) {
        if (err instanceof WebhookPayloadError) throw new ApiError('unprocessable', `Not a ${name} webhook delivery: ${err.message}`);
        throw err;
      }
    })();

    const keys = new Set(parsed.repoUrls.map(normalizeGitUrl));
    const candidates = (await listSourceRepositories(db, name)).filter((r) => r.sourceUrl && keys.has(normalizeGitUrl(r.sourceUrl)));
    if (candidates.length === 0) {
      throw new ApiError('not_found', `No repository is bound to this ${name} repository`, { urls: parsed.repoUrls.slice(0, 3) });
    }
    const now = Date.now();
    const verified: RepositoryWithNamespace[] = [];
    for (const repo of candidates) {
      if (!repo.webhookSecretEnc) continue;
      if (await provider.verify(c.req.raw.headers, raw, decryptSecret(config.secretKey, repo.webhookSecretEnc), now)) verified.push(repo);
    }
    if (verified.length === 0) throw new ApiError('unauthorized', `The ${name} webhook signature or token is missing or wrong`);

    if (parsed.kind === 'ping') return c.json({ pong: true }, 200);
    if (parsed.kind === 'ignored') return c.json({ ignored: parsed.reason, builds: [] }, 202);

    const seen = await getDelivery(db, name, parsed.deliveryId);
    if (seen) return c.json({ duplicate: true, builds: seen.buildIds.map((buildId) => ({ buildId })) }, 200);

    const { planned, skipped } = await planBuilds(verified, parsed.updates);
    const inserted = await db.transaction(async (tx) => {
      const claimed = await claimDelivery(tx, name, parsed.deliveryId, planned.map((p) => p.values.id));
      if (!claimed) return null; // a concurrent copy of this delivery won
      const rows: { build: Build; rule: BuildRule; repository: string }[] = [];
      for (const p of planned) rows.push({ build: (await insertBuild(tx, p.values)).build, rule: p.rule, repository: p.repository });
      return rows;
    });
    if (!inserted) {
      const winner = await getDelivery(db, name, parsed.deliveryId);
      return c.json({ duplicate: true, builds: (winner?.buildIds ?? []).map((buildId) => ({ buildId })) }, 200);
    }
    const { failed } = await startRuleBuilds(deps, inserted);
    return c.json(
      {
        builds: inserted.map(({ build, rule, repository }) => ({
          buildId: build.id,
          workflowId: build.workflowId,
          repository,
          ruleId: rule.id,
          ref: build.sourceRef,
          commit: build.sourceCommit,
          status: failed.some((f) => f.build.id === build.id) ? 'failed' : 'queued',
        })),
        skipped,
      },
      202,
    );
  });

  /** Which enabled rules of which repositories this push builds, after path filters. */
  async function planBuilds(repos: RepositoryWithNamespace[], updates: RefUpdate[]) {
    const planned: { values: ReturnType<typeof ruleBuildValues>; rule: BuildRule; repository: string }[] = [];
    const skipped: Skipped[] = [];
    const rules = await listEnabledRulesFor(db, repos.filter((r) => r.autoBuild).map((r) => r.id));
    for (const repo of repos) {
      const repository = `${repo.namespace}/${repo.name}`;
      for (const update of updates) {
        const ref = fullRefName(update.ref);
        if (!repo.autoBuild) {
          skipped.push({ repository, ref, reason: 'auto build is off for this repository' });
          continue;
        }
        if (update.deleted || !update.after) {
          skipped.push({ repository, ref, reason: 'the ref was deleted' });
          continue;
        }
        let files: string[] | null | undefined;
        for (const rule of rules) {
          if (rule.repositoryId !== repo.id || rule.type !== update.ref.type || !matchRef(rule, update.ref)) continue;
          if (rule.paths.length > 0) {
            files ??= update.changedFiles ?? (await changedFilesFromGit(repo, update));
            if (files !== null && !matchesPathFilters(rule.paths, files)) {
              skipped.push({ repository, ruleId: rule.id, ref, reason: `no changed file matches paths ${rule.paths.join(', ')}` });
              continue;
            }
          }
          const values = ruleBuildValues({
            repo,
            rule,
            ref: update.ref,
            commit: update.after,
            trigger: update.ref.type === 'tag' ? 'tag' : 'push',
            creationMethod: 'auto build',
          });
          planned.push({ values, rule, repository });
        }
      }
    }
    return { planned, skipped };
  }

  /** The payload listed no files: ask the git host. Unknown (null) builds, as a filter cannot be applied. */
  async function changedFilesFromGit(repo: RepositoryWithNamespace, update: RefUpdate): Promise<string[] | null> {
    if (!update.before || !update.after || !repo.sourceUrl) return null;
    const token = repo.sourceTokenEnc ? decryptSecret(config.secretKey, repo.sourceTokenEnc) : undefined;
    return changedFiles({ url: repo.sourceUrl, before: update.before, after: update.after, token, timeoutMs: 30_000 }).catch(() => null);
  }

  return app;
}

/** How each git host proves a delivery: checked against the webhook secret of the repository it names. */
const WEBHOOK_SECURITY_SCHEMES = {
  githubSignature: { header: 'X-Hub-Signature-256', description: 'GitHub: sha256=HMAC-SHA256 of the body' },
  gitlabToken: { header: 'X-Gitlab-Token', description: 'GitLab: the secret token itself' },
  giteeSignature: { header: 'X-Gitee-Token', description: 'Gitee: HMAC-SHA256 of X-Gitee-Timestamp and the secret (5 minutes max age)' },
  bitbucketSignature: { header: 'X-Hub-Signature', description: 'Bitbucket: sha256=HMAC-SHA256 of the body' },
} as const;

const WebhookBuild = z
  .object({
    buildId: z.string(),
    workflowId: z.string().optional(),
    repository: z.string().optional(),
    ruleId: z.string().optional(),
    ref: z.string().nullable().optional(),
    commit: z.string().nullable().optional(),
    status: z.enum(['queued', 'failed']).optional(),
  })
  .openapi('WebhookBuild');

export const WebhookResult = z
  .object({
    pong: z.boolean().optional().openapi({ description: 'A ping (hook set-up) was verified' }),
    duplicate: z.boolean().optional().openapi({ description: 'This delivery id was handled before; its builds are listed' }),
    ignored: z.string().optional().openapi({ description: 'Why this event starts no build' }),
    builds: z.array(WebhookBuild).optional(),
    skipped: z
      .array(z.object({ repository: z.string(), ruleId: z.string().optional(), ref: z.string(), reason: z.string() }))
      .optional(),
  })
  .openapi('WebhookResult');

/** The handler stays plain Hono (every host's body differs); the document still lists it with its own security. */
function documentWebhooks(app: ReturnType<typeof createRouter>) {
  for (const [name, s] of Object.entries(WEBHOOK_SECURITY_SCHEMES)) {
    app.openAPIRegistry.registerComponent('securitySchemes', name, {
      type: 'apiKey',
      in: 'header',
      name: s.header,
      description: `${s.description}, with the repository's webhook secret`,
    });
  }
  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/{provider}',
    tags: ['webhooks'],
    summary: 'Push and tag events from a git host',
    description:
      'Verified against the webhook secret of the repository the event names before anything else; de-duplicated by ' +
      'delivery id; starts one build per matching enabled rule. No Kiln token is involved.',
    security: Object.keys(WEBHOOK_SECURITY_SCHEMES).map((name) => ({ [name]: [] })),
    request: {
      params: z.object({ provider: z.enum(WEBHOOK_PROVIDERS).openapi({ param: { name: 'provider', in: 'path' } }) }),
      body: { required: true, content: { 'application/json': { schema: z.object({}).passthrough().openapi({ description: "The host's push event" }) } } },
    },
    responses: {
      200: { description: 'A ping, or a delivery seen before', content: { 'application/json': { schema: WebhookResult } } },
      202: { description: 'Builds started (or the event ignored)', content: { 'application/json': { schema: WebhookResult } } },
      ...pickErrors(400, 401, 404, 413, 422),
    },
  });
}

/** JSON, or GitHub's form encoding (`payload=<json>`); always a JSON object. */
function parseBody(raw: string, contentType: string | undefined): Record<string, unknown> {
  let body: unknown;
  if (contentType?.includes('application/x-www-form-urlencoded')) {
    const payload = new URLSearchParams(raw).get('payload');
    if (payload === null) throw new WebhookPayloadError('form body without "payload"');
    body = JSON.parse(payload);
  } else body = JSON.parse(raw);
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new WebhookPayloadError('the body is not a JSON object');
  return body as Record<string, unknown>;
}
