// Error codes of a build's outcome: one list, from which the workflow's non-retryable failure
// types, the activities' failures (userFault) and the API's build error view are derived.
import { ApplicationFailure } from '@temporalio/common';

/** userFault: the user must change something (never retried); otherwise an outcome Kiln records. */
export const BUILD_ERRORS = {
  // The Dockerfile and its build (activities/build-errors.ts).
  dockerfile_syntax: { userFault: true },
  step_failed: { userFault: true },
  file_not_found: { userFault: true },
  base_image_not_found: { userFault: true },
  image_access_denied: { userFault: true },
  entitlement_denied: { userFault: true },
  invalid_target: { userFault: true },
  build_failed: { userFault: true },
  // The source and the tags (activities/git.ts, activities/source.ts).
  invalid_source: { userFault: true },
  source_not_found: { userFault: true },
  source_auth_failed: { userFault: true },
  ref_not_found: { userFault: true },
  invalid_tag: { userFault: true },
  context_not_found: { userFault: true },
  // The registry and the records (activities/publish.ts, control.ts, accelerate.ts, registry-auth.ts).
  registry_rejected: { userFault: true },
  registry_auth_unavailable: { userFault: true },
  tag_immutable: { userFault: true },
  not_found: { userFault: true },
  // Outcomes the workflow and the API record.
  canceled: { userFault: false },
  superseded: { userFault: false },
  timed_out: { userFault: false },
  engine_unavailable: { userFault: false },
  internal_error: { userFault: false },
} as const satisfies Record<string, { userFault: boolean }>;

export type BuildErrorCode = keyof typeof BUILD_ERRORS;
export type UserFaultCode = { [K in BuildErrorCode]: (typeof BUILD_ERRORS)[K]['userFault'] extends true ? K : never }[BuildErrorCode];

export const BUILD_ERROR_CODES = Object.keys(BUILD_ERRORS) as [BuildErrorCode, ...BuildErrorCode[]];

/** The failure types a workflow never retries. */
export const USER_FAULT_CODES = BUILD_ERROR_CODES.filter((c): c is UserFaultCode => BUILD_ERRORS[c].userFault);

export function isBuildErrorCode(code: unknown): code is BuildErrorCode {
  return typeof code === 'string' && Object.hasOwn(BUILD_ERRORS, code);
}

/** A fault the user must fix: non-retryable, typed with its code. */
export function userFault(code: UserFaultCode, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: code, message, nonRetryable: true });
}
