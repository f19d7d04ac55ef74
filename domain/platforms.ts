/** Platforms Kiln builds for; each has its own task queue and buildkitd. */
export const PLATFORMS = ['linux/amd64', 'linux/arm64'] as const;
export type Platform = (typeof PLATFORMS)[number];

/** `linux/amd64` → `linux-amd64`, as in task queue and component names. */
export function platformSlug(platform: Platform): string {
  return platform.replace('/', '-');
}
