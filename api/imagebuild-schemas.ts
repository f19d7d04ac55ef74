// The PAI CreateImageBuild request and GetImageBuild answer (PascalCase, as in Alibaba Cloud's
// AIWorkspace API), so clients written for that API can build with Kiln.
import { z } from '@hono/zod-openapi';
import { BUILD_STATUSES } from '../domain/builds';
import { keySchema, propertyNames, CLIENT_TOKEN_RE, MAX_DOCKERFILE_BYTES, MAX_LABELS, OCI_TAG_RE, REPOSITORY_PATH_RE } from './schemas';

export const MAX_REGISTRY_AUTHS = 10;

/** host[:port] as a Docker config's `auths` keys it: a DNS name or IPv4 address, or `[v6]`. */
const REGISTRY_HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** base64("user:password"); the decoded value must hold a user name and a colon. */
const BasicAuth = z
  .string()
  .max(8192)
  .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64 of "user:password"')
  .openapi({
    description: 'base64("user:password"); stored encrypted, never returned or logged. Base64 of anything without a user name and a colon is a 422.',
    example: 'dXNlcjpwYXNzd29yZA==',
  });

/** What the document's base64 pattern cannot say: the decoded value holds `user:`. */
export const isUserPassword = (auth: string) => Buffer.from(auth, 'base64').toString('utf8').indexOf(':') > 0;

export const PaiImageLabel = z.object({ Key: z.string().min(1).max(256), Value: z.string().max(4096) }).strict();

/**
 * `[registry/]namespace/repository[:tag]`, the registry (when given) being Kiln's own: a pattern
 * per registry, so the document says exactly which URIs are taken.
 */
export function imageUriPattern(registry: string): RegExp {
  const host = registry.toLowerCase().replace(/[.*+?^$()|[\]\\{}]/g, '\\$&');
  return new RegExp(`^(?:${host}/)?${REPOSITORY_PATH_RE.source.slice(1, -1)}(?::${OCI_TAG_RE.source.slice(1, -1)})?$`);
}

const REGISTRY_KEY = { pattern: REGISTRY_HOST_RE, message: 'registry host[:port]' };
const RESOURCE_KEY = { maxLength: 128, pattern: /^[^\u0000]*$/, message: 'at most 128 characters' };
const ResourceValue = z.union([z.string().max(1024), z.number(), z.boolean(), z.null()]);

/** The create request for one registry (Image.Uri must name it or none). */
export const paiCreateImageBuild = (registry: string) => z
  .object({
    ClientToken: z
      .string()
      .regex(CLIENT_TOKEN_RE, '1–64 characters of A-Z a-z 0-9 . _ -')
      .optional()
      .openapi({ description: 'Idempotency key: the same token and request return the same build' }),
    Accessibility: z
      .enum(['PUBLIC', 'PRIVATE'])
      .optional()
      .openapi({ description: 'Visibility of a repository created by this build; an existing one keeps its own' }),
    Image: z
      .object({
        Name: z.string().min(1).max(128).optional(),
        Description: z.string().max(32 * 1024).optional().openapi({ description: 'Description of a repository created by this build' }),
        Uri: z.string().min(1).max(512).regex(imageUriPattern(registry), `[${registry}/]namespace/repository[:tag], in lowercase`).openapi({
          description: 'Target image: `[registry/]namespace/repository[:tag]`; the registry, when given, must be Kiln\'s. The repository is created on demand; the tag defaults to `latest`.',
          example: `${registry}/team/trainer:v1`,
        }),
        Labels: z
          .array(PaiImageLabel)
          .max(MAX_LABELS)
          .optional()
          .openapi({ description: 'Become image labels (the config `Labels`); a Key given twice is a 422' }),
      })
      .strict(),
    BuildConfig: z
      .object({
        Dockerfile: z.string().min(1).max(MAX_DOCKERFILE_BYTES),
        BuildType: z.enum(['DOCKERFILE']).optional().openapi({ description: 'Only DOCKERFILE' }),
      })
      .strict(),
    TargetRegistry: z
      .object({
        Type: z.string().max(64).optional().openapi({ description: "Accepted for compatibility; Kiln pushes to its own registry" }),
        InstanceId: z.string().max(128).optional().openapi({ description: 'Accepted for compatibility' }),
        OverwriteImageTag: z
          .boolean()
          .optional()
          .openapi({ description: 'false: an existing tag (latest included) is refused, never overwritten. Default true.' }),
      })
      .strict()
      .optional(),
    RegistryAuths: z
      .record(keySchema(REGISTRY_KEY), z.object({ Auth: BasicAuth }).strict())
      .refine((m) => Object.keys(m).length <= MAX_REGISTRY_AUTHS, `at most ${MAX_REGISTRY_AUTHS} registries`)
      .optional()
      .openapi({
        description: 'Credentials for pulling private base images, by registry host[:port]',
        maxProperties: MAX_REGISTRY_AUTHS,
        propertyNames: propertyNames(REGISTRY_KEY),
      } as object),
    Resource: z
      .record(keySchema(RESOURCE_KEY), ResourceValue)
      .refine((m) => Object.keys(m).length <= 50, 'at most 50 entries')
      .optional()
      .openapi({ maxProperties: 50, propertyNames: propertyNames(RESOURCE_KEY), description: 'Accepted for compatibility (flat, e.g. {"InstanceType": "ecs.g6.large"}); Kiln builds on its own build workers' } as object),
    ImageBuildJobName: z.string().max(128).optional(),
    WorkspaceId: z.string().max(64).optional(),
    RegionId: z.string().max(64).optional(),
  })
  .strict()
  .openapi('PaiCreateImageBuild');

export type PaiCreateImageBuildInput = z.infer<ReturnType<typeof paiCreateImageBuild>>;

export const PaiCreateImageBuildQuery = z.object({
  ClientToken: z.string().regex(CLIENT_TOKEN_RE, '1–64 characters of A-Z a-z 0-9 . _ -').optional().openapi({
    description: 'Also accepted as a query parameter, as PAI clients send it',
  }),
});

export const PaiImageBuildCreated = z
  .object({
    RequestId: z.string(),
    ImageBuildId: z.string().openapi({ description: 'The Kiln build id (GET /builds/{id} shows it in full)' }),
    ImageBuildJobId: z.string().openapi({ description: 'The Temporal workflow id of the build' }),
  })
  .openapi('PaiImageBuildCreated');

export const PAI_STATUSES = ['Queuing', 'Running', 'Succeeded', 'Failed', 'Stopped'] as const;

export const PaiImageBuild = z
  .object({
    RequestId: z.string(),
    ImageBuildId: z.string(),
    ImageBuildJobId: z.string(),
    Status: z.enum(PAI_STATUSES).openapi({ description: 'Queuing, Running, Succeeded, Failed (timed out too), Stopped (canceled)' }),
    KilnStatus: z.enum(BUILD_STATUSES),
    ReasonCode: z.string().nullable().openapi({ description: 'The build error code, e.g. step_failed, timed_out' }),
    ReasonMessage: z.string().nullable(),
    Image: z.object({
      Uri: z.string().openapi({ description: 'registry/namespace/repository:tag' }),
      Digest: z.string().nullable().openapi({ description: 'Digest of the pushed image index once it succeeded' }),
    }),
    GmtCreateTime: z.string(),
    GmtStartTime: z.string().nullable(),
    GmtFinishTime: z.string().nullable(),
    TemporalUiUrl: z.string().nullable(),
  })
  .openapi('PaiImageBuild');
