// The names Kiln and Temporal share: task queues, the workflow's signal, and the custom search
// attributes (registered on the server by infra/stack.ts and, for Docker, by the
// `--search-attribute` lines of infra/docker-compose.yml, which a unit test holds to this list).
// Imported by the workflow sandbox too: no Node imports here.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { platformSlug, type Platform } from './platforms';

/** The task queue of the control worker: workflows and their control steps. */
export const CONTROL_TASK_QUEUE = 'kiln-control';

/** `kiln-build-linux-amd64`, or `kiln-build-linux-amd64@<pool>` for a dedicated pool. */
export function buildTaskQueue(platform: Platform, pool?: string | null): string {
  return `kiln-build-${platformSlug(platform)}${pool ? `@${pool}` : ''}`;
}

/** Headroom over a build's timeout, which the workflow enforces itself, for recording the outcome. */
export const BUILD_EXECUTION_GRACE_MINUTES = 5;

/** Signal that cancels a build with a reason the build records (e.g. superseded by a newer push). */
export const CANCEL_BUILD_SIGNAL = 'cancelBuild';

/** Signal from a build to its commit-status workflow: the outcome is recorded, post it. */
export const BUILD_FINISHED_SIGNAL = 'buildFinished';

/** The commit-status child workflow of a build. */
export const commitStatusWorkflowId = (buildId: string) => `commit-status-${buildId}`;

export const KilnRepository = defineSearchAttributeKey('KilnRepository', SearchAttributeType.KEYWORD);
export const KilnRef = defineSearchAttributeKey('KilnRef', SearchAttributeType.KEYWORD);
export const KilnCommit = defineSearchAttributeKey('KilnCommit', SearchAttributeType.KEYWORD);
export const KilnTrigger = defineSearchAttributeKey('KilnTrigger', SearchAttributeType.KEYWORD);
export const KilnStatus = defineSearchAttributeKey('KilnStatus', SearchAttributeType.KEYWORD);

/** Every custom attribute, for registering them with the Temporal server. */
export const KILN_SEARCH_ATTRIBUTES = [KilnRepository, KilnRef, KilnCommit, KilnTrigger, KilnStatus] as const;

/** `Name=Keyword` as `temporal server start-dev --search-attribute` takes them. */
export function searchAttributeFlags(): string[] {
  const cliType: Record<string, string> = { [SearchAttributeType.KEYWORD]: 'Keyword' };
  return KILN_SEARCH_ATTRIBUTES.map((a) => `${a.name}=${cliType[a.type]}`);
}

/** The one scheduler of build slots per deployment (workflows/build-scheduler.ts); fixed id. */
export const BUILD_SCHEDULER_WORKFLOW_ID = 'kiln-build-scheduler';
export const BUILD_SCHEDULER_WORKFLOW_TYPE = 'BuildSchedulerWorkflow';
/** Build → scheduler: a slot, please (SlotRequest; signal-with-start). */
export const REQUEST_BUILD_SLOT_SIGNAL = 'requestBuildSlot';
/** Build → scheduler: done with the slot, or no longer waiting for one ({workflowId}). */
export const RELEASE_BUILD_SLOT_SIGNAL = 'releaseBuildSlot';
/** API → scheduler: a namespace's new maxConcurrentBuilds ({namespace, maxConcurrentBuilds}). */
export const SET_NAMESPACE_LIMIT_SIGNAL = 'setNamespaceLimit';
/** Scheduler → build: the slot is yours. */
export const BUILD_SLOT_GRANTED_SIGNAL = 'buildSlotGranted';
/** Scheduler → build: you wait, at this position in your namespace ({position}). */
export const BUILD_SLOT_QUEUED_SIGNAL = 'buildSlotQueued';
