// The grant rule of the build scheduler (domain/build-slots.ts), driven directly: FIFO within a
// namespace, fewest-running-first and round robin across namespaces, limits, capacity, release.
import { describe, expect, it } from 'vitest';
import { emptySlotState, queuePosition, releaseSlot, requestSlot, setNamespaceLimit, type SlotRequest, type SlotState } from '../../domain/build-slots';

let clock = 0;
function req(namespace: string, n: number, over: Partial<SlotRequest> = {}): SlotRequest {
  return {
    workflowId: `build-${namespace}-${n}`,
    buildId: `${namespace}-${String(n).padStart(3, '0')}`,
    namespace,
    pool: null,
    maxConcurrentBuilds: 4,
    capacity: 8,
    requestedAt: ++clock,
    ...over,
  };
}

/** Requests in order; returns the workflow ids granted along the way, in grant order. */
function submit(state: SlotState, reqs: SlotRequest[]): string[] {
  return reqs.flatMap((r) => requestSlot(state, r).granted.map((h) => h.workflowId));
}

const holding = (s: SlotState) => s.holders.map((h) => h.workflowId);

describe('build slots', () => {
  it('grants up to the namespace limit, queues the rest in order with their positions', () => {
    const s = emptySlotState();
    const a = Array.from({ length: 6 }, (_, i) => req('a', i + 1));
    expect(submit(s, a)).toEqual(['build-a-1', 'build-a-2', 'build-a-3', 'build-a-4']);
    expect(requestSlot(s, a[5]!).outcome).toEqual({ kind: 'waiting', position: 2 }); // a repeat changes nothing
    expect(queuePosition(s, 'build-a-5')).toBe(1);
    expect(queuePosition(s, 'build-a-6')).toBe(2);
    expect(queuePosition(s, 'build-a-1')).toBeNull();
    // Freed slots go first come, first served.
    expect(releaseSlot(s, 'build-a-3').granted.map((h) => h.workflowId)).toEqual(['build-a-5']);
    expect(releaseSlot(s, 'build-a-1').granted.map((h) => h.workflowId)).toEqual(['build-a-6']);
    expect(holding(s).sort()).toEqual(['build-a-2', 'build-a-4', 'build-a-5', 'build-a-6']);
  });

  it('orders a namespace by request time, not by arrival (the build view counts the same way)', () => {
    const s = emptySlotState();
    submit(s, [req('a', 1, { maxConcurrentBuilds: 1 })]);
    const late = req('a', 3, { maxConcurrentBuilds: 1, requestedAt: 100 });
    const early = req('a', 2, { maxConcurrentBuilds: 1, requestedAt: 50 });
    submit(s, [late, early]);
    expect(queuePosition(s, early.workflowId)).toBe(1);
    expect(queuePosition(s, late.workflowId)).toBe(2);
    expect(releaseSlot(s, 'build-a-1').granted.map((h) => h.workflowId)).toEqual([early.workflowId]);
  });

  it("a flood from one namespace delays another's first build by at most one freed slot", () => {
    const s = emptySlotState();
    // A may use the whole capacity: 4 slots, 4 running, 16 waiting.
    const flood = Array.from({ length: 20 }, (_, i) => req('a', i + 1, { maxConcurrentBuilds: 4, capacity: 4 }));
    expect(submit(s, flood)).toHaveLength(4);
    const b1 = req('b', 1, { capacity: 4 });
    expect(requestSlot(s, b1).outcome).toEqual({ kind: 'waiting', position: 1 });
    // The next slot that frees is B's, though 16 of A's builds asked before it.
    expect(releaseSlot(s, 'build-a-2').granted.map((h) => h.workflowId)).toEqual(['build-b-1']);
    // Then A again, in its own order.
    expect(releaseSlot(s, 'build-a-1').granted.map((h) => h.workflowId)).toEqual(['build-a-5']);
  });

  it('goes round robin between namespaces with equally many running builds', () => {
    const s = emptySlotState();
    const cap = { capacity: 2, maxConcurrentBuilds: 10 };
    submit(s, [req('x', 1, cap), req('x', 2, cap)]); // x fills the capacity
    submit(s, [req('a', 1, cap), req('a', 2, cap), req('b', 1, cap), req('b', 2, cap), req('c', 1, cap)]);
    const order: string[] = [];
    // Free x's two slots, then whatever was granted, one at a time, and note who gets each.
    let toFree = ['build-x-1', 'build-x-2'];
    while (toFree.length) {
      const next = toFree.shift()!;
      const g = releaseSlot(s, next).granted.map((h) => h.workflowId);
      order.push(...g);
      toFree.push(...g);
    }
    // a, b, c each get their first build before anyone gets a second one.
    expect(order).toEqual(['build-a-1', 'build-b-1', 'build-c-1', 'build-a-2', 'build-b-2']);
  });

  it('prefers the namespace with fewer running builds, under each own limit and the pool capacity', () => {
    const s = emptySlotState();
    submit(s, [req('a', 1, { capacity: 3, maxConcurrentBuilds: 2 }), req('a', 2, { capacity: 3, maxConcurrentBuilds: 2 })]);
    // a is at its own limit: a-3 waits although the capacity has room; b takes that room.
    expect(requestSlot(s, req('a', 3, { capacity: 3, maxConcurrentBuilds: 2 })).outcome).toEqual({ kind: 'waiting', position: 1 });
    expect(submit(s, [req('b', 1, { capacity: 3 })])).toEqual(['build-b-1']);
    expect(requestSlot(s, req('b', 2, { capacity: 3 })).outcome).toEqual({ kind: 'waiting', position: 1 });
    // One of a's ends: a (1 running) and b (1 running) tie; b was served last, so a-3 goes.
    expect(releaseSlot(s, 'build-a-1').granted.map((h) => h.workflowId)).toEqual(['build-a-3']);
  });

  it('drops a canceled waiting build: the ones behind it move up and it never gets a slot', () => {
    const s = emptySlotState();
    submit(s, [1, 2, 3, 4].map((i) => req('a', i, { maxConcurrentBuilds: 1 })));
    expect(queuePosition(s, 'build-a-4')).toBe(3);
    expect(releaseSlot(s, 'build-a-2')).toEqual({ released: true, granted: [] });
    expect(queuePosition(s, 'build-a-3')).toBe(1);
    expect(queuePosition(s, 'build-a-4')).toBe(2);
    expect(releaseSlot(s, 'build-a-1').granted.map((h) => h.workflowId)).toEqual(['build-a-3']);
    expect(releaseSlot(s, 'build-a-2').released).toBe(false); // a second release is harmless
  });

  it('counts capacity per build pool', () => {
    const s = emptySlotState();
    const shared = { capacity: 1, maxConcurrentBuilds: 5 };
    const gold = { capacity: 1, maxConcurrentBuilds: 5, pool: 'gold' };
    expect(submit(s, [req('a', 1, shared), req('a', 2, shared)])).toEqual(['build-a-1']);
    expect(submit(s, [req('g', 1, gold)])).toEqual(['build-g-1']); // its own pool has room
  });

  it('applies a changed namespace limit at once', () => {
    const s = emptySlotState();
    submit(s, [1, 2, 3].map((i) => req('a', i, { maxConcurrentBuilds: 1 })));
    expect(holding(s)).toEqual(['build-a-1']);
    expect(setNamespaceLimit(s, 'a', 3).map((h) => h.workflowId)).toEqual(['build-a-2', 'build-a-3']);
  });

  it('survives a JSON round trip (what continue-as-new carries)', () => {
    const s = emptySlotState();
    submit(s, [1, 2, 3].map((i) => req('a', i, { maxConcurrentBuilds: 1 })));
    const copy = JSON.parse(JSON.stringify(s)) as SlotState;
    expect(releaseSlot(copy, 'build-a-1').granted.map((h) => h.workflowId)).toEqual(['build-a-2']);
  });
});
