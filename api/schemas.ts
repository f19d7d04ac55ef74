import { z } from '@hono/zod-openapi';
import { createSchemaFactory } from 'drizzle-zod';
import { validateRepoPath } from '../activities/git';
import { BUILD_ERROR_CODES } from '../domain/errors';
import { PLATFORMS } from '../domain/platforms';
import { apiTokens, BuildStepRecord, builds, imageTags, namespaces, repositories, webhookDeliveries } from '../db/schema';
import { BUILD_PHASES, BUILD_STATUSES, CREATION_METHODS, PLATFORM_STATUSES, PROVENANCE_MODES, TRIGGERS } from '../domain/builds';
import { PUSH_RESULT_CODES } from '../domain/push';
import { TIMEOUT_MINUTES_CEILING } from '../domain/quotas';

// The `z` of @hono/zod-openapi, so every generated schema has `.openapi()`.
/** The provenance field's documentation, shared by rules, builds and the PAI API. */
export const PROVENANCE_DESCRIPTION =
  'SLSA provenance attested by BuildKit on each platform image: `min` (default) records the base images, the source ' +
  'and the frontend options without build args; `max` also records every build arg and the full build definition, so ' +
  'never pass a secret as a build arg with `max`.';

const { createInsertSchema, createSelectSchema, createUpdateSchema } = createSchemaFactory({ zodInstance: z });

export const NAMESPACE_NAME_RE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
/** One path component of the OCI distribution name grammar. */
export const REPOSITORY_NAME_RE = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/;
export { OCI_TAG_RE } from '../domain/oci';
import { OCI_TAG_RE } from '../domain/oci';
/** BUILDKIT_CACHE_MOUNT_NS is Kiln's: it keeps each namespace's cache mounts apart (activities/build.ts). */
export const BUILD_ARG_KEY_RE = /^(?!BUILDKIT_CACHE_MOUNT_NS$)[A-Za-z_][A-Za-z0-9_]*$/;
export const CLIENT_TOKEN_RE = /^[A-Za-z0-9._-]{1,64}$/;
/** The column's enum (db/schema.ts ← domain/git-hosts.ts). */
export const SOURCE_PROVIDERS = repositories.sourceProvider.enumValues;
export type SourceProvider = (typeof SOURCE_PROVIDERS)[number];

/** In characters (UTF-16 code units), as JSON Schema's maxLength counts. */
export const MAX_DOCKERFILE_BYTES = 256 * 1024;
export const MAX_BUILD_ARGS = 20;
export const MAX_LABELS = 50;
export const MAX_TAGS = 5;

const iso = () => z.iso.datetime({ offset: true });
const unique = <T>(a: T[]) => new Set(a).size === a.length;

export const NamespaceName = z
  .string()
  .min(1)
  .max(64)
  .regex(NAMESPACE_NAME_RE, 'lowercase letters and digits, separated by single ".", "_" or "-"')
  .openapi({ example: 'team-a' });

export const RepositoryName = z
  .string()
  .min(1)
  .max(128)
  .regex(REPOSITORY_NAME_RE, 'lowercase letters and digits, separated by ".", "_", "__" or dashes; no "/"')
  .openapi({ example: 'web' });

/**
 * `namespace/name`. The pattern is the whole check; a namespace longer than a namespace name may
 * be cannot exist, so such a path is simply not found (404) where it is looked up.
 */
export const REPOSITORY_PATH_RE = new RegExp(`${NAMESPACE_NAME_RE.source.slice(0, -1)}/${REPOSITORY_NAME_RE.source.slice(1)}`);
export const RepositoryPath = z
  .string()
  .max(64 + 1 + 128)
  .regex(REPOSITORY_PATH_RE, 'must be "namespace/name" in lowercase')
  .openapi({ example: 'team-a/web' });

export function splitRepositoryPath(path: string): { namespace: string; name: string } {
  const i = path.indexOf('/');
  return { namespace: path.slice(0, i), name: path.slice(i + 1) };
}

const UUID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

/** A registered schema or null: `anyOf` in the document (`.nullable()` on a `$ref` renders as `allOf`, which no value satisfies). */
export const nullableRef = <T extends z.ZodType>(schema: T) => z.union([schema, z.null()]);

export const IdParams = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, format: 'uuid', example: '0b9c3c1e-5b8f-4f57-9a53-8d1f1c1ad3a0' }),
});

const Limit = z.coerce.number().int().min(1).max(100).default(20);

/** Repositories page by id: the cursor is the last id seen. */
export const RepositoryCursor = z
  .string()
  .regex(new RegExp(UUID_PATTERN), 'not a cursor this API returned')
  .openapi({ description: 'nextCursor of the previous page' });

/**
 * Builds page newest first on (createdAt, id): `<createdAt in ms since 1970>_<id>`. Every string of
 * this form is a valid position (14 digits stay below the year 10000, which ISO dates and Postgres both read).
 */
export const BUILD_CURSOR_RE = /^([0-9]{1,14})_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
export const BuildCursor = z
  .string()
  .regex(BUILD_CURSOR_RE, 'not a cursor this API returned')
  .openapi({ description: 'nextCursor of the previous page' });

export const page = <T extends z.ZodType>(item: T, name: string) =>
  z.object({ items: z.array(item), nextCursor: z.string().nullable() }).openapi(name);

// ---- namespaces -------------------------------------------------------------------------------

export const NamespaceCreate = createInsertSchema(namespaces, { name: NamespaceName })
  .pick({
    name: true,
    defaultVisibility: true,
    defaultImmutableTags: true,
    defaultAcceleratedImages: true,
    autoCreateRepository: true,
  })
  .strict()
  .openapi('NamespaceCreate');

/** A dedicated build pool's name, as workers give it in KILN_BUILD_POOL (a task-queue suffix). */
export const BUILD_POOL_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const BuildPool = z.string().regex(BUILD_POOL_RE, 'a pool name is lowercase letters, digits and "-", at most 63 characters');

/** Upper bounds of the admin-set quotas (a day for timeouts, as for a build's own timeoutMinutes). */
export const QUOTA_LIMITS = { maxConcurrentBuilds: 1000, maxTimeoutMinutes: TIMEOUT_MINUTES_CEILING, maxRepositories: 1_000_000, maxRules: 1_000_000 } as const;

const quotaField = (min: number, max: number, what: string) =>
  z.number().int().min(min).max(max).nullable().optional().openapi({ description: `${what}; null: the deployment's default` });

export const NamespaceUpdate = createUpdateSchema(namespaces, {
  buildPool: BuildPool.nullable().optional(),
  maxConcurrentBuilds: quotaField(1, QUOTA_LIMITS.maxConcurrentBuilds, 'Builds of this namespace running at once; more wait as `queued`'),
  maxTimeoutMinutes: quotaField(1, QUOTA_LIMITS.maxTimeoutMinutes, 'Largest timeoutMinutes a build or rule of this namespace may ask for (more is a 422)'),
  maxRepositories: quotaField(0, QUOTA_LIMITS.maxRepositories, 'Repositories this namespace may hold (one more is a 422)'),
  maxRules: quotaField(0, QUOTA_LIMITS.maxRules, 'Build rules over all its repositories (one more is a 422)'),
})
  .pick({
    defaultVisibility: true,
    defaultImmutableTags: true,
    defaultAcceleratedImages: true,
    autoCreateRepository: true,
    buildPool: true,
    maxConcurrentBuilds: true,
    maxTimeoutMinutes: true,
    maxRepositories: true,
    maxRules: true,
  })
  .strict()
  .openapi('NamespaceUpdate', {
    description:
      '`buildPool`: builds of this namespace run only on workers started with KILN_BUILD_POOL=<pool>; null: the shared pool. ' +
      'The quotas (`max*`) take effect at once; null resets one to the deployment default (KILN_NAMESPACE_MAX_*). ' +
      'Lowering a count below what the namespace holds removes nothing; it only refuses more.',
  });

const quotaView = (what: string) => z.number().int().openapi({ description: `${what} (its own value or the deployment's default)` });

export const NamespaceView = createSelectSchema(namespaces, { createdAt: iso() })
  .extend({
    maxConcurrentBuilds: quotaView('Builds running at once; more wait as `queued`'),
    maxTimeoutMinutes: quotaView('Largest timeoutMinutes of a build or rule'),
    maxRepositories: quotaView('Repositories the namespace may hold'),
    maxRules: quotaView('Build rules over all its repositories'),
  })
  .openapi('Namespace');

// ---- namespace API tokens ----------------------------------------------------------------------

export const MAX_TOKEN_DAYS = 3650;

export const TokenCreate = z
  .object({
    name: z.string().min(1).max(64).openapi({ example: 'ci' }),
    expiresInDays: z
      .number()
      .int()
      .min(1)
      .max(MAX_TOKEN_DAYS)
      .optional()
      .openapi({ description: 'Refused after this many days; omit for a token that does not expire (revoke it instead)', example: 90 }),
  })
  .strict()
  .openapi('ApiTokenCreate');

export const TokenView = createSelectSchema(apiTokens, {
  createdAt: iso(),
  expiresAt: iso().nullable().openapi({ description: 'After this the token is refused; null: never' }),
  lastUsedAt: iso().nullable().openapi({ description: 'Last accepted use (to the minute); null: never used' }),
})
  .pick({ id: true, name: true, createdAt: true, expiresAt: true, lastUsedAt: true })
  .extend({ namespace: z.string(), expired: z.boolean() })
  .openapi('ApiToken');

export const TokenCreated = TokenView.extend({
  token: z.string().openapi({ description: 'Shown only in this response; only its hash is stored' }),
}).openapi('ApiTokenCreated');
export const NamespacePage = page(NamespaceView, 'NamespacePage');

// ---- repositories -----------------------------------------------------------------------------

const PORT = '(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?';
const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])';
/** A DNS name whose last label starts with a letter (else WHATWG URL reads it as IPv4), or an IPv4 address. */
const HOST = `(?:(?:[A-Za-z0-9-]+\\.)*[A-Za-z][A-Za-z0-9-]*|${OCTET}(?:\\.${OCTET}){3})`;
const URL_REST = '(?:[/?#][^\\s\\u0000]*)?';
/**
 * A clone URL: http(s) or git URL, ssh URL (a user allowed), or scp-like `user@host:path`; never
 * with credentials in it. The pattern is the whole check, so the document states it exactly.
 */
export const GIT_URL_RE = new RegExp(
  `^(?:(?:https?|git)://${HOST}${PORT}${URL_REST}|ssh://(?:[A-Za-z0-9._-]+@)?${HOST}${PORT}${URL_REST}|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\\s\\u0000]+)$`,
);
export const GitUrl = z
  .string()
  .min(1)
  .max(2048)
  .regex(GIT_URL_RE, 'an http(s), git or ssh URL, or user@host:path, without a password (put it in "token")')
  .openapi({ example: 'https://github.com/acme/web.git' });

export const SourceCreate = z
  .object({
    provider: z.enum(SOURCE_PROVIDERS),
    url: GitUrl,
    token: z.string().min(1).max(4096).optional().openapi({ description: 'Access token; stored encrypted, never returned' }),
    webhookSecret: z
      .string()
      .min(16)
      .max(256)
      .optional()
      .openapi({ description: 'Omit to have one generated and returned once' }),
  })
  .strict();

/** New credentials for a repository's source: what a leaked secret or an expiring git token needs. */
export const SourceRotate = z
  .object({
    webhookSecret: z
      .union([z.string().min(16).max(256), z.literal('generate')])
      .optional()
      .openapi({ description: 'The new webhook secret, or "generate" to have one generated and returned once. Deliveries signed with the old secret are refused from now on.' }),
    token: z
      .string()
      .min(1)
      .max(4096)
      .nullable()
      .optional()
      .openapi({ description: 'The new git access token (stored encrypted, never returned); null removes it' }),
  })
  .strict()
  .refine((b) => b.webhookSecret !== undefined || b.token !== undefined, 'give webhookSecret, token or both')
  .openapi('SourceRotate', { minProperties: 1 });

export const BuildSettings = z.object({ autoBuild: z.boolean(), noCache: z.boolean() }).openapi('BuildSettings');

// drizzle-zod takes a replacement schema as is, so optionality is spelled out here.
const repositoryFields = {
  name: RepositoryName,
  summary: z.string().max(256).optional(),
  description: z.string().max(32 * 1024).optional(),
};

export const RepositoryCreate = createInsertSchema(repositories, repositoryFields)
  .pick({ name: true, visibility: true, immutableTags: true, acceleratedImages: true, summary: true, description: true })
  .extend({
    namespace: NamespaceName,
    source: SourceCreate.optional(),
    buildSettings: BuildSettings.partial().strict().optional(),
  })
  .strict()
  .openapi('RepositoryCreate');

export const RepositoryUpdate = createUpdateSchema(repositories, repositoryFields)
  .pick({ visibility: true, immutableTags: true, acceleratedImages: true, summary: true, description: true })
  .extend({ buildSettings: BuildSettings.partial().strict().optional() })
  .strict()
  .openapi('RepositoryUpdate');

export const SourceView = z
  .object({
    provider: z.enum(SOURCE_PROVIDERS),
    url: z.string(),
    hasToken: z.boolean(),
    webhookUrl: z.string().nullable().openapi({ description: 'Where the git host must send push events; null for plain git' }),
  })
  .openapi('Source');

export const RepositoryView = createSelectSchema(repositories, { createdAt: iso(), updatedAt: iso() })
  .pick({
    id: true,
    name: true,
    visibility: true,
    immutableTags: true,
    acceleratedImages: true,
    summary: true,
    description: true,
    createdAt: true,
    updatedAt: true,
  })
  .extend({
    namespace: z.string(),
    path: z.string().openapi({ description: 'namespace/name' }),
    source: nullableRef(SourceView),
    buildSettings: BuildSettings,
  })
  .openapi('Repository');

export const RepositoryCreated = RepositoryView.extend({
  source: nullableRef(
    SourceView.extend({
      webhookSecret: z
        .string()
        .optional()
        .openapi({ description: 'Present only in this response, and only when Kiln generated the secret' }),
    }).openapi('SourceCreated'),
  ),
}).openapi('RepositoryCreated');

export const RepositoryPage = page(RepositoryView, 'RepositoryPage');

export const RepositoryListQuery = z.object({ cursor: RepositoryCursor.optional(), limit: Limit, namespace: NamespaceName.optional() });

export const ImageTagView = createSelectSchema(imageTags, { createdAt: iso(), updatedAt: iso() })
  .pick({ tag: true, digest: true, creationMethod: true, buildId: true, createdAt: true, updatedAt: true })
  .openapi('ImageTag');

export const ImageTagPage = page(ImageTagView, 'ImageTagPage');

// ---- builds -----------------------------------------------------------------------------------

/** The JSON Schema of a map's keys (zod-openapi does not render a record's key schema). */
export interface KeyRule {
  pattern?: RegExp;
  minLength?: number;
  maxLength?: number;
  message: string;
}

export function keySchema(rule: KeyRule): z.ZodString {
  let key = z.string();
  if (rule.minLength !== undefined) key = key.min(rule.minLength, rule.message);
  if (rule.maxLength !== undefined) key = key.max(rule.maxLength, rule.message);
  if (rule.pattern) key = key.regex(rule.pattern, rule.message);
  return key;
}

export const propertyNames = (rule: KeyRule) => ({
  type: 'string' as const,
  ...(rule.pattern ? { pattern: rule.pattern.source } : {}),
  ...(rule.minLength !== undefined ? { minLength: rule.minLength } : {}),
  ...(rule.maxLength !== undefined ? { maxLength: rule.maxLength } : {}),
});

export const stringMap = (max: number, what: string, key: KeyRule) =>
  z
    .record(keySchema(key), z.string().max(4096))
    .refine((m) => Object.keys(m).length <= max, `at most ${max} ${what}`)
    .openapi({ maxProperties: max, propertyNames: propertyNames(key) } as object);

export const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

const contextPath = (what: string) =>
  z
    .string()
    .max(1024)
    // The document states what it can of validateRepoPath: no control characters, no backslash.
    .regex(/^[^\u0000-\u001f\u007f\\]*$/, `${what}: no control characters or backslashes`)
    .superRefine((v, ctx) => {
      const problem = validateRepoPath(v);
      if (problem) ctx.addIssue({ code: 'custom', message: `${what}: ${problem}` });
    });

/** A local context uploaded with POST /contexts, named by its digest. */
export const LocalContextRef = z
  .object({
    digest: z.string().regex(DIGEST_RE, 'must be sha256:<64 hex digits>').openapi({ description: 'digest answered by POST /contexts' }),
    contextDir: contextPath('contextDir').default('/').openapi({ description: 'Directory inside the upload to build (default /)' }),
    dockerfile: contextPath('dockerfile')
      .default('Dockerfile')
      .openapi({ description: 'Dockerfile path, relative to contextDir (or to the upload root with a leading /)' }),
  })
  .strict()
  .openapi('LocalContextRef');

export const ContextUploaded = z
  .object({
    repository: z.string().openapi({ description: 'namespace/name whose registry repository holds the context' }),
    digest: z.string().openapi({ description: 'sha256 of the bytes uploaded (the tar, gzipped or not)' }),
    size: z.number().int().openapi({ description: 'Bytes uploaded' }),
    expiresAt: iso().openapi({ description: 'Removed after this unless a build uses it again' }),
  })
  .openapi('ContextUploaded');

export const ContextUploadQuery = z.object({
  repository: RepositoryPath.openapi({ param: { name: 'repository', in: 'query' } }),
});

export const BuildSubmit = createInsertSchema(builds, {
  dockerfile: z
    .string()
    .min(1)
    .max(MAX_DOCKERFILE_BYTES)
    .optional()
    .openapi({ description: 'An inline Dockerfile (no other files), at most 262,144 characters; or give `context`' }),
  platforms: z
    .array(z.enum(PLATFORMS))
    .min(1)
    .refine(unique, 'platforms must be unique')
    .openapi({ uniqueItems: true }),
  buildArgs: stringMap(MAX_BUILD_ARGS, 'build args', {
    pattern: BUILD_ARG_KEY_RE,
    message: 'build arg names are letters, digits and "_", not starting with a digit (BUILDKIT_CACHE_MOUNT_NS is reserved)',
  })
    .openapi({ description: `Case-sensitive names matching ${BUILD_ARG_KEY_RE.source}` })
    .optional(),
  labels: stringMap(MAX_LABELS, 'labels', { minLength: 1, maxLength: 256, pattern: /^[^\u0000]*$/, message: 'label keys are 1–256 characters' }).optional(),
  target: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'not a valid stage name').optional(),
  tags: z
    .array(z.string().regex(OCI_TAG_RE, 'not a valid OCI tag'))
    .min(1)
    .max(MAX_TAGS)
    .refine(unique, 'tags must be unique')
    .openapi({ uniqueItems: true }),
  noCache: z.boolean().optional().openapi({ description: "Default: the repository's build setting" }),
  accelerated: z.boolean().optional().openapi({ description: "Default: the repository's acceleratedImages" }),
  provenance: z.enum(PROVENANCE_MODES).optional().openapi({ description: PROVENANCE_DESCRIPTION }),
  clientToken: z
    .string()
    .regex(CLIENT_TOKEN_RE, '1–64 characters of A-Z a-z 0-9 . _ -')
    .optional()
    .openapi({ description: 'Idempotency key: the same token and body return the same build' }),
  timeoutMinutes: z
    .number()
    .int()
    .min(1)
    .max(TIMEOUT_MINUTES_CEILING)
    .default(60)
    .openapi({ description: "Minutes the build may run once it has a slot; above the namespace's maxTimeoutMinutes is a 422 naming the limit" }),
})
  .pick({
    dockerfile: true,
    platforms: true,
    buildArgs: true,
    labels: true,
    target: true,
    tags: true,
    noCache: true,
    accelerated: true,
    provenance: true,
    clientToken: true,
    timeoutMinutes: true,
  })
  .extend({
    repository: RepositoryPath,
    context: LocalContextRef.optional().openapi({ description: 'A local context uploaded with POST /contexts; or give `dockerfile`' }),
  })
  .strict()
  .superRefine((v, ctx) => {
    if ((v.dockerfile === undefined) === (v.context === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['dockerfile'], message: 'give either dockerfile (inline) or context (uploaded), not both or neither' });
    }
  })
  // The document states the either/or too: exactly one of the two.
  .openapi('BuildSubmit', { oneOf: [{ required: ['dockerfile'] }, { required: ['context'] }] } as object);

export type BuildSubmitInput = z.infer<typeof BuildSubmit>;

export const BuildAccepted = z.object({ buildId: z.string(), workflowId: z.string() }).openapi('BuildAccepted');

/** A stored step (db/schema.ts) with its duration, and its log counts always present. */
const step = BuildStepRecord.shape;
export const BuildStepView = z
  .object({
    name: step.name,
    cached: step.cached,
    startedAt: step.startedAt,
    completedAt: step.completedAt,
    durationMs: z.number().int().nullable().openapi({ description: 'null until the step has started and completed' }),
    error: step.error,
    logBytes: step.logBytes.unwrap(),
    logLines: step.logLines.unwrap(),
  })
  .openapi('BuildStep');

export const BuildProgress = z
  .object({
    completedSteps: z.number().int().openapi({ description: 'Steps completed or served from cache' }),
    totalSteps: z.number().int().openapi({ description: 'Steps BuildKit has announced so far' }),
  })
  .openapi('BuildProgress');

export const BuildPlatformView = z
  .object({
    platform: z.string(),
    status: z.enum(PLATFORM_STATUSES),
    digest: z.string().nullable(),
    acceleratedDigest: z.string().nullable().openapi({ description: "This platform's eStargz image, when the build is accelerated" }),
    attestationDigest: z.string().nullable().openapi({ description: "BuildKit's SLSA provenance attestation manifest for this platform's image (in the index, platform unknown/unknown)" }),
    cacheHits: z.number().int(),
    startedAt: iso().nullable(),
    finishedAt: iso().nullable(),
    steps: z.array(BuildStepView),
    progress: BuildProgress,
    baseImages: z
      .array(z.object({ image: z.string(), digest: z.string() }).openapi('BaseImage'))
      .openapi({ description: 'Images the build pulled (FROM, COPY --from) and the digests BuildKit resolved them to' }),
  })
  .openapi('BuildPlatform');

export const BuildView = z
  .object({
    id: z.string(),
    status: z.enum(BUILD_STATUSES),
    phase: z.enum(BUILD_PHASES).nullable(),
    trigger: z.enum(TRIGGERS),
    creationMethod: z.enum(CREATION_METHODS),
    repository: z.string().openapi({ description: 'namespace/name' }),
    ruleId: z.string().nullable().openapi({ description: 'The rule this build ran for, if any' }),
    source: z.object({ url: z.string(), ref: z.string().nullable(), commit: z.string().nullable() }).optional(),
    context: z
      .object({ digest: z.string(), size: z.number().int(), contextDir: z.string(), dockerfile: z.string() })
      .optional()
      .openapi({ description: 'The uploaded local context this build used' }),
    platforms: z.array(BuildPlatformView),
    manifestDigest: z.string().nullable(),
    tags: z.array(z.string()).openapi({ description: 'Tags requested' }),
    pushedTags: z.array(z.string()),
    accelerated: z.object({ tags: z.array(z.string()), digest: z.string().nullable() }).optional(),
    provenance: z.enum(PROVENANCE_MODES).openapi({ description: 'The SLSA provenance mode of the attestations attached to each platform image' }),
    error: z
      .object({ code: z.enum([...BUILD_ERROR_CODES, 'unknown']).openapi({ description: 'Why the build did not succeed (user faults such as step_failed need a change before a retry)' }), message: z.string() })
      .optional(),
    logIncomplete: z.boolean().openapi({
      description: 'Some log output could not be stored; a line starting `==> log incomplete` in the log says what',
    }),
    queuePosition: z.number().int().min(1).nullable().openapi({
      description:
        "While the build waits for a slot (status `queued`, over its namespace's maxConcurrentBuilds or the deployment's capacity): its place among its namespace's waiting builds, 1 = next; else null",
    }),
    workflowId: z.string(),
    temporalUiUrl: z.string().nullable(),
    createdAt: iso(),
    startedAt: iso().nullable(),
    finishedAt: iso().nullable(),
  })
  .openapi('Build');

export type BuildViewBody = z.infer<typeof BuildView>;
export type BuildStepViewBody = z.infer<typeof BuildStepView>;

export const BuildPage = page(BuildView, 'BuildPage');

export const BuildListQuery = z.object({
  cursor: BuildCursor.optional(),
  limit: Limit,
  repository: RepositoryPath.optional().openapi({ description: 'Filters combine: with repositoryId too, both must name the build\'s repository' }),
  repositoryId: z.guid().optional(),
  status: z.enum(BUILD_STATUSES).optional(),
  trigger: z.enum(TRIGGERS).optional(),
  namespace: NamespaceName.optional().openapi({ description: 'Only builds of this namespace' }),
});

export const BuildLogsQuery = z.object({
  follow: z
    .enum(['1', '0', 'true', 'false'])
    .optional()
    .openapi({ description: '1 → Server-Sent Events until the build ends' }),
  platform: z
    .enum([...PLATFORMS, 'build'])
    .optional()
    .openapi({ description: "One stream only: a platform's output as raw bytes (no prefix), or `build` for Kiln's own lines" }),
  offset: z.coerce
    .number()
    .int()
    .min(0)
    .max(Number.MAX_SAFE_INTEGER)
    .optional()
    .openapi({ description: 'With platform: start at this byte of the stream (resume a download); a Range header does the same' }),
});

export const CancelAccepted = z
  .object({ buildId: z.string(), status: z.enum(BUILD_STATUSES) })
  .openapi('CancelAccepted');

// ---- system -----------------------------------------------------------------------------------

export const Health = z.object({ status: z.literal('ok') }).openapi('Health');

export const Readiness = z
  .object({
    status: z.enum(['ready', 'not_ready']),
    checks: z.record(z.string(), z.object({ ok: z.boolean(), error: z.string().optional() })),
  })
  .openapi('Readiness');

// ---- webhook deliveries -----------------------------------------------------------------------

export const PushResultView = z
  .object({
    repository: z.string().openapi({ description: 'namespace/name' }),
    ref: z.string().openapi({ description: 'Full ref name, e.g. refs/heads/main' }),
    ruleId: z.string().optional(),
    outcome: z.enum(['started', 'skipped', 'failed']),
    code: z.enum(PUSH_RESULT_CODES).openapi({
      description:
        'started; skipped: auto_build_off, ref_deleted, stale (the pushed commit is no longer the head of the ref: a newer ' +
        'push or a replayed delivery), paths (no changed file matches); failed: head_check_failed, diff_failed (the changed ' +
        'files could not be listed, so path filters could not be applied and nothing was built), start_failed, supersede_failed',
    }),
    reason: z.string().optional(),
    buildId: z.string().optional(),
    commit: z.string().optional(),
  })
  .openapi('PushResult');

export const DeliveryView = createSelectSchema(webhookDeliveries, {
  receivedAt: iso(),
  finishedAt: iso().nullable(),
  workflowStartedAt: iso()
    .nullable()
    .openapi({ description: 'When its PushWorkflow started; null while the delivery waits, recorded, for the build engine' }),
})
  .pick({ provider: true, deliveryId: true, workflowId: true, status: true, receivedAt: true, workflowStartedAt: true, finishedAt: true })
  .extend({
    buildIds: z.array(z.string()).openapi({ description: "This repository's builds the delivery started" }),
    results: z.array(PushResultView).openapi({ description: "What the push workflow did for this repository's refs and rules" }),
  })
  .openapi('WebhookDelivery');

export const DeliveryList = z.object({ items: z.array(DeliveryView) }).openapi('WebhookDeliveryList');
export const DeliveryListQuery = z.object({ limit: Limit });
