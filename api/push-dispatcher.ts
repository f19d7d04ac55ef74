// The outbox of webhook deliveries. The webhook route commits a delivery with its PushWorkflow's
// input and answers; this starts the workflow, at once for a delivery this node just recorded and
// by a sweep for any other (its node died, or Temporal was away). A delivery's workflow id comes
// from its delivery id, so a start that runs twice (a sweep racing a slow start, two nodes) is
// refused by Temporal and counts as done. Nothing is lost while Temporal is unreachable: the rows
// wait, and GitHub (which does not redeliver by itself) never sees a 503 for it.
//
// Answers come first: while deliveries arrive together (a burst), or this process is too busy
// answering, starts slow to one at a time, spaced out, and catch up at full speed once it is over. A start
// costs the Temporal server more CPU than an answer costs the API, so on a host they share the two
// would otherwise halve each other; the outbox makes the delay safe.
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Db } from '../db/client';
import { claimPendingPushes, markPushesStarted, postponePush, type PendingPush } from '../db/queries/deliveries';
import type { PushStarter } from './push-starter';

/** How long a recorded delivery is this node's alone to start; after that any sweep may. */
export const DISPATCH_LEASE_MS = 30_000;

export interface PushDispatcherOptions {
  db: Db;
  starter: PushStarter;
  log?: Logger;
  /** Workflow starts in flight at once. */
  concurrency?: number;
  /** How often recorded deliveries nobody holds are looked for. */
  sweepMs?: number;
  /** After a failed start, when it is tried again. */
  retryMs?: number;
  /** Deliveries held in memory; past it they wait in the database for a sweep. */
  maxQueued?: number;
  /** True while the process is too busy answering to spare time for starts (default: never). */
  busy?: () => boolean;
  /** While busy: one start at a time, at least this far apart, so a long burst still makes progress. */
  busyIntervalMs?: number;
}

export interface PushDispatcher {
  /**
   * A delivery is being received (from its first byte to its answer); call the result once it is
   * answered. While two or more are, starts yield to them: at once, not a load window later.
   */
  receiving(): () => void;
  /** A delivery this node just recorded (holding its lease): start its workflow now. */
  enqueue(push: PendingPush): void;
  /** Claims recorded deliveries nobody holds and starts them; how many it claimed. */
  sweep(): Promise<number>;
  /** Resolves once nothing is queued, starting or waiting to be marked started. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

const keyOf = (p: { provider: string; deliveryId: string }) => `${p.provider}\u0000${p.deliveryId}`;

export function createPushDispatcher(o: PushDispatcherOptions): PushDispatcher {
  const concurrency = o.concurrency ?? 4;
  const retryMs = o.retryMs ?? 2_000;
  const maxQueued = o.maxQueued ?? 10_000;
  const busyIntervalMs = o.busyIntervalMs ?? 50;
  let lastStartAt = -Infinity;
  let pumpTimer: NodeJS.Timeout | undefined;
  const queue: PendingPush[] = [];
  /** Queued or starting: a sweep does not take these again. */
  const held = new Set<string>();
  let inFlight = 0;
  let receiving = 0;
  const yielding = () => receiving >= 2 || (o.busy?.() ?? false);
  let started: PendingPush[] = [];
  let marking: Promise<void> = Promise.resolve();
  let markTimer: NodeJS.Timeout | undefined;
  let closed = false;
  let idleWaiters: (() => void)[] = [];

  const settleIdle = () => {
    if (queue.length || inFlight || started.length || markTimer) return;
    void marking.then(() => {
      if (queue.length || inFlight || started.length || markTimer) return;
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const w of waiters) w();
    });
  };

  /** One UPDATE for the starts of the last few milliseconds, not one per delivery. */
  const flushStarted = () => {
    clearTimeout(markTimer);
    markTimer = undefined;
    const batch = started;
    started = [];
    if (batch.length === 0) return settleIdle();
    marking = marking
      .then(() => markPushesStarted(o.db, batch))
      // Not marked: its hold runs out, a sweep starts it again, Temporal answers duplicate, marked then.
      .catch((err) => o.log?.warn({ err, deliveries: batch.length }, 'push outbox: could not mark started workflows'))
      .finally(() => {
        for (const p of batch) held.delete(keyOf(p));
        settleIdle();
      });
  };

  const start = async (p: PendingPush) => {
    try {
      await o.starter.start(p.workflowId, p.input);
      started.push(p);
      if (started.length >= 100) flushStarted();
      else markTimer ??= setTimeout(flushStarted, 20);
    } catch (err) {
      o.log?.warn({ err, workflowId: p.workflowId }, `push outbox: could not start ${p.workflowId}; retrying in ${retryMs} ms`);
      await postponePush(o.db, p, retryMs).catch(() => undefined);
      held.delete(keyOf(p));
    } finally {
      inFlight--;
      pump();
      settleIdle();
    }
  };

  function pump() {
    if (closed || queue.length === 0) return;
    if (yielding()) {
      if (inFlight > 0 || pumpTimer) return; // the start in flight pumps again when it ends
      const wait = lastStartAt + busyIntervalMs - performance.now();
      if (wait > 0) {
        pumpTimer = setTimeout(() => {
          pumpTimer = undefined;
          pump();
        }, wait);
        return;
      }
    }
    while (inFlight < concurrency && queue.length) {
      inFlight++;
      lastStartAt = performance.now();
      void start(queue.shift()!);
      if (yielding()) break;
    }
  }

  const enqueue = (p: PendingPush) => {
    const key = keyOf(p);
    if (closed || held.has(key) || queue.length >= maxQueued) return; // the row waits for a sweep
    held.add(key);
    queue.push(p);
    pump();
  };

  const claimAndEnqueue = async () => {
    const room = maxQueued - queue.length;
    if (closed || room <= 0) return 0;
    const claimed = await claimPendingPushes(o.db, Math.min(room, 500), DISPATCH_LEASE_MS);
    for (const p of claimed) enqueue(p);
    return claimed.length;
  };
  let sweeping: Promise<number> | null = null;
  const sweep = () => {
    // Cleared in a callback, which always runs after the assignment: a sweep that returns without
    // awaiting (a full queue) would otherwise clear it first and then be stored for good.
    sweeping ??= claimAndEnqueue().finally(() => {
      sweeping = null;
    });
    return sweeping;
  };

  const timer = setInterval(() => {
    // Starts resume here too once a burst is over: while busy, nothing else may be left to pump.
    pump();
    sweep().catch((err) => o.log?.warn({ err }, 'push outbox: sweep failed'));
  }, o.sweepMs ?? 2_000);
  timer.unref();

  return {
    receiving() {
      receiving++;
      let done = false;
      return () => {
        if (done) return;
        done = true;
        receiving--;
        // The burst may be over: what waited starts now, not at the next tick.
        if (receiving < 2) pump();
      };
    },
    enqueue,
    sweep,
    idle: () =>
      new Promise<void>((resolve) => {
        idleWaiters.push(resolve);
        settleIdle();
      }),
    async close() {
      closed = true;
      clearInterval(timer);
      clearTimeout(pumpTimer);
      pumpTimer = undefined;
      // What is queued but not started stays recorded: its hold runs out and a sweep starts it.
      for (const p of queue.splice(0)) held.delete(keyOf(p));
      await sweeping?.catch(() => undefined);
      await new Promise<void>((resolve) => {
        idleWaiters.push(resolve);
        settleIdle();
      });
    },
  };
}

/**
 * Whether this process's event loop was busy for at least `threshold` of the last `windowMs`
 * (its event-loop utilization): then webhook answers are queueing, and outbox starts wait.
 */
export function eventLoopBusy(o: { threshold?: number; windowMs?: number } = {}): { busy: () => boolean; stop: () => void } {
  const threshold = o.threshold ?? 0.75;
  let last = performance.eventLoopUtilization();
  let busy = false;
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    busy = performance.eventLoopUtilization(now, last).utilization >= threshold;
    last = now;
  }, o.windowMs ?? 250);
  timer.unref();
  return { busy: () => busy, stop: () => clearInterval(timer) };
}
