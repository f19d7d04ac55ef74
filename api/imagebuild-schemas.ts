// The PAI CreateImageBuild request and GetImageBuild answer (PascalCase, as in Alibaba Cloud's
// AIWorkspace API), so clients written for that API can build with Kiln.
import { z } from '@hono/zod-openapi';
import { BUILD_STATUSES } from '../domain/builds';
import { keySchema, nullableRef, propertyNames, CLIENT_TOKEN_RE, MAX_DOCKERFILE_BYTES, MAX_LABELS, OCI_TAG_RE, REPOSITORY_PATH_RE } from './schemas';

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
 * `[registry/]namespace/repository[:tag]`. The registry part names the target instance in PAI (an
 * ACR Enterprise domain); Kiln has one registry, its own, so the path is what counts there.
 */
export const IMAGE_URI_RE = new RegExp(
  `^(?:${REGISTRY_HOST_RE.source.slice(1, -1)}/)?${REPOSITORY_PATH_RE.source.slice(1, -1)}(?::${OCI_TAG_RE.source.slice(1, -1)})?$`,
);

/** The build types of PAI's CreateImageBuild, each taken in any letter case. */
export const PAI_BUILD_TYPES = ['PackageInstallation', 'CustomDockerfile'] as const;
export type PaiBuildType = (typeof PAI_BUILD_TYPES)[number];
/** Kiln's earlier name for CustomDockerfile, still taken. */
const LEGACY_DOCKERFILE = 'Dockerfile';

/** A pattern matching exactly these words in any letter case (JSON Schema patterns have no `i` flag). */
function anyCase(words: readonly string[]): RegExp {
  const letters = (w: string) => [...w].map((c) => (/[a-z]/i.test(c) ? `[${c.toUpperCase()}${c.toLowerCase()}]` : c)).join('');
  return new RegExp(`^(?:${words.map(letters).join('|')})$`);
}

/** The canonical spelling of a BuildType the schema admitted (Dockerfile is CustomDockerfile). */
export function canonicalBuildType(value: string | undefined): PaiBuildType {
  const lower = (value ?? 'CustomDockerfile').toLowerCase();
  if (lower === LEGACY_DOCKERFILE.toLowerCase()) return 'CustomDockerfile';
  return PAI_BUILD_TYPES.find((t) => t.toLowerCase() === lower) ?? 'CustomDockerfile';
}

const REGISTRY_KEY = { pattern: REGISTRY_HOST_RE, message: 'registry host[:port]' };
const short = (max: number, description: string, example?: string) => z.string().max(max).optional().openapi({ description, ...(example ? { example } : {}) });

const RegistryAuthsSchema = z
  .record(keySchema(REGISTRY_KEY), z.object({ Auth: BasicAuth }).strict())
  .refine((m) => Object.keys(m).length <= MAX_REGISTRY_AUTHS, `at most ${MAX_REGISTRY_AUTHS} registries`)
  .openapi({
    description: 'Credentials for pulling private base images, by registry host[:port]; stored encrypted, never returned or logged',
    maxProperties: MAX_REGISTRY_AUTHS,
    propertyNames: propertyNames(REGISTRY_KEY),
    example: { 'user-test-registry-vpc.cn-wulanchabu.cr.aliyuncs.com': { Auth: 'dXNlcjp0ZXN0' } },
  } as object);

/** PAI's VPC settings for the build machine: stored and shown; Kiln's build workers are its own. */
export const PaiUserVpc = z
  .object({
    VpcId: short(128, 'VPC id', 'vpc-abcdef**'),
    SwitchId: short(128, 'vSwitch id', 'vs-abcdef**'),
    SecurityGroupId: short(128, 'Security group id', 'sg-abcdef**'),
    ExtendedCidrs: z.array(z.string().max(64)).max(64).optional().openapi({ description: 'Extended CIDR blocks', example: ['10.0.0.0/24'] }),
    DefaultRoute: short(64, 'Default route', 'eth1'),
  })
  .strict()
  .openapi('PaiUserVpc');

/** PAI's resources for the build task: stored and shown; Kiln builds on its own build workers. */
export const PaiResource = z
  .object({
    EcsSpec: short(128, 'Instance type (pay-as-you-go)', 'ecs.c6.large'),
    ResourceConfig: z
      .object({ CPU: short(32, 'CPU cores', '4'), Memory: short(32, 'Memory', '8Gi') })
      .strict()
      .optional(),
    ResourceId: short(128, 'Resource quota id (subscription)', 'quotaadzoqup693z'),
    ResourceType: short(64, 'Subscription resource type', 'Lingjun'),
    UserVpc: PaiUserVpc.optional().openapi({ description: 'Also taken here (the document lists it after Resource\'s fields)' }),
  })
  .strict()
  .openapi('PaiResource');

/** The create request: the fields of PAI's CreateImageBuild, its document's example taken as it stands. */
export const PaiCreateImageBuild = z
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
    WorkspaceId: short(64, 'PAI workspace id: stored and shown', '12345'),
    RegionId: short(64, 'Region id: stored and shown', 'cn-wulanchabu'),
    ImageBuildJobName: short(128, 'Name of the build task: stored and shown', 'build-my-image'),
    Resource: PaiResource.optional(),
    UserVpc: PaiUserVpc.optional(),
    Image: z
      .object({
        Name: z
          .string()
          .regex(/^[a-z][a-z0-9-]{0,49}$/, '1–50 lowercase letters, digits and hyphens, starting with a letter')
          .optional()
          .openapi({ description: 'Name of the image: 1–50 lowercase letters, digits and hyphens, starting with a letter; stored and shown', example: 'test-v1' }),
        Description: z.string().max(32 * 1024).optional().openapi({ description: 'Stored and shown; also the description of a repository created by this build' }),
        Uri: z.string().min(1).max(512).regex(IMAGE_URI_RE, '[registry/]namespace/repository[:tag], in lowercase').openapi({
          description:
            'Target image: `[registry/]namespace/repository[:tag]`. Kiln pushes to `namespace/repository:tag` in its own ' +
            'registry whatever the registry part names (in PAI an ACR Enterprise domain, which is recorded); the repository ' +
            'is created on demand; the tag defaults to `latest`.',
          example: 'user-test-registry-vpc.cn-wulanchabu.cr.aliyuncs.com/pai-test/pai-test:test-v1',
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
        Dockerfile: z.string().min(1).max(MAX_DOCKERFILE_BYTES).openapi({ description: 'The Dockerfile to build (no build context)' }),
        BuildType: z
          .string()
          .regex(anyCase([...PAI_BUILD_TYPES, LEGACY_DOCKERFILE]), 'PackageInstallation or CustomDockerfile (any letter case)')
          .optional()
          .openapi({
            description:
              'PackageInstallation (software packages installed on a base image: the Dockerfile is that base image\'s FROM and ' +
              'the pip/apt/conda install steps) or CustomDockerfile (any Dockerfile), in any letter case; `Dockerfile` is taken ' +
              'as CustomDockerfile; default CustomDockerfile. Both build the Dockerfile as given.',
            example: 'PackageInstallation',
          }),
        RegistryAuths: RegistryAuthsSchema.optional(),
      })
      .strict(),
    TargetRegistry: z
      .object({
        Type: short(64, 'Stored and shown (in PAI only AcrEnterprise); Kiln pushes to its own registry', 'AcrEnterprise'),
        InstanceId: short(128, 'Stored and shown', 'cri-**abcd'),
        OverwriteImageTag: z.boolean().optional().openapi({ description: 'As the top-level OverwriteImageTag' }),
      })
      .strict()
      .optional(),
    OverwriteImageTag: z
      .boolean()
      .optional()
      .openapi({ description: 'false: an existing tag (latest included) is refused, never overwritten. Default true. Also taken in TargetRegistry; both given must agree (else 422).' }),
    RegistryAuths: RegistryAuthsSchema.optional().openapi({ description: 'As BuildConfig.RegistryAuths (taken in either place, not both)' }),
  })
  .strict()
  .openapi('PaiCreateImageBuild');

export type PaiCreateImageBuildInput = z.infer<typeof PaiCreateImageBuild>;

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
    BuildType: z.enum(PAI_BUILD_TYPES).nullable().openapi({ description: 'null for a build not made through this API' }),
    ImageBuildJobName: z.string().nullable(),
    WorkspaceId: z.string().nullable(),
    RegionId: z.string().nullable(),
    Accessibility: z.enum(['PUBLIC', 'PRIVATE']).nullable(),
    Resource: nullableRef(PaiResource),
    UserVpc: nullableRef(PaiUserVpc),
    TargetRegistry: z.object({ Type: z.string().nullable(), InstanceId: z.string().nullable() }).nullable(),
    Image: z.object({
      Name: z.string().nullable(),
      Description: z.string().nullable(),
      Uri: z.string().openapi({ description: "Where the image is: Kiln's registry/namespace/repository:tag" }),
      RequestedUri: z.string().nullable().openapi({ description: 'Image.Uri as the request gave it' }),
      Digest: z.string().nullable().openapi({ description: 'Digest of the pushed image index once it succeeded' }),
    }),
    GmtCreateTime: z.string(),
    GmtStartTime: z.string().nullable(),
    GmtFinishTime: z.string().nullable(),
    TemporalUiUrl: z.string().nullable(),
  })
  .openapi('PaiImageBuild');
