import { randomUUID } from 'node:crypto';
import { z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import {
  type AnyPgColumn,
  bigint,
  bigserial,
  customType,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

const id = () => uuid('id').primaryKey().$defaultFn(() => randomUUID());
const createdAt = () => timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow();
const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

export const VISIBILITIES = ['public', 'private'] as const;
// The column enums come from the domain's lists.
import { BUILD_PHASES, BUILD_STATUSES, CREATION_METHODS, PLATFORM_STATUSES, PROVENANCE_MODES, TRIGGERS } from '../domain/builds';
import type { BaseImage } from '../domain/oci';
import { SOURCE_PROVIDERS } from '../domain/git-hosts';
export { SOURCE_PROVIDERS } from '../domain/git-hosts';

export const namespaces = pgTable('namespaces', {
  id: id(),
  name: text('name').notNull().unique(),
  defaultVisibility: text('default_visibility', { enum: VISIBILITIES }).notNull().default('private'),
  defaultImmutableTags: boolean('default_immutable_tags').notNull().default(false),
  defaultAcceleratedImages: boolean('default_accelerated_images').notNull().default(false),
  autoCreateRepository: boolean('auto_create_repository').notNull().default(true),
  /** Dedicated build pool (admin-set): its builds run only on workers with KILN_BUILD_POOL=<pool>. */
  buildPool: text('build_pool'),
  /** Quotas (admin-set); null: the deployment's default (domain/quotas.ts, KILN_NAMESPACE_MAX_*). */
  maxConcurrentBuilds: integer('max_concurrent_builds'),
  maxTimeoutMinutes: integer('max_timeout_minutes'),
  maxRepositories: integer('max_repositories'),
  maxRules: integer('max_rules'),
  createdAt: createdAt(),
});

export const repositories = pgTable(
  'repositories',
  {
    id: id(),
    namespaceId: uuid('namespace_id')
      .notNull()
      .references(() => namespaces.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    visibility: text('visibility', { enum: VISIBILITIES }).notNull().default('private'),
    immutableTags: boolean('immutable_tags').notNull().default(false),
    acceleratedImages: boolean('accelerated_images').notNull().default(false),
    summary: text('summary').notNull().default(''),
    description: text('description').notNull().default(''),
    /** Bound code source; secrets are stored encrypted (see db/crypto.ts), never in clear. */
    sourceProvider: text('source_provider', { enum: SOURCE_PROVIDERS }),
    sourceUrl: text('source_url'),
    /** normalizeGitUrl(sourceUrl) (domain/git-url.ts): webhooks find their repositories by it. */
    sourceUrlKey: text('source_url_key'),
    sourceTokenEnc: text('source_token_enc'),
    webhookSecretEnc: text('webhook_secret_enc'),
    autoBuild: boolean('auto_build').notNull().default(true),
    noCache: boolean('no_cache').notNull().default(false),
    createdAt: createdAt(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('repositories_namespace_name').on(t.namespaceId, t.name),
    index('repositories_source_key').on(t.sourceUrlKey, t.sourceProvider),
  ],
);

/**
 * One Dockerfile step of a platform, as `build_platforms.steps` stores it (activities/progress.ts
 * writes it). The one source of its shape: the API's BuildStep view extends it (api/schemas.ts).
 */
export const BuildStepRecord = z.object({
  name: z.string().openapi({ description: 'As BuildKit names it, e.g. `[2/3] RUN make`' }),
  cached: z.boolean().openapi({ description: 'Served from the build cache' }),
  startedAt: z.string().nullable(),
  completedAt: z.string().nullable(),
  error: z.string().optional(),
  // Bytes and lines the step printed (its output as stored, without Kiln's `#N ` prefixes);
  // absent in steps stored before they were counted.
  logBytes: z.number().int().openapi({ description: "Bytes the step printed, as the log keeps them (without the log's `#N ` prefix)" }).optional(),
  logLines: z.number().int().openapi({ description: 'Lines the step printed' }).optional(),
});

export type BuildStep = z.infer<typeof BuildStepRecord>;

/** The self-description of a PAI CreateImageBuild request, kept as sent (PascalCase). */
export interface PaiRequestRecord {
  BuildType: string;
  Image: { Name?: string; Description?: string; Uri: string };
  ImageBuildJobName?: string;
  WorkspaceId?: string;
  RegionId?: string;
  Accessibility?: string;
  Resource?: unknown;
  UserVpc?: unknown;
  TargetRegistry?: { Type?: string; InstanceId?: string };
}

export const builds = pgTable(
  'builds',
  {
    id: id(),
    repositoryId: uuid('repository_id')
      .notNull()
      .references(() => repositories.id, { onDelete: 'cascade' }),
    ruleId: uuid('rule_id').references((): AnyPgColumn => buildRules.id, { onDelete: 'set null' }),
    status: text('status', { enum: BUILD_STATUSES }).notNull().default('queued'),
    phase: text('phase', { enum: BUILD_PHASES }),
    trigger: text('trigger', { enum: TRIGGERS }).notNull(),
    creationMethod: text('creation_method', { enum: CREATION_METHODS }).notNull(),
    sourceUrl: text('source_url'),
    sourceRef: text('source_ref'),
    sourceCommit: text('source_commit'),
    /** Inline Dockerfile (API builds); git builds read it from the checkout. */
    dockerfile: text('dockerfile'),
    /** An uploaded local context (a blob in this repository of Kiln's registry, see buildContexts). */
    contextDigest: text('context_digest'),
    contextSize: bigint('context_size', { mode: 'number' }),
    contextDir: text('context_dir').notNull().default('/'),
    dockerfilePath: text('dockerfile_path').notNull().default('Dockerfile'),
    platforms: text('platforms').array().notNull(),
    buildArgs: jsonb('build_args').$type<Record<string, string>>().notNull().default({}),
    labels: jsonb('labels').$type<Record<string, string>>().notNull().default({}),
    target: text('target'),
    /** Tags requested (already rendered for rule builds). */
    tags: text('tags').array().notNull(),
    noCache: boolean('no_cache').notNull().default(false),
    accelerated: boolean('accelerated').notNull().default(false),
    /** False (PAI OverwriteImageTag: false): no tag of this build, `latest` included, may replace one. */
    overwriteTags: boolean('overwrite_tags').notNull().default(true),
    /** SLSA provenance attached to each platform image (domain/builds.ts PROVENANCE_MODES). */
    provenance: text('provenance', { enum: PROVENANCE_MODES }).notNull().default('min'),
    /** What a PAI CreateImageBuild request said about itself (no credentials), shown by GET /imagebuilds/:id. */
    paiRequest: jsonb('pai_request').$type<PaiRequestRecord>(),
    timeoutMinutes: integer('timeout_minutes').notNull().default(60),
    /** Log bytes the build's platforms have stored, counted against KILN_MAX_LOG_BYTES. */
    logBytes: bigint('log_bytes', { mode: 'number' }).notNull().default(0),
    /** Some log output could not be stored (a marker line in the log says what). */
    logIncomplete: boolean('log_incomplete').notNull().default(false),
    manifestDigest: text('manifest_digest'),
    pushedTags: text('pushed_tags').array().notNull().default(sql`'{}'::text[]`),
    acceleratedTags: text('accelerated_tags').array().notNull().default(sql`'{}'::text[]`),
    acceleratedDigest: text('accelerated_digest'),
    errorCode: text('error_code'),
    errorMessage: text('error_message'),
    /** Registry credentials for pulling private bases (PAI RegistryAuths), encrypted. */
    registryAuthsEnc: text('registry_auths_enc'),
    clientToken: text('client_token'),
    /** The namespace a clientToken is unique in (two namespaces may use the same token). */
    clientTokenNamespaceId: uuid('client_token_namespace_id').references(() => namespaces.id, { onDelete: 'cascade' }),
    /** Hash of the request that used clientToken, to tell a retry from a conflicting reuse. */
    requestHash: text('request_hash'),
    workflowId: text('workflow_id').notNull(),
    createdAt: createdAt(),
    /** When the build asked the scheduler for a slot: its place among its namespace's waiting builds. */
    slotRequestedAt: ts('slot_requested_at'),
    startedAt: ts('started_at'),
    finishedAt: ts('finished_at'),
  },
  (t) => [
    uniqueIndex('builds_client_token').on(t.clientTokenNamespaceId, t.clientToken),
    index('builds_repository_created').on(t.repositoryId, t.createdAt),
    index('builds_created').on(t.createdAt, t.id),
    index('builds_status').on(t.status),
  ],
);

export const buildPlatforms = pgTable(
  'build_platforms',
  {
    buildId: uuid('build_id')
      .notNull()
      .references(() => builds.id, { onDelete: 'cascade' }),
    platform: text('platform').notNull(),
    status: text('status', { enum: PLATFORM_STATUSES }).notNull().default('queued'),
    digest: text('digest'),
    acceleratedDigest: text('accelerated_digest'),
    /** The provenance attestation manifest BuildKit made for this platform's image. */
    attestationDigest: text('attestation_digest'),
    cacheHits: integer('cache_hits').notNull().default(0),
    steps: jsonb('steps').$type<BuildStep[]>().notNull().default([]),
    /** Images the build pulled (FROM, COPY --from), as BuildKit resolved them: `image` as named, and its digest. */
    baseImages: jsonb('base_images').$type<BaseImage[]>().notNull().default([]),
    startedAt: ts('started_at'),
    finishedAt: ts('finished_at'),
  },
  (t) => [primaryKey({ columns: [t.buildId, t.platform] })],
);

/** Raw bytes, stored as they are (NUL, invalid UTF-8 and all); Buffer on both drivers. */
const bytea = customType<{ data: Buffer; driverData: Buffer | Uint8Array }>({
  dataType: () => 'bytea',
  fromDriver: (v) => (Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)),
  toDriver: (v) => v,
});

/** The stream of Kiln's own lines about the whole build (not one platform's). */
export const BUILD_LOG_STREAM = '';

/**
 * A build's log as byte chunks (up to 64 KiB) per stream: one stream per platform plus
 * BUILD_LOG_STREAM. Offsets make each stream addressable by byte (resumable downloads); `seq`
 * orders chunks across streams for the combined log and the SSE event ids. Inserting a chunk or
 * changing a build's status notifies channel `kiln_build_log` with the build id (migration 0003).
 */
export const buildLogChunks = pgTable(
  'build_log_chunks',
  {
    buildId: uuid('build_id')
      .notNull()
      .references(() => builds.id, { onDelete: 'cascade' }),
    stream: text('stream').notNull(),
    /** Where the chunk starts in its stream. */
    byteOffset: bigint('byte_offset', { mode: 'number' }).notNull(),
    seq: bigserial('seq', { mode: 'number' }).notNull(),
    data: bytea('data').notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ columns: [t.buildId, t.stream, t.byteOffset] }),
    index('build_log_chunks_build_seq').on(t.buildId, t.seq),
  ],
);

export const imageTags = pgTable(
  'image_tags',
  {
    id: id(),
    repositoryId: uuid('repository_id')
      .notNull()
      .references(() => repositories.id, { onDelete: 'cascade' }),
    tag: text('tag').notNull(),
    digest: text('digest').notNull(),
    buildId: uuid('build_id').references(() => builds.id, { onDelete: 'set null' }),
    creationMethod: text('creation_method', { enum: CREATION_METHODS }).notNull(),
    createdAt: createdAt(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [uniqueIndex('image_tags_repository_tag').on(t.repositoryId, t.tag)],
);

import type { RuleSchedule } from '../domain/schedules';
import { NOTIFICATION_DELIVERY_STATUSES, NOTIFICATION_EVENTS } from '../domain/notifications';

/** One tag template of a rule; rendering and validation live in domain/rules.ts. */
import type { TagTemplate } from '../domain/tag-template';
import type { PushResultItem, PushWorkflowInput } from '../domain/push';

export const RULE_TYPES = ['branch', 'tag'] as const;

/** A build rule: which refs of the bound git source build, and how their tags are named. */
export const buildRules = pgTable(
  'build_rules',
  {
    id: id(),
    repositoryId: uuid('repository_id')
      .notNull()
      .references(() => repositories.id, { onDelete: 'cascade' }),
    type: text('type', { enum: RULE_TYPES }).notNull(),
    match: text('match').notNull(),
    contextDir: text('context_dir').notNull().default('/'),
    dockerfile: text('dockerfile').notNull().default('Dockerfile'),
    platforms: text('platforms').array().notNull(),
    buildArgs: jsonb('build_args').$type<Record<string, string>>().notNull().default({}),
    target: text('target'),
    tags: jsonb('tags').$type<TagTemplate[]>().notNull(),
    noCache: boolean('no_cache').notNull().default(false),
    accelerated: boolean('accelerated').notNull().default(false),
    provenance: text('provenance', { enum: PROVENANCE_MODES }).notNull().default('min'),
    enabled: boolean('enabled').notNull().default(true),
    paths: text('paths').array().notNull().default(sql`'{}'::text[]`),
    semver: boolean('semver').notNull().default(false),
    cancelSuperseded: boolean('cancel_superseded').notNull().default(true),
    /** Rebuild the rule's ref when an image its last build pulled gets a new digest in Kiln's registry. */
    rebuildOnBaseChange: boolean('rebuild_on_base_change').notNull().default(false),
    timeoutMinutes: integer('timeout_minutes').notNull().default(60),
    /** Cron schedules, each run by a Temporal Schedule `rule-<id>-<n>` (api/rule-schedules.ts keeps them in sync). */
    schedules: jsonb('schedules').$type<RuleSchedule[]>().notNull().default([]),
    /** The schedules are paused (in Temporal too): they start nothing until unpaused. */
    schedulesPaused: boolean('schedules_paused').notNull().default(false),
    createdAt: createdAt(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [index('build_rules_repository').on(t.repositoryId)],
);

/**
 * Local build contexts uploaded (`kiln build DIR`): tar streams stored content-addressed as blobs of
 * the repository `namespace/name` in Kiln's registry, where every build worker can fetch them.
 * Removed from the registry once unused for the retention time (activities/context.ts).
 */
export const buildContexts = pgTable(
  'build_contexts',
  {
    /** `namespace/name`: the registry repository holding the blob (it may not exist in Kiln yet). */
    repository: text('repository').notNull(),
    digest: text('digest').notNull(),
    size: bigint('size', { mode: 'number' }).notNull(),
    createdAt: createdAt(),
    lastUsedAt: ts('last_used_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.repository, t.digest] }), index('build_contexts_last_used').on(t.lastUsedAt)],
);

/**
 * Webhook deliveries: recorded when verified, with the input of their PushWorkflow (an outbox: the
 * API answers once the row is committed, and api/push-dispatcher.ts starts the workflow, its id
 * from the delivery so Temporal refuses a second copy). The workflow writes what came of it per
 * repository, ref and rule: the builds it started and every skip or failure with its reason.
 */
export const DELIVERY_STATUSES = ['received', 'done', 'failed'] as const;
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    provider: text('provider').notNull(),
    deliveryId: text('delivery_id').notNull(),
    buildIds: uuid('build_ids').array().notNull().default(sql`'{}'::uuid[]`),
    /** The PushWorkflow handling it. */
    workflowId: text('workflow_id'),
    /** Verified repositories the delivery names. */
    repositoryIds: uuid('repository_ids').array().notNull().default(sql`'{}'::uuid[]`),
    status: text('status', { enum: DELIVERY_STATUSES }).notNull().default('received'),
    results: jsonb('results').$type<PushResultItem[]>().notNull().default([]),
    receivedAt: createdAt(),
    finishedAt: ts('finished_at'),
    /** The PushWorkflow's input, kept until its workflow has started (then cleared). */
    pushInput: jsonb('push_input').$type<PushWorkflowInput>(),
    /** When Temporal accepted the PushWorkflow (or said it already had it); null: not yet. */
    workflowStartedAt: ts('workflow_started_at'),
    /** A dispatcher holds the start until then; after it, any API node's sweep may claim it. */
    dispatchAfter: ts('dispatch_after'),
  },
  (t) => [
    primaryKey({ columns: [t.provider, t.deliveryId] }),
    // No pending list: an insert on the webhook's answer path never pays for merging one (4 MB of
    // entries at a time, tens of ms in whichever insert fills it).
    index('webhook_deliveries_repositories').using('gin', t.repositoryIds).with({ fastupdate: false }),
    index('webhook_deliveries_undispatched').on(t.dispatchAfter).where(sql`${t.workflowStartedAt} is null`),
  ],
);

/**
 * Outbound webhook subscriptions of a namespace, or of one repository in it: where events are
 * POSTed, signed with the subscription's secret (stored encrypted, shown once at creation).
 */
export const notificationSubscriptions = pgTable(
  'notification_subscriptions',
  {
    id: id(),
    namespaceId: uuid('namespace_id')
      .notNull()
      .references(() => namespaces.id, { onDelete: 'cascade' }),
    /** Null: every repository of the namespace. */
    repositoryId: uuid('repository_id').references(() => repositories.id, { onDelete: 'cascade' }),
    url: text('url').notNull(),
    events: text('events', { enum: NOTIFICATION_EVENTS }).array().notNull(),
    description: text('description').notNull().default(''),
    active: boolean('active').notNull().default(true),
    secretEnc: text('secret_enc').notNull(),
    createdAt: createdAt(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [index('notification_subscriptions_namespace').on(t.namespaceId)],
);

export interface DeliveryAttempt {
  attempt: number;
  at: string;
  statusCode: number | null;
  durationMs: number;
  error: string | null;
}

/**
 * One event for one subscription: the exact body sent (so every attempt and a redelivery sign the
 * same bytes), and its attempts. `eventKey` makes enqueuing idempotent (a retried activity or a
 * redelivered registry notification adds nothing).
 */
export const notificationDeliveries = pgTable(
  'notification_deliveries',
  {
    /** Also the `X-Kiln-Delivery` header and the body's `id`. */
    id: id(),
    subscriptionId: uuid('subscription_id')
      .notNull()
      .references(() => notificationSubscriptions.id, { onDelete: 'cascade' }),
    event: text('event', { enum: NOTIFICATION_EVENTS }).notNull(),
    eventKey: text('event_key').notNull(),
    body: text('body').notNull(),
    status: text('status', { enum: NOTIFICATION_DELIVERY_STATUSES }).notNull().default('pending'),
    attempts: jsonb('attempts').$type<DeliveryAttempt[]>().notNull().default([]),
    createdAt: createdAt(),
    deliveredAt: ts('delivered_at'),
  },
  (t) => [
    uniqueIndex('notification_deliveries_event').on(t.subscriptionId, t.eventKey),
    index('notification_deliveries_subscription_created').on(t.subscriptionId, t.createdAt),
  ],
);

/** Bearer tokens scoped to one namespace (the admin token from the environment sees all). */
export const apiTokens = pgTable('api_tokens', {
  id: id(),
  namespaceId: uuid('namespace_id')
    .notNull()
    .references(() => namespaces.id, { onDelete: 'cascade' }),
  name: text('name').notNull(),
  /** sha256 of the token; the token itself is shown once at creation. */
  tokenHash: text('token_hash').notNull().unique(),
  createdAt: createdAt(),
  /** After this the token is refused; null: it does not expire. */
  expiresAt: ts('expires_at'),
  /** Last accepted use, recorded at most once a minute. */
  lastUsedAt: ts('last_used_at'),
});

export type BuildRule = typeof buildRules.$inferSelect;
export type NewBuildRule = typeof buildRules.$inferInsert;
export type Namespace = typeof namespaces.$inferSelect;
export type Repository = typeof repositories.$inferSelect;
export type Build = typeof builds.$inferSelect;
export type NewBuild = typeof builds.$inferInsert;
export type BuildPlatform = typeof buildPlatforms.$inferSelect;
export type ImageTag = typeof imageTags.$inferSelect;
export type BuildContextRow = typeof buildContexts.$inferSelect;
export type NotificationSubscription = typeof notificationSubscriptions.$inferSelect;
export type NotificationDelivery = typeof notificationDeliveries.$inferSelect;
