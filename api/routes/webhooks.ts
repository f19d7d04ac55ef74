import { z } from '@hono/zod-openapi';
import { decryptSecret } from '../../db/crypto';
import { getDelivery, recordDelivery } from '../../db/queries/deliveries';
import { findWebhookTargets, type WebhookTarget } from '../../db/queries/repositories';
import type { PushWorkflowInput } from '../../domain/push';
import type { AppDeps } from '../types';
import { ApiError, pickErrors } from '../errors';
import { DISPATCH_LEASE_MS } from '../push-dispatcher';
import { pushWorkflowId } from '../push-starter';
import { createRouter } from '../util';
import { PROVIDERS, WEBHOOK_PROVIDERS, WebhookPayloadError, type WebhookProvider } from '../webhooks/providers';

/**
 * `POST /webhooks/{github,gitlab,gitee,bitbucket,gitea,forgejo}`: finds the repositories the delivery names by
 * their indexed clone-URL key, verifies it against their secrets before anything else, records it
 * with its PushWorkflow's input and answers; the push outbox (api/push-dispatcher.ts) starts the
 * workflow right after. Everything slow (git, rules, builds) happens in the workflow. A delivery id
 * seen before is answered as a duplicate, and Temporal refuses a second workflow with its id.
 */
export function webhookRoutes(deps: AppDeps) {
  const { db, config } = deps;
  const app = createRouter();
  documentWebhooks(app);

  // Before the body is read: a burst of large deliveries is a burst from its first bytes.
  app.use('/:provider', async (_c, next) => {
    const answered = deps.pushes?.receiving();
    try {
      await next();
    } finally {
      answered?.();
    }
  });

  app.post('/:provider', async (c) => {
    const name = c.req.param('provider') as WebhookProvider;
    if (!WEBHOOK_PROVIDERS.includes(name)) throw new ApiError('not_found', `No webhook receiver for "${name}"`);
    const provider = PROVIDERS[name];
    // HMACs are over the bytes as sent; the text is decoded once, for the JSON.
    const bytes = Buffer.from(await c.req.arrayBuffer());
    const parsed = parseDelivery(name, bytes, c.req.raw.headers, c.req.header('content-type'));

    const candidates = await findWebhookTargets(db, name, parsed.repoUrls);
    if (candidates.length === 0) {
      throw new ApiError('not_found', `No repository is bound to this ${name} repository`, { urls: parsed.repoUrls.slice(0, 3) });
    }
    const now = Date.now();
    const verified: WebhookTarget[] = [];
    for (const repo of candidates) {
      if (!repo.webhookSecretEnc) continue;
      if (await provider.verify(c.req.raw.headers, bytes, decryptSecret(config.secretKey, repo.webhookSecretEnc), now)) verified.push(repo);
    }
    if (verified.length === 0) throw new ApiError('unauthorized', `The ${name} webhook signature or token is missing or wrong`);

    if (parsed.kind === 'ping') return c.json({ pong: true }, 200);
    if (parsed.kind === 'ignored') return c.json({ ignored: parsed.reason, builds: [] }, 202);
    if (!deps.pushes) throw new ApiError('service_unavailable', 'This API node cannot start push workflows');

    const { deliveryId } = parsed;
    const workflowId = pushWorkflowId(name, deliveryId);
    const repositoryIds = verified.map((r) => r.id);
    const input: PushWorkflowInput = { provider: name, deliveryId, repositoryIds, updates: parsed.updates };
    const recorded = await recordDelivery(db, { provider: name, deliveryId, workflowId, repositoryIds, pushInput: input, leaseMs: DISPATCH_LEASE_MS });
    if (!recorded) {
      const seen = await getDelivery(db, name, deliveryId);
      return c.json(
        { duplicate: true, deliveryId, workflowId, status: seen?.status ?? 'received', builds: (seen?.buildIds ?? []).map((buildId) => ({ buildId })) },
        200,
      );
    }
    // Committed: from here the delivery cannot be lost, whatever happens to Temporal or this node.
    deps.pushes.enqueue({ provider: name, deliveryId, workflowId, input });
    return c.json({ deliveryId, workflowId, status: 'received' as const }, 202);
  });

  return app;
}

/** How each git host proves a delivery: checked against the webhook secret of the repository it names. */
const WEBHOOK_SECURITY_SCHEMES = {
  githubSignature: { header: 'X-Hub-Signature-256', description: 'GitHub: sha256=HMAC-SHA256 of the body' },
  gitlabToken: { header: 'X-Gitlab-Token', description: 'GitLab: the secret token itself' },
  giteeSignature: { header: 'X-Gitee-Token', description: 'Gitee: HMAC-SHA256 of X-Gitee-Timestamp and the secret (5 minutes max age)' },
  bitbucketSignature: { header: 'X-Hub-Signature', description: 'Bitbucket: sha256=HMAC-SHA256 of the body' },
  giteaSignature: { header: 'X-Gitea-Signature', description: 'Gitea: hex HMAC-SHA256 of the body (no prefix)' },
  forgejoSignature: { header: 'X-Forgejo-Signature', description: 'Forgejo: hex HMAC-SHA256 of the body (no prefix; X-Gitea-Signature also accepted)' },
} as const;

const WebhookBuild = z.object({ buildId: z.string() }).openapi('WebhookBuild');

export const WebhookResult = z
  .object({
    pong: z.boolean().optional().openapi({ description: 'A ping (hook set-up) was verified' }),
    ignored: z.string().optional().openapi({ description: 'Why this event starts no build' }),
    duplicate: z.boolean().optional().openapi({ description: 'This delivery id was received before: no second push workflow (Temporal refuses its id too)' }),
    deliveryId: z.string().optional(),
    workflowId: z.string().optional().openapi({ description: "The delivery's PushWorkflow (`push-<provider>-<delivery id>`)" }),
    status: z
      .enum(['received', 'done', 'failed'])
      .optional()
      .openapi({ description: 'received: the push workflow runs; done/failed: it finished (see GET /api/v1/repositories/{id}/deliveries)' }),
    builds: z.array(WebhookBuild).optional().openapi({ description: 'Builds the delivery started so far (duplicate), or none (ignored)' }),
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
      'Verified against the webhook secret of the repository the event names before anything else, recorded (the answer ' +
      'comes once the delivery is stored), and handed to a PushWorkflow whose id comes from the delivery id (a duplicate ' +
      'is refused); while the build engine is unreachable, recorded deliveries wait and start when it is back. The workflow matches the rules, ' +
      'skips a push whose commit is no longer the head of its ref, applies path filters and starts one build per ' +
      'matching enabled rule; what it did is listed by GET /api/v1/repositories/{id}/deliveries. No Kiln token is involved.',
    security: Object.keys(WEBHOOK_SECURITY_SCHEMES).map((name) => ({ [name]: [] })),
    request: {
      params: z.object({ provider: z.enum(WEBHOOK_PROVIDERS).openapi({ param: { name: 'provider', in: 'path' } }) }),
      body: { required: true, content: { 'application/json': { schema: z.object({}).passthrough().openapi({ description: "The host's push event" }) } } },
    },
    responses: {
      200: { description: 'A ping, or a delivery received before (duplicate)', content: { 'application/json': { schema: WebhookResult } } },
      202: {
        description: 'The push workflow was started (deliveryId, workflowId, status received), or the event ignored',
        content: { 'application/json': { schema: WebhookResult } },
      },
      ...pickErrors(400, 401, 404, 413, 422, 503),
    },
  });
}

/**
 * The delivery as the host's parser reads it. Its own function so that the parsed body (a 1 MiB
 * payload is tens of thousands of small objects) is garbage as soon as it returns, not kept alive by the
 * handler while it waits for the database.
 */
function parseDelivery(name: WebhookProvider, bytes: Buffer, headers: Headers, contentType: string | undefined) {
  let body: Record<string, unknown>;
  try {
    body = parseBody(bytes.toString('utf8'), contentType);
  } catch (err) {
    if (err instanceof WebhookPayloadError) throw new ApiError('bad_request', `Not a ${name} webhook delivery: ${err.message}`);
    if (err instanceof SyntaxError) throw new ApiError('invalid_json', 'The request body is not valid JSON');
    throw err;
  }
  // A JSON object without the host's headers or fields is well-formed but no delivery: 422.
  try {
    return PROVIDERS[name].parse(headers, body);
  } catch (err) {
    if (err instanceof WebhookPayloadError) throw new ApiError('unprocessable', `Not a ${name} webhook delivery: ${err.message}`);
    throw err;
  }
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
