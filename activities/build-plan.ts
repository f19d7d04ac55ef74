// What a build asks for, as startBuild reads it from the database and the workflow hands it to
// the build activities: the stored build and repository columns (drizzle-inferred, so a column's
// type is written once, in db/schema.ts), plus the source pinned to one commit. Plain data: no
// secrets (git credentials and registry passwords are looked up inside activities, never carried
// in Temporal payloads). The workflow imports these as types only.
import type { Build, Namespace, Repository } from '../db/schema';
import type { Platform } from '../domain/platforms';

/** Where the build context comes from. */
export type BuildSource =
  | { kind: 'inline'; dockerfile: NonNullable<Build['dockerfile']> }
  | ({ kind: 'git'; url: string; commit: string; repositoryId: Repository['id'] } & Pick<Build, 'contextDir' | 'dockerfilePath'>)
  /** An uploaded local context: a blob of the build's repository in Kiln's registry. */
  | ({ kind: 'context'; digest: NonNullable<Build['contextDigest']> } & Pick<Build, 'contextDir' | 'dockerfilePath'>);

/** The build's own columns the plan carries as they are stored. */
type PlannedBuildColumns = Pick<
  Build,
  | 'buildArgs'
  | 'labels'
  | 'target'
  | 'tags'
  | 'noCache'
  | 'accelerated'
  | 'overwriteTags'
  /** The SLSA provenance BuildKit attaches to each platform image. */
  | 'provenance'
  | 'timeoutMinutes'
  | 'trigger'
>;

export interface BuildPlan extends PlannedBuildColumns {
  buildId: Build['id'];
  repositoryId: Repository['id'];
  /** `namespace/name` inside the registry. */
  repository: string;
  platforms: Platform[];
  source: BuildSource;
  immutableTags: Repository['immutableTags'];
  /** The git ref built (`refs/heads/main`); null for inline and context builds. */
  ref: Build['sourceRef'];
  /** The namespace's dedicated build pool; null: the shared pool. */
  buildPool?: Namespace['buildPool'];
}

/** One platform's share of a plan: what a build activity receives. */
export interface PlatformBuildRequest
  extends Pick<BuildPlan, 'buildId' | 'repository' | 'source' | 'buildArgs' | 'labels' | 'target' | 'noCache'> {
  platform: Platform;
  /** Also push an eStargz (lazy-pull) variant of this platform's image, from the same cache. */
  accelerated?: boolean;
  /** SLSA provenance mode (`attest:provenance=mode=...`, default min); the attestation is pushed next to the image. */
  provenance?: BuildPlan['provenance'];
}
