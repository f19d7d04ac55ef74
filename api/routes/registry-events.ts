// POST /webhooks/registry: CNCF Distribution's notifications (`notifications.endpoints` in the
// registry config). A tag pushed to the registry by hand (docker push, buildctl, crane) is
// recorded as an image version with creation method `user push`, so the tag list is complete and
// immutable-tag checks know it.
import { createHmac } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import { enqueueNotifications } from '../../activities/notify';
import { KILN_USER_AGENT, MEDIA_TYPES } from '../../activities/registry';
import type { Db } from '../../db/client';
import { isKilnSubject } from '../../domain/registry-access';
import { getNamespaceByName } from '../../db/queries/namespaces';
import { ensureRepository, getRepositoryByPath } from '../../db/queries/repositories';
import { findImageTags, upsertImageTags } from '../../db/queries/tags';
import type { AppDeps } from '../types';
import { rebuildForBaseChange, type BaseImageRebuild } from '../base-image-rebuilds';
import { tokensEqual } from '../auth';
import { ApiError, pickErrors } from '../errors';
import { NAMESPACE_NAME_RE, OCI_TAG_RE, REPOSITORY_NAME_RE } from '../schemas';
import { createRouter, jsonContent } from '../util';

/**
 * The bearer token the registry sends with each notification. Derived from KILN_SECRET_KEY (a
 * keyed hash with its own label), so it needs no configuration of its own and reveals nothing of
 * the key; `npm start` writes it into the local registry's config.
 */
export function registryNotificationToken(secretKey: string): string {
  return createHmac('sha256', secretKey).update('kiln/registry-notifications/v1').digest('base64url');
}

const MANIFEST_TYPES: readonly string[] = Object.values(MEDIA_TYPES);
const KILN_AGENT = KILN_USER_AGENT.split('/')[0]! + '/';
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** The parts of a Distribution event Kiln reads; everything else passes through unread. */
const RegistryEvent = z
  .object({
    id: z.string().optional(),
    action: z.string(),
    target: z
      .object({
        mediaType: z.string().optional(),
        digest: z.string().optional(),
        repository: z.string().optional(),
        tag: z.string().optional(),
      })
      .passthrough()
      .optional(),
    request: z.object({ useragent: z.string().optional() }).passthrough().optional(),
    actor: z.object({ name: z.string().optional() }).passthrough().optional(),
  })
  .passthrough();

const Envelope = z.object({ events: z.array(RegistryEvent).max(1000) }).passthrough();

type RegistryEventT = z.infer<typeof RegistryEvent>;

const RegistryEventsResult = z
  .object({
    recorded: z.array(z.object({ repository: z.string(), tag: z.string(), digest: z.string() })),
    ignored: z.number().int(),
    rebuilds: z
      .array(z.object({ buildId: z.string(), ruleId: z.string(), ref: z.string(), created: z.boolean() }))
      .openapi({ description: 'Builds of rules with rebuildOnBaseChange whose base image this push moved' }),
  })
  .openapi('RegistryEventsResult');

const route = createRoute({
  method: 'post',
  path: '/registry',
  tags: ['webhooks'],
  summary: 'Registry notifications (CNCF Distribution)',
  description:
    'Point the registry\'s `notifications.endpoints` here with header `Authorization: Bearer <token>` (npm start does ' +
    'it for the local registry). Tag pushes into repositories of known namespaces are recorded as `user push`; ' +
    "Kiln's own pushes (by the token subject Kiln's realm gave them; on a registry without token auth, by User-Agent kiln/*), pulls, deletes and pushes by digest are ignored. The body is the " +
    'registry\'s event envelope (`application/vnd.docker.distribution.events.v1+json`).',
  security: [{ registryNotificationToken: [] }],
  responses: {
    200: { description: 'Events processed', content: jsonContent(RegistryEventsResult) },
    ...pickErrors(400, 401, 413),
  },
});

/** A tag pushed into a Kiln namespace's repository (by Kiln or by hand), or null with nothing to do. */
function pushedTag(e: RegistryEventT): { namespace: string; name: string; tag: string; digest: string; byKiln: boolean } | null {
  if (e.action !== 'push' || !e.target) return null;
  const { mediaType, digest, repository, tag } = e.target;
  if (!tag || !OCI_TAG_RE.test(tag) || !digest || !DIGEST_RE.test(digest) || !repository) return null;
  if (!mediaType || !MANIFEST_TYPES.includes(mediaType)) return null; // blob pushes, signatures, other artifacts
  // Who pushed: with token auth the registry reports the token's subject, which only Kiln's realm
  // can set. A registry without auth knows nobody; there the User-Agent is all there is.
  const actor = e.actor?.name;
  const byKiln = !!(actor ? isKilnSubject(actor) : e.request?.useragent?.startsWith(KILN_AGENT));
  const [namespace, name, ...rest] = repository.split('/');
  if (rest.length || !namespace || !name || !NAMESPACE_NAME_RE.test(namespace) || !REPOSITORY_NAME_RE.test(name)) return null;
  return { namespace, name, tag, digest, byKiln };
}

type Recorded = { namespaceId: string; repositoryId: string };

async function record(db: Db, p: NonNullable<ReturnType<typeof pushedTag>>): Promise<Recorded | null> {
  // Only namespaces Kiln manages; a repository appears on first push when the namespace allows it.
  const ns = await getNamespaceByName(db, p.namespace);
  if (!ns) return null;
  const repo = (await getRepositoryByPath(db, p.namespace, p.name)) ?? (ns.autoCreateRepository ? await ensureRepository(db, ns, p.name) : null);
  if (!repo) return null;
  const [existing] = await findImageTags(db, repo.id, [p.tag]);
  // The tag already points there through a build: that is the build's own push, seen late.
  if (existing && existing.digest === p.digest && existing.buildId) return null;
  await upsertImageTags(db, { repositoryId: repo.id, tags: [p.tag], digest: p.digest, buildId: null, creationMethod: 'user push' });
  return { namespaceId: ns.id, repositoryId: repo.id };
}

export function registryEventRoutes(deps: AppDeps) {
  const { db, config } = deps;
  const expected = registryNotificationToken(config.secretKey);

  const router = createRouter();
  router.openAPIRegistry.registerComponent('securitySchemes', 'registryNotificationToken', {
    type: 'http',
    scheme: 'bearer',
    description: 'Derived from KILN_SECRET_KEY; see registryNotificationToken in api/routes/registry-events.ts',
  });
  return router.openapi(route, async (c) => {
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '');
    if (!match?.[1] || !tokensEqual(match[1], expected)) {
      throw new ApiError('unauthorized', 'Missing or invalid registry notification token', null, {
        'WWW-Authenticate': 'Bearer realm="kiln-registry-notifications"',
      });
    }
    let raw: unknown;
    try {
      raw = JSON.parse(await c.req.text());
    } catch {
      throw new ApiError('invalid_json', 'The request body is not valid JSON');
    }
    const parsed = Envelope.safeParse(raw);
    if (!parsed.success) throw new ApiError('bad_request', 'Not a registry notification envelope ({"events": [...]})');

    const recorded: { repository: string; tag: string; digest: string }[] = [];
    let ignored = 0;
    const rebuilds: BaseImageRebuild[] = [];
    for (const event of parsed.data.events) {
      const p = pushedTag(event);
      // A failure here answers 500 and the registry redelivers: recording, enqueuing and rebuilds are idempotent.
      const stored = p && !p.byKiln ? await record(db, p) : null;
      if (p && stored) {
        const repository = `${p.namespace}/${p.name}`;
        recorded.push({ repository, tag: p.tag, digest: p.digest });
        if (deps.deliveries) {
          await enqueueNotifications({ db, deliveries: deps.deliveries }, {
            ...stored,
            namespace: p.namespace,
            repository,
            event: 'image.pushed',
            // The registry's event id names this push; a redelivered notification carries the same.
            eventKey: `image.pushed:registry:${event.id ?? `${p.tag}@${p.digest}`}`,
            data: {
              image: {
                repository,
                tags: [p.tag],
                digest: p.digest,
                reference: `${config.registry}/${repository}@${p.digest}`,
                creationMethod: 'user push',
                buildId: null,
              },
            },
          });
        }
      } else ignored++;
      // Kiln's own pushes move tags too: a base image built by Kiln triggers its dependents.
      if (p) rebuilds.push(...(await rebuildForBaseChange(deps, { repository: `${p.namespace}/${p.name}`, tag: p.tag, digest: p.digest })));
    }
    if (rebuilds.some((r) => r.created)) {
      c.get('log').info({ rebuilds }, `registry: base image changed, rebuilding ${rebuilds.filter((r) => r.created).length} rule ref(s)`);
    }
    if (recorded.length) {
      c.get('log').info({ pushed: recorded }, `registry: user push ${recorded.map((r) => `${r.repository}:${r.tag}@${r.digest.slice(0, 19)}`).join(', ')}`);
    }
    return c.json({ recorded, ignored, rebuilds }, 200);
  });
}
