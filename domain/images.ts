// The images a build produces, as the build activities return them and the index steps publish
// them, and the build workflow's input and result. What the build asks for (the plan) is in
// activities/build-plan.ts, derived from the stored columns. Imported by the workflow sandbox: no
// Node imports here.
import type { Platform } from './platforms';

export interface ImageBuildInput {
  buildId: string;
}

/** A manifest pushed by digest: what an index entry needs. */
export interface ImageDescriptor {
  digest: string;
  mediaType: string;
  size: number;
}

/** One per-platform image, pushed by digest. */
export interface PlatformImage extends ImageDescriptor {
  platform: Platform;
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

/** The commit-status child workflow of a build (workflows/commit-status.ts). */
export interface CommitStatusInput {
  buildId: string;
  /** How long to wait for the build's finished signal before posting what the database says. */
  waitMinutes: number;
}
