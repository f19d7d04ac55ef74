// What a push delivery becomes: the PushWorkflow's input (the verified delivery, no secrets) and
// what it records per repository, ref and rule. Pure types and names, shared by the API (which
// starts the workflow), the workflow, its activities and the delivery records.
import type { RefName } from './rules';

/** One ref a push changed, as the git host described it. */
export interface PushRefUpdate {
  ref: RefName;
  before: string | null;
  after: string | null;
  deleted: boolean;
  /** Files the push touched, or null when the payload does not say (the workflow then asks git). */
  changedFiles: string[] | null;
}

export interface PushWorkflowInput {
  provider: string;
  deliveryId: string;
  /** Repositories whose webhook secret verified the delivery. */
  repositoryIds: string[];
  updates: PushRefUpdate[];
}

/**
 * Why a repository, ref or rule of a push built or did not:
 * - `started`: a build was started (`buildId`);
 * - skipped: `auto_build_off`, `ref_deleted`, `stale` (the pushed commit is no longer the ref's
 *   head: a newer push, or a replayed delivery), `paths` (no changed file matches the rule's paths);
 * - failed (visible, never "built anyway"): `head_check_failed`, `diff_failed` (the changed files
 *   could not be listed, so the rule's paths could not be applied), `start_failed`,
 *   `supersede_failed` (an older build of the rule and ref could not be canceled).
 */
export const PUSH_RESULT_CODES = [
  'started',
  'auto_build_off',
  'ref_deleted',
  'stale',
  'paths',
  'head_check_failed',
  'diff_failed',
  'start_failed',
  'supersede_failed',
] as const;
export type PushResultCode = (typeof PUSH_RESULT_CODES)[number];

export interface PushResultItem {
  repositoryId: string;
  /** `namespace/name` */
  repository: string;
  /** Full ref name (`refs/heads/main`). */
  ref: string;
  ruleId?: string;
  outcome: 'started' | 'skipped' | 'failed';
  code: PushResultCode;
  reason?: string;
  buildId?: string;
  commit?: string;
}

export interface PushWorkflowResult {
  status: 'done' | 'failed';
  results: PushResultItem[];
  buildIds: string[];
}

export const PUSH_WORKFLOW_TYPE = 'PushWorkflow';

/** What the workflow needs of a verified repository to match its rules (no secrets). */
export interface PushTarget {
  repositoryId: string;
  /** `namespace/name` */
  repository: string;
  autoBuild: boolean;
  rules: PushRule[];
}

export interface PushRule {
  id: string;
  type: 'branch' | 'tag';
  match: string;
  paths: string[];
  cancelSuperseded: boolean;
}

/** A build row the workflow asks for: its id comes from the workflow, so a retried insert is one build. */
export interface PushBuildRequest {
  buildId: string;
  repositoryId: string;
  ruleId: string;
  ref: RefName;
  commit: string;
}

/** The build as inserted, with what starting its workflow needs. */
export interface PushBuild {
  buildId: string;
  workflowId: string;
  timeoutMinutes: number;
  repository: string;
  trigger: 'push' | 'tag';
  /** Unset when the rule or repository was deleted meanwhile: no row was inserted. */
  missing?: string;
}
