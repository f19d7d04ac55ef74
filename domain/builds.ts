// What a build is, as every layer names it: statuses, phases, triggers, how an image version was
// made, per-platform statuses. db/schema.ts feeds its column enums from these.

export const BUILD_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled', 'timed_out'] as const;
export const TERMINAL_STATUSES = ['succeeded', 'failed', 'canceled', 'timed_out'] as const;
export const BUILD_PHASES = ['resolving', 'building', 'assembling', 'accelerating', 'recording'] as const;
export const TRIGGERS = ['push', 'tag', 'manual', 'api', 'base_image', 'schedule'] as const;
export const CREATION_METHODS = ['auto build', 'manual build', 'user push'] as const;
export const PLATFORM_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
/**
 * How much the SLSA provenance attestation BuildKit attaches to each platform image records:
 * `min` leaves out build args, labels and secrets' names; `max` records the build args and the
 * full build definition (so never pass a secret as a build arg with `max`).
 */
export const PROVENANCE_MODES = ['min', 'max'] as const;

export type BuildStatus = (typeof BUILD_STATUSES)[number];
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];
export type BuildPhase = (typeof BUILD_PHASES)[number];
export type Trigger = (typeof TRIGGERS)[number];
export type CreationMethod = (typeof CREATION_METHODS)[number];
export type PlatformStatus = (typeof PLATFORM_STATUSES)[number];
export type ProvenanceMode = (typeof PROVENANCE_MODES)[number];

export function isTerminal(status: BuildStatus): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

/** Why a build was canceled, as the cancel signal carries it and the build records it. */
export interface CancelReason {
  code: string;
  message: string;
}
