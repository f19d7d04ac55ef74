// Outbound notifications (signed webhook deliveries) and scheduled rule builds: the activities the
// control worker runs for workflows/notify.ts, and the enqueueing the API shares with them.
import { createHmac, randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { Db } from '../db/client';
import { decryptSecret } from '../db/crypto';
import { getBuild } from '../db/queries/builds';
import { findSubscribers, getDelivery, getSubscription, insertDelivery, recordDeliveryAttempt } from '../db/queries/notifications';
import { getRepository } from '../db/queries/repositories';
import type { Build } from '../db/schema';
import {
  buildEventFor,
  DELIVERY_HEADER,
  EVENT_HEADER,
  KEPT_ATTEMPTS,
  MAX_DELIVERY_ATTEMPTS,
  SIGNATURE_HEADER,
  type DeliveryStarter,
  type NotificationEvent,
} from '../domain/notifications';
import { CONTROL_TASK_QUEUE } from '../domain/temporal';
import { activityLog } from '../observability/log';
import { KILN_USER_AGENT } from './registry';

export const DELIVERY_WORKFLOW_TYPE = 'NotificationDeliveryWorkflow';
export const deliveryWorkflowId = (deliveryId: string) => `notify-${deliveryId}`;
/** How long one attempt may take before it counts as failed. */
const DELIVERY_TIMEOUT_MS = 10_000;

export type { DeliveryStarter } from '../domain/notifications';

export function createTemporalDeliveryStarter(client: Client): DeliveryStarter {
  return {
    async start(deliveryId) {
      try {
        await client.workflow.start(DELIVERY_WORKFLOW_TYPE, {
          taskQueue: CONTROL_TASK_QUEUE,
          workflowId: deliveryWorkflowId(deliveryId),
          // Only the id: the activity loads the body and decrypts the secret itself.
          args: [{ deliveryId }],
          // A redelivery runs the same workflow id again once the last run ended.
          workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        });
        return 'started';
      } catch (err) {
        if (err instanceof WorkflowExecutionAlreadyStartedError) return 'running';
        throw err;
      }
    },
  };
}

export const signBody = (secret: string, body: string) => `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;

export interface NotificationInput {
  namespaceId: string;
  namespace: string;
  repositoryId: string;
  /** `namespace/name` */
  repository: string;
  event: NotificationEvent;
  /** Names the occurrence: enqueuing it twice for a subscription adds nothing. */
  eventKey: string;
  /** The event's own fields (`build`, `image`), merged into the body after id, event, time and repository. */
  data: Record<string, unknown>;
}

/**
 * Stores one delivery per subscriber and starts its workflow. Idempotent: an occurrence already
 * stored is started again only while it is pending without attempts (its first start was lost).
 */
export async function enqueueNotifications(deps: { db: Db; deliveries: DeliveryStarter }, input: NotificationInput): Promise<string[]> {
  const subscribers = await findSubscribers(deps.db, input);
  const ids: string[] = [];
  for (const sub of subscribers) {
    const id = randomUUID();
    const body = JSON.stringify({
      id,
      event: input.event,
      createdAt: new Date().toISOString(),
      namespace: input.namespace,
      repository: input.repository,
      ...input.data,
    });
    const stored = await insertDelivery(deps.db, { id, subscriptionId: sub.id, event: input.event, eventKey: input.eventKey, body });
    if (stored.status === 'pending' && stored.attempts.length === 0) await deps.deliveries.start(stored.id);
    ids.push(stored.id);
  }
  return ids;
}

export function buildSummary(build: Build) {
  return {
    id: build.id,
    status: build.status,
    trigger: build.trigger,
    creationMethod: build.creationMethod,
    ruleId: build.ruleId,
    source: build.sourceUrl ? { url: build.sourceUrl, ref: build.sourceRef, commit: build.sourceCommit } : null,
    tags: build.status === 'succeeded' ? build.pushedTags : build.tags,
    manifestDigest: build.manifestDigest,
    error: build.errorCode ? { code: build.errorCode, message: build.errorMessage ?? '' } : null,
    createdAt: build.createdAt.toISOString(),
    startedAt: build.startedAt?.toISOString() ?? null,
    finishedAt: build.finishedAt?.toISOString() ?? null,
  };
}

export interface NotifyActivityDeps {
  db: Db;
  /** KILN_SECRET_KEY: decrypts subscription secrets inside the delivery activity only. */
  secretKey: string;
  deliveries: DeliveryStarter;
  /** Inserts and starts one build of a rule's own ref (api/rule-builds.ts startScheduledRuleBuild). */
  startScheduledRuleBuild(input: { ruleId: string; clientToken: string }): Promise<{ buildId: string } | { skipped: string }>;
  /** host:port of the registry, for image references in image.pushed. */
  registryHost: string;
}

export function createNotifyActivities(deps: NotifyActivityDeps) {
  const { db } = deps;
  return {
    /**
     * Enqueues the event a build's current status announces (`build.started`, `build.succeeded` and
     * `image.pushed`, `build.failed`, `build.canceled`). Called by the build workflow; it never
     * waits for a receiver.
     */
    async notifyBuildStatus(buildId: string, announced?: 'build.started'): Promise<number> {
      const build = await getBuild(db, buildId);
      if (!build) return 0;
      const event = announced ?? buildEventFor(build.status);
      const repo = event && (await getRepository(db, build.repositoryId));
      if (!event || !repo) return 0;
      const base = { namespaceId: repo.namespaceId, namespace: repo.namespace, repositoryId: repo.id, repository: build.repository };
      const summary = buildSummary(build);
      let count = (await enqueueNotifications(deps, { ...base, event, eventKey: `${event}:${build.id}`, data: { build: summary } })).length;
      if (event === 'build.succeeded' && build.manifestDigest && build.pushedTags.length) {
        const image = {
          repository: build.repository,
          tags: build.pushedTags,
          digest: build.manifestDigest,
          reference: `${deps.registryHost}/${build.repository}@${build.manifestDigest}`,
          creationMethod: build.creationMethod,
          buildId: build.id,
        };
        count += (await enqueueNotifications(deps, { ...base, event: 'image.pushed', eventKey: `image.pushed:build:${build.id}`, data: { image } })).length;
      }
      return count;
    },

    /**
     * One attempt at POSTing a delivery. A 2xx answer delivers it; anything else is recorded and
     * thrown (a plain error: Temporal retries with backoff). The last attempt marks it failed.
     */
    async deliverNotification(deliveryId: string): Promise<'delivered' | 'gone'> {
      const delivery = await getDelivery(db, deliveryId);
      const sub = delivery && (await getSubscription(db, delivery.subscriptionId));
      if (!delivery || !sub) return 'gone';
      const info = Context.current().info;
      const secret = decryptSecret(deps.secretKey, sub.secretEnc);
      const started = performance.now();
      let statusCode: number | null = null;
      let error: string | null = null;
      try {
        const res = await fetch(sub.url, {
          method: 'POST',
          redirect: 'manual',
          headers: {
            'content-type': 'application/json',
            'user-agent': KILN_USER_AGENT.replace('kiln/', 'kiln-notifications/'),
            [EVENT_HEADER]: delivery.event,
            [DELIVERY_HEADER]: delivery.id,
            [SIGNATURE_HEADER]: signBody(secret, delivery.body),
          },
          body: delivery.body,
          signal: AbortSignal.any([AbortSignal.timeout(DELIVERY_TIMEOUT_MS), Context.current().cancellationSignal]),
        });
        statusCode = res.status;
        await res.body?.cancel().catch(() => undefined);
        if (res.status < 200 || res.status >= 300) error = `the receiver answered ${res.status}`;
      } catch (err) {
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        error = (err as Error).name === 'TimeoutError' ? `no answer within ${DELIVERY_TIMEOUT_MS / 1000} s` : (cause?.code ?? cause?.message ?? (err as Error).message);
      }
      const durationMs = Math.round(performance.now() - started);
      const last = info.attempt >= MAX_DELIVERY_ATTEMPTS;
      const status = error ? (last ? 'failed' : 'pending') : 'delivered';
      await recordDeliveryAttempt(db, delivery.id, { attempt: info.attempt, at: new Date().toISOString(), statusCode, durationMs, error }, status, KEPT_ATTEMPTS);
      const attrs = { deliveryId: delivery.id, subscriptionId: sub.id, event: delivery.event, attempt: info.attempt, statusCode, durationMs };
      if (!error) {
        activityLog().info('notification delivered', attrs);
        return 'delivered';
      }
      activityLog().warn(`notification attempt failed: ${error}`, attrs);
      throw new Error(`delivery ${delivery.id} attempt ${info.attempt}: ${error}`);
    },

    /**
     * A schedule fired: builds the rule's own ref exactly as POST /rules/{id}/builds does (the
     * commit is pinned when the build starts), with trigger `schedule`. The schedule's workflow id
     * is the build's client token, so a retried activity starts no second build.
     */
    async startScheduledBuild(input: { ruleId: string; workflowId: string }): Promise<{ buildId: string } | null> {
      const outcome = await deps.startScheduledRuleBuild({ ruleId: input.ruleId, clientToken: `schedule:${input.workflowId}` });
      if ('skipped' in outcome) {
        activityLog().info(`scheduled build skipped: ${outcome.skipped}`, { ruleId: input.ruleId });
        return null;
      }
      return outcome;
    },
  };
}

export type NotifyActivities = ReturnType<typeof createNotifyActivities>;
