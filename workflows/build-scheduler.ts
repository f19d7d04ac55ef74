import {
  allHandlersFinished,
  condition,
  continueAsNew,
  defineSignal,
  getExternalWorkflowHandle,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { SchedulingActivities } from '../activities/scheduling';
import {
  emptySlotState,
  releaseSlot,
  requestSlot,
  setNamespaceLimit,
  type SlotHolder,
  type SlotRequest,
  type SlotState,
} from '../domain/build-slots';
import {
  BUILD_SLOT_GRANTED_SIGNAL,
  BUILD_SLOT_QUEUED_SIGNAL,
  RELEASE_BUILD_SLOT_SIGNAL,
  REQUEST_BUILD_SLOT_SIGNAL,
  SET_NAMESPACE_LIMIT_SIGNAL,
} from '../domain/temporal';

export const requestBuildSlotSignal = defineSignal<[SlotRequest]>(REQUEST_BUILD_SLOT_SIGNAL);
export const releaseBuildSlotSignal = defineSignal<[{ workflowId: string }]>(RELEASE_BUILD_SLOT_SIGNAL);
export const setNamespaceLimitSignal = defineSignal<[{ namespace: string; maxConcurrentBuilds: number }]>(SET_NAMESPACE_LIMIT_SIGNAL);
export const buildSlotGrantedSignal = defineSignal(BUILD_SLOT_GRANTED_SIGNAL);
export const buildSlotQueuedSignal = defineSignal<[{ namespace: string; position: number }]>(BUILD_SLOT_QUEUED_SIGNAL);

export interface BuildSchedulerInput {
  state?: SlotState;
  /** How often, while builds wait, holders are checked for having ended without releasing. */
  holderCheckMs?: number;
}

const scheduling = proxyLocalActivities<SchedulingActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

/** Continue-as-new well before Temporal's history limits; the state is small plain JSON. */
const MAX_HISTORY_EVENTS = 4_000;

type Message = { kind: 'granted'; holder: SlotHolder } | { kind: 'queued'; workflowId: string; namespace: string; position: number };

/**
 * Hands out build slots, one per deployment (workflow id `kiln-build-scheduler`, started by the
 * first build's signal-with-start). Builds signal `requestBuildSlot` and wait for
 * `buildSlotGranted` (or hear `buildSlotQueued` with their position); they signal
 * `releaseBuildSlot` when they end, however they end. A holder that ends without releasing
 * (terminated, timed out by the server) is found by a check of the holders while builds wait, and
 * a grant that cannot be delivered (the build is gone) frees the slot at once. Waiting is
 * Temporal's: no polling of any table.
 */
export async function BuildSchedulerWorkflow(input: BuildSchedulerInput = {}): Promise<never> {
  const state = input.state ?? emptySlotState();
  const holderCheckMs = input.holderCheckMs ?? 60_000;
  const outbox: Message[] = [];
  const grant = (holders: SlotHolder[]) => {
    for (const holder of holders) outbox.push({ kind: 'granted', holder });
  };

  setHandler(requestBuildSlotSignal, (req) => {
    const { outcome, granted } = requestSlot(state, req);
    grant(granted);
    if (outcome.kind === 'holding' && !granted.some((h) => h.workflowId === req.workflowId)) {
      // A retried request of a build that holds a slot already: tell it again (it ignores repeats).
      const holder = state.holders.find((h) => h.workflowId === req.workflowId);
      if (holder) grant([holder]);
    }
    if (outcome.kind === 'waiting') {
      outbox.push({ kind: 'queued', workflowId: req.workflowId, namespace: req.namespace, position: outcome.position });
    }
  });
  setHandler(releaseBuildSlotSignal, ({ workflowId }) => grant(releaseSlot(state, workflowId).granted));
  setHandler(setNamespaceLimitSignal, ({ namespace, maxConcurrentBuilds }) => grant(setNamespaceLimit(state, namespace, maxConcurrentBuilds)));

  for (;;) {
    const mustCheckHolders = () => state.waiting.length > 0 && state.holders.length > 0;
    const woken = await condition(
      () => outbox.length > 0 || workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > MAX_HISTORY_EVENTS,
      mustCheckHolders() ? holderCheckMs : undefined,
    );
    if (!woken && mustCheckHolders()) {
      // Builds wait while every slot is held: make sure no holder has ended without saying so.
      const gone = await scheduling.findEndedWorkflows(state.holders.map((h) => h.workflowId));
      for (const workflowId of gone) grant(releaseSlot(state, workflowId).granted);
    }
    await deliver(state, outbox, grant);
    if (outbox.length === 0 && (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > MAX_HISTORY_EVENTS)) {
      await condition(allHandlersFinished);
      if (outbox.length === 0) await continueAsNew<typeof BuildSchedulerWorkflow>({ state, holderCheckMs });
    }
  }
}

/** Sends every pending message; a build that cannot be told it got a slot has ended: free the slot. */
async function deliver(state: SlotState, outbox: Message[], grant: (h: SlotHolder[]) => void): Promise<void> {
  while (outbox.length > 0) {
    const batch = outbox.splice(0, outbox.length);
    await Promise.all(
      batch.map(async (m) => {
        const handle = getExternalWorkflowHandle(m.kind === 'granted' ? m.holder.workflowId : m.workflowId);
        try {
          if (m.kind === 'granted') await handle.signal(buildSlotGrantedSignal);
          else await handle.signal(buildSlotQueuedSignal, { namespace: m.namespace, position: m.position });
        } catch {
          // The build workflow is no longer running (terminated, or never will ask again).
          grant(releaseSlot(state, m.kind === 'granted' ? m.holder.workflowId : m.workflowId).granted);
        }
      }),
    );
  }
}
