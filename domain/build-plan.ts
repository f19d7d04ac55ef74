// Plain data passed between the build workflow and its activities (the workflow's contract). No
// secrets: git credentials and registry passwords are looked up inside activities, never carried
// in Temporal payloads. Imported by the workflow sandbox: no Node imports here.

import type { ProvenanceMode, Trigger } from './builds';
import type { Platform } from './platforms';

export type PlatformName = Platform;

export interface ImageBuildInput {
  buildId: string;
}

/** Where the build context comes from. */
export type BuildSource =
  | { kind: 'inline'; dockerfile: string }
  | { kind: 'git'; url: string; commit: string; repositoryId: string; contextDir: string; dockerfilePath: string }
  /** An uploaded local context: a blob of the build's repository in Kiln's registry. */
  | { kind: 'context'; digest: string; contextDir: string; dockerfilePath: string };

export interface BuildPlan {
  buildId: string;
  repositoryId: string;
  /** `namespace/name` inside the registry. */
  repository: string;
  platforms: PlatformName[];
  source: BuildSource;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  target: string | null;
  tags: string[];
  noCache: boolean;
  accelerated: boolean;
  immutableTags: boolean;
  /** False when no tag of this build may replace an existing one (PAI OverwriteImageTag: false). */
  overwriteTags: boolean;
  /** The SLSA provenance BuildKit attaches to each platform image. */
  provenance: ProvenanceMode;
  timeoutMinutes: number;
  trigger: Trigger;
  ref: string | null;
  /** The namespace's dedicated build pool; null: the shared pool. */
  buildPool?: string | null;
}

export interface PlatformBuildRequest {
  buildId: string;
  repository: string;
  platform: PlatformName;
  source: BuildSource;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  target: string | null;
  noCache: boolean;
  /** Also push an eStargz (lazy-pull) variant of this platform's image, from the same cache. */
  accelerated?: boolean;
  /** SLSA provenance mode (`attest:provenance=mode=...`, default min); the attestation is pushed next to the image. */
  provenance?: ProvenanceMode;
}

/** A manifest pushed by digest: what an index entry needs. */
export interface ImageDescriptor {
  digest: string;
  mediaType: string;
  size: number;
}

/** One per-platform image, pushed by digest. */
export interface PlatformImage extends ImageDescriptor {
  platform: PlatformName;
  cacheHits: number;
  /** BuildKit's provenance attestation manifest for this image (its in-toto subject). */
  attestation?: ImageDescriptor;
  /** The eStargz variant, when the request asked for one. */
  accelerated?: AcceleratedPlatformImage;
}

export interface AcceleratedPlatformImage extends ImageDescriptor {
  /** The attestation of the eStargz image itself (its subject is the eStargz manifest). */
  attestation?: ImageDescriptor;
  /** Dockerfile steps of the eStargz pass and how many came from cache (all, when none re-ran). */
  steps: number;
  cacheHits: number;
}

/** Tag of the accelerated (eStargz) index for an anchor tag, as the anchors name it. */
export function acceleratedTag(tag: string): string {
  return `${tag}_accelerated`;
}

export interface ImageBuildResult {
  buildId: string;
  status: 'succeeded';
  manifestDigest: string;
  tags: string[];
}

export { buildTaskQueue, CANCEL_BUILD_SIGNAL, CONTROL_TASK_QUEUE } from './temporal';
export type { CancelReason } from './builds';

/** The commit-status child workflow of a build (workflows/commit-status.ts). */
export interface CommitStatusInput {
  buildId: string;
  /** How long to wait for the build's finished signal before posting what the database says. */
  waitMinutes: number;
}
