// Outbound notifications: a namespace's webhook subscriptions (optionally narrowed to one of its
// repositories), their recent deliveries, and redelivery. Deliveries run in Temporal
// (activities/notify.ts); receivers must be reachable from the control workers.
import { randomBytes } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { encryptSecret } from '../../db/crypto';
import { getNamespaceByName } from '../../db/queries/namespaces';
import {
  deleteSubscription,
  getDelivery,
  getSubscription,
  insertSubscription,
  listDeliveries,
  listSubscriptions,
  setDeliveryStatus,
  updateSubscription,
  type SubscriptionWithNames,
} from '../../db/queries/notifications';
import { getRepositoryByPath } from '../../db/queries/repositories';
import type { NotificationDelivery } from '../../db/schema';
import { NOTIFICATION_DELIVERY_STATUSES, NOTIFICATION_EVENTS } from '../../domain/notifications';
import { requireNamespace, type AppEnv } from '../auth';
import { ApiError, pickErrors } from '../errors';
import { NamespaceName, RepositoryName } from '../schemas';
import type { AppDeps } from '../types';
import { createRouter, isUuid, jsonContent } from '../util';

/**
 * http(s), a host name or IPv4 address (IPv6 literals: use a name), an optional port 1-65535, then
 * printable ASCII; no user:password@.
 */
export const NOTIFICATION_URL_RE =
  /^https?:\/\/[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:[/?#][\x21-\x7e]*)?$/;

const NotificationUrl = z
  .string()
  .max(2048)
  .regex(NOTIFICATION_URL_RE, 'an http:// or https:// URL with a host name or IPv4 address, without user:password@')
  .openapi({
    description: 'Where deliveries are POSTed: http or https, no credentials in the URL. It must be reachable from the control workers.',
    example: 'https://hooks.example.com/kiln',
  });

const Events = z
  .array(z.enum(NOTIFICATION_EVENTS))
  .min(1)
  .max(NOTIFICATION_EVENTS.length)
  .refine((a) => new Set(a).size === a.length, 'events must be unique')
  .openapi({ uniqueItems: true, example: ['build.succeeded', 'build.failed', 'image.pushed'] });

const SubscriptionCreate = z
  .object({
    url: NotificationUrl,
    events: Events,
    repository: RepositoryName.optional().openapi({ description: 'Only events of this repository of the namespace; all its repositories when omitted' }),
    description: z.string().max(256).optional(),
    active: z.boolean().optional().openapi({ description: 'Inactive subscriptions get no deliveries (default true)' }),
  })
  .strict()
  .openapi('SubscriptionCreate');

const SubscriptionUpdate = z
  .object({ url: NotificationUrl.optional(), events: Events.optional(), description: z.string().max(256).optional(), active: z.boolean().optional() })
  .strict()
  .openapi('SubscriptionUpdate');

const SubscriptionView = z
  .object({
    id: z.string(),
    namespace: z.string(),
    repository: z.string().nullable().openapi({ description: 'The one repository it is narrowed to, or null' }),
    url: z.string(),
    events: z.array(z.enum(NOTIFICATION_EVENTS)),
    description: z.string(),
    active: z.boolean(),
    createdAt: z.iso.datetime({ offset: true }),
    updatedAt: z.iso.datetime({ offset: true }),
  })
  .openapi('Subscription');

const SubscriptionCreated = SubscriptionView.extend({
  secret: z.string().openapi({
    description: 'Signs every delivery (X-Kiln-Signature-256: sha256=<hex HMAC-SHA256 of the body>). Shown only in this response; stored encrypted.',
  }),
}).openapi('SubscriptionCreated');

const DeliveryAttemptView = z.object({
  attempt: z.number().int(),
  at: z.iso.datetime({ offset: true }),
  statusCode: z.number().int().nullable().openapi({ description: "The receiver's status code; null when it gave none" }),
  durationMs: z.number().int(),
  error: z.string().nullable(),
});

const DeliveryView = z
  .object({
    id: z.string().openapi({ description: 'The X-Kiln-Delivery header and the body\'s id' }),
    event: z.enum(NOTIFICATION_EVENTS),
    status: z.enum(NOTIFICATION_DELIVERY_STATUSES),
    attempts: z.array(DeliveryAttemptView).openapi({ description: 'Attempts, oldest first (the newest 20)' }),
    lastAttempt: DeliveryAttemptView.nullable(),
    payload: z.record(z.string(), z.unknown()).openapi({ description: 'The body sent' }),
    createdAt: z.iso.datetime({ offset: true }),
    deliveredAt: z.iso.datetime({ offset: true }).nullable(),
  })
  .openapi('NotificationDelivery');

const NameParams = z.object({ name: NamespaceName.openapi({ param: { name: 'name', in: 'path' }, example: 'team-a' }) });
const SubscriptionIdParams = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, format: 'uuid' }),
});
const DeliveryParams = SubscriptionIdParams.extend({
  deliveryId: z.string().openapi({ param: { name: 'deliveryId', in: 'path' }, format: 'uuid' }),
});
const DeliveryQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).optional().openapi({ param: { name: 'limit', in: 'query' }, description: 'Newest first; 20 unless set' }),
});

const create = createRoute({
  method: 'post',
  path: '/namespaces/{name}/subscriptions',
  tags: ['notifications'],
  summary: 'Subscribe a URL to build and image events of a namespace',
  description:
    'Events: build.started, build.succeeded, build.failed (timed out too), build.canceled, image.pushed (builds and user pushes). ' +
    'Each delivery is a JSON POST signed with the secret returned here once, delivered at least once with backoff.',
  request: { params: NameParams, body: { required: true, content: jsonContent(SubscriptionCreate) } },
  responses: { 201: { description: 'Created', content: jsonContent(SubscriptionCreated) }, ...pickErrors(400, 401, 403, 404, 413, 415, 422) },
});

const list = createRoute({
  method: 'get',
  path: '/namespaces/{name}/subscriptions',
  tags: ['notifications'],
  summary: "List a namespace's subscriptions (never their secrets)",
  request: { params: NameParams },
  responses: {
    200: { description: 'Subscriptions', content: jsonContent(z.object({ items: z.array(SubscriptionView), nextCursor: z.null() }).openapi('SubscriptionPage')) },
    ...pickErrors(400, 401, 403, 404),
  },
});

const get = createRoute({
  method: 'get',
  path: '/subscriptions/{id}',
  tags: ['notifications'],
  summary: 'Get a subscription',
  request: { params: SubscriptionIdParams },
  responses: { 200: { description: 'The subscription', content: jsonContent(SubscriptionView) }, ...pickErrors(401, 403, 404) },
});

const patch = createRoute({
  method: 'patch',
  path: '/subscriptions/{id}',
  tags: ['notifications'],
  summary: 'Change a subscription (URL, events, description, active)',
  request: { params: SubscriptionIdParams, body: { required: true, content: jsonContent(SubscriptionUpdate) } },
  responses: { 200: { description: 'The subscription', content: jsonContent(SubscriptionView) }, ...pickErrors(400, 401, 403, 404, 413, 415) },
});

const remove = createRoute({
  method: 'delete',
  path: '/subscriptions/{id}',
  tags: ['notifications'],
  summary: 'Delete a subscription and its delivery records',
  request: { params: SubscriptionIdParams },
  responses: { 204: { description: 'Deleted' }, ...pickErrors(401, 403, 404) },
});

const deliveries = createRoute({
  method: 'get',
  path: '/subscriptions/{id}/deliveries',
  tags: ['notifications'],
  summary: "A subscription's latest deliveries with their attempts (status code, duration, error)",
  request: { params: SubscriptionIdParams, query: DeliveryQuery },
  responses: {
    200: { description: 'Newest first', content: jsonContent(z.object({ items: z.array(DeliveryView), nextCursor: z.null() }).openapi('NotificationDeliveryPage')) },
    ...pickErrors(400, 401, 403, 404),
  },
});

const redeliver = createRoute({
  method: 'post',
  path: '/subscriptions/{id}/deliveries/{deliveryId}/redeliver',
  tags: ['notifications'],
  summary: 'Send a delivery again (same id and body, signed again), with the same retries',
  request: { params: DeliveryParams },
  responses: {
    202: { description: 'Accepted', content: jsonContent(DeliveryView) },
    ...pickErrors(401, 403, 404, 409, 503),
  },
});

function subscriptionView(s: SubscriptionWithNames) {
  return {
    id: s.id,
    namespace: s.namespace,
    repository: s.repository,
    url: s.url,
    events: s.events,
    description: s.description,
    active: s.active,
    createdAt: s.createdAt.toISOString(),
    updatedAt: s.updatedAt.toISOString(),
  };
}

function deliveryView(d: NotificationDelivery): z.infer<typeof DeliveryView> {
  return {
    id: d.id,
    event: d.event,
    status: d.status,
    attempts: d.attempts,
    lastAttempt: d.attempts.at(-1) ?? null,
    payload: JSON.parse(d.body) as Record<string, unknown>,
    createdAt: d.createdAt.toISOString(),
    deliveredAt: d.deliveredAt?.toISOString() ?? null,
  };
}

export function subscriptionRoutes(deps: AppDeps) {
  const { db, config } = deps;

  async function loadNamespace(c: Context<AppEnv>, name: string) {
    requireNamespace(c, name);
    const ns = await getNamespaceByName(db, name);
    if (!ns) throw new ApiError('not_found', `Namespace ${name} not found`);
    return ns;
  }

  async function loadSubscription(c: Context<AppEnv>, id: string): Promise<SubscriptionWithNames> {
    const sub = isUuid(id) ? await getSubscription(db, id) : undefined;
    if (!sub) throw new ApiError('not_found', `Subscription ${id} not found`);
    requireNamespace(c, sub.namespace);
    return sub;
  }

  return createRouter()
    .openapi(create, async (c) => {
      const ns = await loadNamespace(c, c.req.valid('param').name);
      const body = c.req.valid('json');
      const repo = body.repository ? await getRepositoryByPath(db, ns.name, body.repository) : null;
      if (body.repository && !repo) throw new ApiError('unprocessable', `Repository ${ns.name}/${body.repository} does not exist: a subscription can only narrow to an existing repository`);
      const secret = `kiln_whsec_${randomBytes(32).toString('base64url')}`;
      const row = await insertSubscription(db, {
        namespaceId: ns.id,
        repositoryId: repo?.id ?? null,
        url: body.url,
        events: body.events,
        description: body.description ?? '',
        active: body.active ?? true,
        secretEnc: encryptSecret(config.secretKey, secret),
      });
      return c.json({ ...subscriptionView({ ...row, namespace: ns.name, repository: repo?.name ?? null }), secret }, 201);
    })
    .openapi(list, async (c) => {
      const ns = await loadNamespace(c, c.req.valid('param').name);
      return c.json({ items: (await listSubscriptions(db, ns.id)).map(subscriptionView), nextCursor: null }, 200);
    })
    .openapi(get, async (c) => c.json(subscriptionView(await loadSubscription(c, c.req.valid('param').id)), 200))
    .openapi(patch, async (c) => {
      const sub = await loadSubscription(c, c.req.valid('param').id);
      const updated = await updateSubscription(db, sub.id, c.req.valid('json'));
      if (!updated) throw new ApiError('not_found', `Subscription ${sub.id} not found`);
      return c.json(subscriptionView({ ...updated, namespace: sub.namespace, repository: sub.repository }), 200);
    })
    .openapi(remove, async (c) => {
      const sub = await loadSubscription(c, c.req.valid('param').id);
      await deleteSubscription(db, sub.id);
      return c.body(null, 204);
    })
    .openapi(deliveries, async (c) => {
      const sub = await loadSubscription(c, c.req.valid('param').id);
      const rows = await listDeliveries(db, sub.id, c.req.valid('query').limit ?? 20);
      return c.json({ items: rows.map(deliveryView), nextCursor: null }, 200);
    })
    .openapi(redeliver, async (c) => {
      const { id, deliveryId } = c.req.valid('param');
      const sub = await loadSubscription(c, id);
      const delivery = isUuid(deliveryId) ? await getDelivery(db, deliveryId) : undefined;
      if (!delivery || delivery.subscriptionId !== sub.id) throw new ApiError('not_found', `Delivery ${deliveryId} not found`);
      if (!deps.deliveries) throw new ApiError('service_unavailable', 'Deliveries cannot be started here');
      if (delivery.status === 'pending' && delivery.attempts.length > 0) {
        throw new ApiError('conflict', `Delivery ${delivery.id} is still being retried`);
      }
      // Pending before the start: a fast delivery then records its own outcome over it, never the reverse.
      await setDeliveryStatus(db, delivery.id, 'pending');
      let started: 'started' | 'running';
      try {
        started = await deps.deliveries.start(delivery.id);
      } catch {
        await setDeliveryStatus(db, delivery.id, delivery.status);
        throw new ApiError('service_unavailable', 'The delivery engine could not be reached; nothing was sent');
      }
      if (started === 'running') {
        await setDeliveryStatus(db, delivery.id, delivery.status);
        throw new ApiError('conflict', `Delivery ${delivery.id} is being delivered`);
      }
      return c.json(deliveryView({ ...delivery, status: 'pending' }), 202);
    });
}
