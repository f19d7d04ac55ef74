// BuildKit's provenance attestations in the layout BuildKit itself gives them. With
// `attest:provenance`, a push by digest is an index of two manifests: the platform image and an
// attestation manifest (platform unknown/unknown, annotated with the image's digest) whose layer
// is the in-toto statement. Kiln takes both apart here and puts them back, in the same layout,
// into the multi-arch index it assembles, so `docker buildx imagetools inspect`, crane and
// skopeo see the attestations, and a pull of a platform never picks one.
import type { ImageDescriptor, PlatformImage } from '../domain/images';
import { MEDIA_TYPES, type RegistryClient } from './registry';

export const ATTESTATION_ANNOTATIONS = {
  type: 'vnd.docker.reference.type',
  digest: 'vnd.docker.reference.digest',
} as const;
export const ATTESTATION_MANIFEST_TYPE = 'attestation-manifest';
export const IN_TOTO_MEDIA_TYPE = 'application/vnd.in-toto+json';

interface IndexEntry extends ImageDescriptor {
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
}

/** Whether an index entry is an attestation manifest (never an image to run). */
export function isAttestationEntry(entry: object): boolean {
  return (entry as { annotations?: Record<string, string> }).annotations?.[ATTESTATION_ANNOTATIONS.type] === ATTESTATION_MANIFEST_TYPE;
}

/**
 * The image and its attestation out of what one platform's push by digest produced. A plain
 * manifest (no attestation) is the image itself. Throws when the index is not the pair BuildKit
 * makes: an image manifest and at most one attestation that refers to it.
 */
export function splitPlatformPush(pushed: ImageDescriptor, index: { manifests?: IndexEntry[] } | null): { image: ImageDescriptor; attestation?: ImageDescriptor } {
  if (pushed.mediaType !== MEDIA_TYPES.ociIndex && pushed.mediaType !== MEDIA_TYPES.dockerList) return { image: pushed };
  const entries = index?.manifests ?? [];
  const images = entries.filter((e) => !isAttestationEntry(e));
  const attestations = entries.filter(isAttestationEntry);
  if (images.length !== 1 || attestations.length > 1) {
    throw new Error(`the pushed index ${pushed.digest} holds ${images.length} images and ${attestations.length} attestations, not one image and its attestation`);
  }
  const image = descriptor(images[0]!);
  const att = attestations[0];
  if (att && att.annotations?.[ATTESTATION_ANNOTATIONS.digest] !== image.digest) {
    throw new Error(`the attestation ${att.digest} in ${pushed.digest} refers to ${att.annotations?.[ATTESTATION_ANNOTATIONS.digest]}, not to ${image.digest}`);
  }
  return { image, ...(att ? { attestation: descriptor(att) } : {}) };
}

/** Reads back a platform push and splits it (see splitPlatformPush). */
export async function resolvePlatformPush(registry: RegistryClient, repository: string, pushed: ImageDescriptor) {
  if (pushed.mediaType !== MEDIA_TYPES.ociIndex && pushed.mediaType !== MEDIA_TYPES.dockerList) return { image: pushed };
  const index = await registry.getManifest(repository, pushed.digest);
  if (!index) throw new Error(`the index ${pushed.digest} BuildKit pushed is not in ${repository}`);
  return splitPlatformPush(pushed, index.json);
}

/** The index entries of the images' attestations, as BuildKit lays them out (after the images). */
export function attestationEntries(images: PlatformImage[]) {
  return images.flatMap((img) =>
    img.attestation
      ? [
          {
            mediaType: img.attestation.mediaType,
            digest: img.attestation.digest,
            size: img.attestation.size,
            annotations: { [ATTESTATION_ANNOTATIONS.digest]: img.digest, [ATTESTATION_ANNOTATIONS.type]: ATTESTATION_MANIFEST_TYPE },
            platform: { architecture: 'unknown', os: 'unknown' },
          },
        ]
      : [],
  );
}

const descriptor = (e: IndexEntry): ImageDescriptor => ({ mediaType: e.mediaType, digest: e.digest, size: e.size });
