import { and, asc, desc, eq, isNull, or, sql } from 'drizzle-orm';
import type { Db } from '../client';
import {
  namespaces,
  notificationDeliveries,
  notificationSubscriptions,
  repositories,
  type DeliveryAttempt,
  type NotificationDelivery,
  type NotificationSubscription,
} from '../schema';
import type { DeliveryStatus, NotificationEvent } from '../../domain/notifications';

export type SubscriptionWithNames = NotificationSubscription & { namespace: string; repository: string | null };

const withNames = {
  subscription: notificationSubscriptions,
  namespace: namespaces.name,
  repository: repositories.name,
};

function named(rows: { subscription: NotificationSubscription; namespace: string; repository: string | null }[]): SubscriptionWithNames[] {
  return rows.map((r) => ({ ...r.subscription, namespace: r.namespace, repository: r.repository }));
}

export async function insertSubscription(db: Db, values: typeof notificationSubscriptions.$inferInsert): Promise<NotificationSubscription> {
  const [row] = await db.insert(notificationSubscriptions).values(values).returning();
  return row!;
}

export async function getSubscription(db: Db, id: string): Promise<SubscriptionWithNames | undefined> {
  const rows = await db
    .select(withNames)
    .from(notificationSubscriptions)
    .innerJoin(namespaces, eq(namespaces.id, notificationSubscriptions.namespaceId))
    .leftJoin(repositories, eq(repositories.id, notificationSubscriptions.repositoryId))
    .where(eq(notificationSubscriptions.id, id));
  return named(rows)[0];
}

export async function listSubscriptions(db: Db, namespaceId: string): Promise<SubscriptionWithNames[]> {
  const rows = await db
    .select(withNames)
    .from(notificationSubscriptions)
    .innerJoin(namespaces, eq(namespaces.id, notificationSubscriptions.namespaceId))
    .leftJoin(repositories, eq(repositories.id, notificationSubscriptions.repositoryId))
    .where(eq(notificationSubscriptions.namespaceId, namespaceId))
    .orderBy(asc(notificationSubscriptions.createdAt), asc(notificationSubscriptions.id));
  return named(rows);
}

export async function updateSubscription(
  db: Db,
  id: string,
  values: Partial<typeof notificationSubscriptions.$inferInsert>,
): Promise<NotificationSubscription | undefined> {
  const [row] = await db
    .update(notificationSubscriptions)
    .set({ ...values, updatedAt: new Date() })
    .where(eq(notificationSubscriptions.id, id))
    .returning();
  return row;
}

export async function deleteSubscription(db: Db, id: string): Promise<boolean> {
  const rows = await db.delete(notificationSubscriptions).where(eq(notificationSubscriptions.id, id)).returning({ id: notificationSubscriptions.id });
  return rows.length > 0;
}

/** Active subscriptions of the namespace that ask for `event`: namespace-wide ones and the repository's own. */
export async function findSubscribers(
  db: Db,
  input: { namespaceId: string; repositoryId: string; event: NotificationEvent },
): Promise<NotificationSubscription[]> {
  return db
    .select()
    .from(notificationSubscriptions)
    .where(
      and(
        eq(notificationSubscriptions.namespaceId, input.namespaceId),
        eq(notificationSubscriptions.active, true),
        or(isNull(notificationSubscriptions.repositoryId), eq(notificationSubscriptions.repositoryId, input.repositoryId)),
        sql`${input.event} = any(${notificationSubscriptions.events})`,
      ),
    )
    .orderBy(asc(notificationSubscriptions.createdAt));
}

/** Inserts the delivery unless its (subscription, eventKey) exists; returns the stored row either way. */
export async function insertDelivery(
  db: Db,
  values: { id: string; subscriptionId: string; event: NotificationEvent; eventKey: string; body: string },
): Promise<NotificationDelivery> {
  await db.insert(notificationDeliveries).values(values).onConflictDoNothing();
  const [row] = await db
    .select()
    .from(notificationDeliveries)
    .where(and(eq(notificationDeliveries.subscriptionId, values.subscriptionId), eq(notificationDeliveries.eventKey, values.eventKey)));
  return row!;
}

export async function getDelivery(db: Db, id: string): Promise<NotificationDelivery | undefined> {
  const [row] = await db.select().from(notificationDeliveries).where(eq(notificationDeliveries.id, id));
  return row;
}

/** The newest deliveries first. */
export async function listDeliveries(db: Db, subscriptionId: string, limit: number): Promise<NotificationDelivery[]> {
  return db
    .select()
    .from(notificationDeliveries)
    .where(eq(notificationDeliveries.subscriptionId, subscriptionId))
    .orderBy(desc(notificationDeliveries.createdAt), desc(notificationDeliveries.id))
    .limit(limit);
}

/** Appends one attempt (keeping the newest `keep`) and sets the status. */
export async function recordDeliveryAttempt(
  db: Db,
  id: string,
  attempt: DeliveryAttempt,
  status: DeliveryStatus,
  keep: number,
): Promise<void> {
  await db.transaction(async (tx) => {
    const [row] = await tx.select({ attempts: notificationDeliveries.attempts }).from(notificationDeliveries).where(eq(notificationDeliveries.id, id)).for('update');
    if (!row) return;
    const attempts = [...row.attempts, attempt].slice(-keep);
    await tx
      .update(notificationDeliveries)
      .set({ attempts, status, ...(status === 'delivered' ? { deliveredAt: new Date() } : {}) })
      .where(eq(notificationDeliveries.id, id));
  });
}

export async function setDeliveryStatus(db: Db, id: string, status: DeliveryStatus): Promise<void> {
  await db.update(notificationDeliveries).set({ status }).where(eq(notificationDeliveries.id, id));
}
