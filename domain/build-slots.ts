// Fair build slots: which waiting build runs next. Pure and deterministic (plain JSON state, no
// clock, no I/O), so the scheduler workflow can carry it through continue-as-new and tests can
// drive it directly. Imported by the workflow sandbox: no Node imports here.

/** A build workflow asking for a slot (signalled to the scheduler by the build's own activity). */
export interface SlotRequest {
  workflowId: string;
  buildId: string;
  namespace: string;
  /** The namespace's dedicated build pool, or null: slots are counted per pool. */
  pool: string | null;
  /** The namespace's maxConcurrentBuilds when the request was made (the newest one counts). */
  maxConcurrentBuilds: number;
  /** KILN_MAX_CONCURRENT_BUILDS: builds running at once per pool, every namespace together. */
  capacity: number;
  /** When the build was submitted (ms since 1970): the order within a namespace, as the build view counts it. */
  requestedAt: number;
}

export interface SlotHolder {
  workflowId: string;
  buildId: string;
  namespace: string;
  pool: string | null;
}

export interface SlotState {
  waiting: SlotRequest[];
  holders: SlotHolder[];
  /** Newest maxConcurrentBuilds per namespace and capacity per pool (key '' is the shared pool). */
  limits: Record<string, number>;
  capacities: Record<string, number>;
  /** Round-robin: the grant number of each namespace's last grant (higher = more recent). */
  lastGrant: Record<string, number>;
  grants: number;
}

export function emptySlotState(): SlotState {
  return { waiting: [], holders: [], limits: {}, capacities: {}, lastGrant: {}, grants: 0 };
}

const poolKey = (pool: string | null) => pool ?? '';

/** Within a namespace, first come first served: by requestedAt, then build id. */
function before(a: SlotRequest, b: SlotRequest): boolean {
  return a.requestedAt < b.requestedAt || (a.requestedAt === b.requestedAt && a.buildId < b.buildId);
}

export type RequestOutcome = { kind: 'holding' } | { kind: 'waiting'; position: number };

/**
 * Records a request (a repeated one changes nothing) and hands out what slots it can. Returns
 * the request's own outcome and every grant made (the new one included when it got a slot).
 */
export function requestSlot(state: SlotState, req: SlotRequest): { outcome: RequestOutcome; granted: SlotHolder[] } {
  state.limits[req.namespace] = req.maxConcurrentBuilds;
  state.capacities[poolKey(req.pool)] = req.capacity;
  const known = state.holders.some((h) => h.workflowId === req.workflowId) || state.waiting.some((w) => w.workflowId === req.workflowId);
  if (!known) {
    // Keep `waiting` ordered within each namespace (the order across namespaces is the grant rule's).
    const at = state.waiting.findIndex((w) => before(req, w));
    state.waiting.splice(at === -1 ? state.waiting.length : at, 0, req);
  }
  const granted = grantSlots(state);
  return { outcome: outcomeOf(state, req.workflowId), granted };
}

/** Frees a holder's slot or drops a waiting request; then hands out what slots it can. */
export function releaseSlot(state: SlotState, workflowId: string): { released: boolean; granted: SlotHolder[] } {
  const before = state.holders.length + state.waiting.length;
  state.holders = state.holders.filter((h) => h.workflowId !== workflowId);
  state.waiting = state.waiting.filter((w) => w.workflowId !== workflowId);
  const released = state.holders.length + state.waiting.length < before;
  return { released, granted: grantSlots(state) };
}

/** A namespace's new maxConcurrentBuilds (admin PATCH): takes effect at once. */
export function setNamespaceLimit(state: SlotState, namespace: string, maxConcurrentBuilds: number): SlotHolder[] {
  state.limits[namespace] = maxConcurrentBuilds;
  return grantSlots(state);
}

/** 1-based place among the namespace's waiting builds, or null when it holds a slot or is unknown. */
export function queuePosition(state: SlotState, workflowId: string): number | null {
  const req = state.waiting.find((w) => w.workflowId === workflowId);
  if (!req) return null;
  return state.waiting.filter((w) => w.namespace === req.namespace && !before(req, w)).length;
}

function outcomeOf(state: SlotState, workflowId: string): RequestOutcome {
  const position = queuePosition(state, workflowId);
  return position === null ? { kind: 'holding' } : { kind: 'waiting', position };
}

/**
 * Grants while a slot is free. The next slot goes to the head of the namespace with the fewest
 * running builds, among namespaces under their own limit whose pool has room; on a tie, to the
 * namespace served longest ago (round robin). So one namespace's flood delays another
 * namespace's first build by at most one freed slot.
 */
function grantSlots(state: SlotState): SlotHolder[] {
  const granted: SlotHolder[] = [];
  for (;;) {
    const running = new Map<string, number>();
    const poolRunning = new Map<string, number>();
    for (const h of state.holders) {
      running.set(h.namespace, (running.get(h.namespace) ?? 0) + 1);
      poolRunning.set(poolKey(h.pool), (poolRunning.get(poolKey(h.pool)) ?? 0) + 1);
    }
    let pick: SlotRequest | undefined;
    const seen = new Set<string>();
    for (const req of state.waiting) {
      if (seen.has(req.namespace)) continue; // only each namespace's head may go
      seen.add(req.namespace);
      const mine = running.get(req.namespace) ?? 0;
      if (mine >= (state.limits[req.namespace] ?? req.maxConcurrentBuilds)) continue;
      if ((poolRunning.get(poolKey(req.pool)) ?? 0) >= (state.capacities[poolKey(req.pool)] ?? req.capacity)) continue;
      if (!pick) {
        pick = req;
        continue;
      }
      const theirs = running.get(pick.namespace) ?? 0;
      const mineLast = state.lastGrant[req.namespace] ?? -1;
      const theirLast = state.lastGrant[pick.namespace] ?? -1;
      if (mine < theirs || (mine === theirs && (mineLast < theirLast || (mineLast === theirLast && req.namespace < pick.namespace)))) {
        pick = req;
      }
    }
    if (!pick) return granted;
    const chosen = pick;
    state.waiting = state.waiting.filter((w) => w !== chosen);
    const holder: SlotHolder = { workflowId: chosen.workflowId, buildId: chosen.buildId, namespace: chosen.namespace, pool: chosen.pool };
    state.holders.push(holder);
    state.lastGrant[chosen.namespace] = ++state.grants;
    granted.push(holder);
  }
}
