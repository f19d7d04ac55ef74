import { and, arrayContains, asc, desc, eq, inArray, isNotNull, isNull, lte, or, sql, type Placeholder } from 'drizzle-orm';
import { preparedFor, type Db } from '../client';
import type { PushResultItem, PushWorkflowInput } from '../../domain/push';
import { webhookDeliveries } from '../schema';

export type WebhookDelivery = typeof webhookDeliveries.$inferSelect;

/** The start of one recorded delivery's PushWorkflow, as the dispatcher holds it. */
export interface PendingPush {
  provider: string;
  deliveryId: string;
  workflowId: string;
  input: PushWorkflowInput;
}

/** `now() + ms`, on the database's clock (every API node shares it). */
const fromNow = (ms: number | Placeholder) => sql`now() + ${typeof ms === 'number' ? Math.round(ms) : ms}::int * interval '1 millisecond'`;

/**
 * Records a verified delivery with its PushWorkflow's input, held for this API node's dispatcher
 * for `leaseMs` (after that any node's sweep may start it). False when the delivery id was
 * recorded before: a redelivery keeps the first row.
 */
export async function recordDelivery(
  db: Db,
  d: { provider: string; deliveryId: string; workflowId: string; repositoryIds: string[]; pushInput: PushWorkflowInput; leaseMs: number },
): Promise<boolean> {
  const inserted = await preparedFor(db, prepareRecordDelivery).execute({ ...d, leaseMs: Math.round(d.leaseMs) });
  return inserted.length > 0;
}

// Runs once per webhook delivery: built once per database, not per call.
const prepareRecordDelivery = (db: Db) =>
  db
    .insert(webhookDeliveries)
    .values({
      provider: sql.placeholder('provider'),
      deliveryId: sql.placeholder('deliveryId'),
      workflowId: sql.placeholder('workflowId'),
      repositoryIds: sql.placeholder('repositoryIds'),
      pushInput: sql.placeholder('pushInput'),
      dispatchAfter: fromNow(sql.placeholder('leaseMs')),
    })
    .onConflictDoNothing()
    .returning({ deliveryId: webhookDeliveries.deliveryId })
    .prepare('record_delivery');

/**
 * Claims up to `limit` recorded deliveries whose workflow has not started and whose hold ran out
 * (their node died, or a start failed and waits for its retry), holding them for `leaseMs`. Rows
 * another node is claiming at the same moment are skipped, not waited for.
 */
export async function claimPendingPushes(db: Db, limit: number, leaseMs: number): Promise<PendingPush[]> {
  const t = webhookDeliveries;
  const due = db
    .select({ provider: t.provider, deliveryId: t.deliveryId })
    .from(t)
    .where(and(isNull(t.workflowStartedAt), isNotNull(t.pushInput), or(isNull(t.dispatchAfter), lte(t.dispatchAfter, sql`now()`))))
    .orderBy(asc(t.receivedAt))
    .limit(limit)
    .for('update', { skipLocked: true });
  const rows = await db
    .update(t)
    .set({ dispatchAfter: fromNow(leaseMs) })
    .where(sql`(${t.provider}, ${t.deliveryId}) in (${due})`)
    .returning({ provider: t.provider, deliveryId: t.deliveryId, workflowId: t.workflowId, input: t.pushInput });
  return rows.flatMap((r) => (r.workflowId && r.input ? [{ ...r, workflowId: r.workflowId, input: r.input }] : []));
}

/** Their workflows started (or Temporal already had them): done with the outbox. */
export async function markPushesStarted(db: Db, keys: { provider: string; deliveryId: string }[]): Promise<void> {
  const byProvider = new Map<string, string[]>();
  for (const k of keys) {
    const ids = byProvider.get(k.provider) ?? [];
    ids.push(k.deliveryId);
    byProvider.set(k.provider, ids);
  }
  for (const [provider, ids] of byProvider) {
    await db
      .update(webhookDeliveries)
      .set({ workflowStartedAt: sql`now()`, pushInput: null, dispatchAfter: null })
      .where(and(eq(webhookDeliveries.provider, provider), inArray(webhookDeliveries.deliveryId, ids), isNull(webhookDeliveries.workflowStartedAt)));
  }
}

/** A start that failed: any sweep may try again after `ms`. */
export async function postponePush(db: Db, key: { provider: string; deliveryId: string }, ms: number): Promise<void> {
  await db
    .update(webhookDeliveries)
    .set({ dispatchAfter: fromNow(ms) })
    .where(and(eq(webhookDeliveries.provider, key.provider), eq(webhookDeliveries.deliveryId, key.deliveryId), isNull(webhookDeliveries.workflowStartedAt)));
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
