import { and, eq } from 'drizzle-orm';
import type { Db } from '../client';
import { webhookDeliveries } from '../schema';

/**
 * Claims a delivery id; false when it was seen before. Run it in the same transaction as the
 * builds it starts, so a redelivery after a crash is not mistaken for a duplicate.
 */
export async function claimDelivery(db: Db, provider: string, deliveryId: string, buildIds: string[]): Promise<boolean> {
  const rows = await db
    .insert(webhookDeliveries)
    .values({ provider, deliveryId, buildIds })
    .onConflictDoNothing()
    .returning({ deliveryId: webhookDeliveries.deliveryId });
  return rows.length > 0;
}

export async function getDelivery(db: Db, provider: string, deliveryId: string) {
  const [row] = await db
    .select()
    .from(webhookDeliveries)
    .where(and(eq(webhookDeliveries.provider, provider), eq(webhookDeliveries.deliveryId, deliveryId)));
  return row;
}
