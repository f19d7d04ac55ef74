// The OCI distribution grammars Kiln checks names against. One source: the API's validation,
// the rules' tag rendering and the activities' tag guards all use these.

/** An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. */
export const OCI_TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
export const MAX_TAG_LENGTH = 128;

/** Characters a tag may contain anywhere but first. */
export const OCI_TAG_CHAR_RE = /^[A-Za-z0-9._-]$/;

/** An image a build pulled (FROM, COPY --from), as BuildKit resolved it. */
export interface BaseImage {
  /** As the Dockerfile named it, normalized by BuildKit: `host/repo:tag`, or `host/repo` when pinned by digest. */
  image: string;
  digest: string;
}

/**
 * The images of a build from BuildKit's own record of it: the Dockerfile frontend names each image
 * source vertex `[stage n/m] FROM <ref>@<resolved digest>`.
 */
export function baseImagesFromSteps(stepNames: readonly string[]): BaseImage[] {
  const seen = new Map<string, BaseImage>();
  for (const name of stepNames) {
    const m = /^\[[^\]]*\] FROM (\S+?)@(sha256:[0-9a-f]{64})(?:\s|$)/.exec(name);
    if (!m) continue;
    const image = m[1]!.replace(/^docker-image:\/\//, '');
    seen.set(`${image}@${m[2]}`, { image, digest: m[2]! });
  }
  return [...seen.values()];
}
