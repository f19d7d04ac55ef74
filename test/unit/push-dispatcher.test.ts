import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPushDispatcher, eventLoopBusy } from '../../api/push-dispatcher';
import type { PushStarter } from '../../api/push-starter';
import { openDatabase, type DbHandle } from '../../db/client';
import { getDelivery, recordDelivery } from '../../db/queries/deliveries';
import { webhookDeliveries } from '../../db/schema';
import { inArray } from 'drizzle-orm';
import type { PushWorkflowInput } from '../../domain/push';

let handle: DbHandle;
beforeAll(async () => {
  handle = await openDatabase({ dataDir: 'memory://' });
}, 60_000);
afterAll(() => handle?.close());

/** A starter whose starts take `ms`, recording when each began and the most in flight at once. */
function slowStarter(ms: number) {
  const began: number[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const starter: PushStarter = {
    async start() {
      began.push(performance.now());
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      await new Promise((r) => setTimeout(r, ms));
      inFlight--;
      return 'started';
    },
  };
  return { starter, began, maxInFlight: () => maxInFlight };
}

let seq = 0;
async function recorded(n: number) {
  const pushes = [];
  for (let i = 0; i < n; i++) {
    const deliveryId = `dispatch-${++seq}`;
    const input: PushWorkflowInput = { provider: 'github', deliveryId, repositoryIds: [], updates: [] };
    await recordDelivery(handle.db, { provider: 'github', deliveryId, workflowId: `push-github-${deliveryId}`, repositoryIds: [], pushInput: input, leaseMs: 60_000 });
    pushes.push({ provider: 'github', deliveryId, workflowId: `push-github-${deliveryId}`, input });
  }
  return pushes;
}

describe('push outbox dispatcher', () => {
  it('starts up to its concurrency at once while the process is not busy', async () => {
    const s = slowStarter(30);
    const d = createPushDispatcher({ db: handle.db, starter: s.starter, concurrency: 4, sweepMs: 60_000, busy: () => false });
    for (const p of await recorded(12)) d.enqueue(p);
    await d.idle();
    await d.close();
    expect(s.began).toHaveLength(12);
    expect(s.maxInFlight()).toBe(4);
  });

  it('while answers are queueing, starts one at a time and spaced out, then catches up at full speed; every delivery is started and marked', async () => {
    const s = slowStarter(5);
    let busy = true;
    const d = createPushDispatcher({ db: handle.db, starter: s.starter, concurrency: 4, sweepMs: 60_000, busy: () => busy, busyIntervalMs: 40 });
    const pushes = await recorded(16);
    for (const p of pushes) d.enqueue(p);
    await new Promise((r) => setTimeout(r, 200));
    // About 200 / 40 starts, never two at once, never closer than the interval.
    expect(s.began.length).toBeGreaterThanOrEqual(2);
    expect(s.began.length).toBeLessThanOrEqual(7);
    expect(s.maxInFlight()).toBe(1);
    const gaps = s.began.slice(1).map((t, i) => t - s.began[i]!);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(39);
    busy = false;
    d.enqueue((await recorded(1))[0]!); // the burst is over: the next pump runs at full concurrency
    await d.idle();
    await d.close();
    expect(s.began).toHaveLength(17);
    expect(s.maxInFlight()).toBe(4);
    for (const p of pushes) expect((await getDelivery(handle.db, 'github', p.deliveryId))!.workflowStartedAt).toBeInstanceOf(Date);
  });

  it('two deliveries being received at once make starts yield at once (no load window), and their answers let the rest go at full speed', async () => {
    const s = slowStarter(5);
    const d = createPushDispatcher({ db: handle.db, starter: s.starter, concurrency: 4, sweepMs: 60_000, busy: () => false, busyIntervalMs: 40 });
    const first = d.receiving();
    const second = d.receiving();
    const pushes = await recorded(12);
    for (const p of pushes) d.enqueue(p);
    await new Promise((r) => setTimeout(r, 150));
    expect(s.maxInFlight()).toBe(1);
    expect(s.began.length).toBeLessThanOrEqual(5);
    first();
    first(); // a second call is a no-op: the count must not drop below what is really arriving
    // One delivery alone is no burst: the rest go at full concurrency.
    second();
    await d.idle();
    await d.close();
    expect(s.began).toHaveLength(12);
    expect(s.maxInFlight()).toBe(4);
  });

  it('one delivery at a time never slows starts down', async () => {
    const s = slowStarter(20);
    const d = createPushDispatcher({ db: handle.db, starter: s.starter, concurrency: 4, sweepMs: 60_000, busy: () => false });
    const answered = d.receiving();
    for (const p of await recorded(4)) d.enqueue(p);
    await d.idle();
    answered();
    await d.close();
    expect(s.maxInFlight()).toBe(4);
  });

  it('a full in-memory queue leaves the rest in the database, and sweeps start them once it has room', async () => {
    const s = slowStarter(1);
    const d = createPushDispatcher({ db: handle.db, starter: s.starter, concurrency: 1, sweepMs: 60_000, maxQueued: 3, busy: () => true, busyIntervalMs: 0 });
    const pushes = await recorded(8);
    // The rows the queue could not take are free to claim at once (their hold ran out).
    await handle.db.update(webhookDeliveries).set({ dispatchAfter: new Date(Date.now() - 1_000) }).where(inArray(webhookDeliveries.deliveryId, pushes.map((p) => p.deliveryId)));
    for (const p of pushes) d.enqueue(p);
    expect(await d.sweep()).toBe(0); // full: nothing claimed
    await d.idle();
    expect(s.began).toHaveLength(4); // one started at once, three queued
    let claimed = 0;
    for (let i = 0; i < 5 && claimed < 4; i++) {
      claimed += await d.sweep();
      await d.idle();
    }
    await d.close();
    expect(claimed).toBe(4);
    expect(s.began).toHaveLength(8);
    for (const p of pushes) expect((await getDelivery(handle.db, 'github', p.deliveryId))!.workflowStartedAt).toBeInstanceOf(Date);
  });

  it('eventLoopBusy reports a loop that was kept busy, and clears once it idles', async () => {
    const monitor = eventLoopBusy({ threshold: 0.75, windowMs: 50 });
    try {
      await new Promise((r) => setTimeout(r, 120));
      expect(monitor.busy()).toBe(false);
      const until = performance.now() + 200;
      while (performance.now() < until); // synchronous work: nothing else runs
      await new Promise((r) => setTimeout(r, 10));
      expect(monitor.busy()).toBe(true);
      await new Promise((r) => setTimeout(r, 200));
      expect(monitor.busy()).toBe(false);
    } finally {
      monitor.stop();
    }
  });
});
