import { and, arrayContains, desc, eq } from 'drizzle-orm';
import type { Db } from '../client';
import type { PushResultItem } from '../../domain/push';
import { webhookDeliveries } from '../schema';

export type WebhookDelivery = typeof webhookDeliveries.$inferSelect;

/**
 * Records a verified delivery before its PushWorkflow starts. Idempotent: a redelivery (or the
 * retry of a request whose workflow start failed) keeps the first row; Temporal, not this row,
 * refuses the duplicate workflow.
 */
export async function recordDelivery(
  db: Db,
  d: { provider: string; deliveryId: string; workflowId: string; repositoryIds: string[] },
): Promise<void> {
  await db.insert(webhookDeliveries).values(d).onConflictDoNothing();
}

export async function getDelivery(db: Db, provider: string, deliveryId: string): Promise<WebhookDelivery | undefined> {
  const [row] = await db
    .select()
    .from(webhookDeliveries)
    .where(and(eq(webhookDeliveries.provider, provider), eq(webhookDeliveries.deliveryId, deliveryId)));
  return row;
}

/** What the PushWorkflow made of the delivery: its builds and every skip or failure with its reason. */
export async function finishDelivery(
  db: Db,
  provider: string,
  deliveryId: string,
  outcome: { status: 'done' | 'failed'; results: PushResultItem[]; buildIds: string[] },
): Promise<void> {
  await db
    .update(webhookDeliveries)
    .set({ ...outcome, finishedAt: new Date() })
    .where(and(eq(webhookDeliveries.provider, provider), eq(webhookDeliveries.deliveryId, deliveryId)));
}

/** A repository's most recent deliveries, newest first. */
export async function listRepositoryDeliveries(db: Db, repositoryId: string, limit: number): Promise<WebhookDelivery[]> {
  return db
    .select()
    .from(webhookDeliveries)
    .where(arrayContains(webhookDeliveries.repositoryIds, [repositoryId]))
    .orderBy(desc(webhookDeliveries.receivedAt), desc(webhookDeliveries.deliveryId))
    .limit(limit);
}
