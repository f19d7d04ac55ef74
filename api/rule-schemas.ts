import { z } from '@hono/zod-openapi';
import { createSchemaFactory } from 'drizzle-zod';
import { buildRules, RULE_TYPES } from '../db/schema';
import { PROVENANCE_MODES } from '../domain/builds';
import { PLATFORMS } from '../domain/platforms';
import {
  compileRuleMatch,
  isRegexMatch,
  MAX_MATCH_LENGTH,
  MAX_PATH_FILTERS,
  MAX_TAG_TEMPLATES,
  validatePathFilters,
  validateTagTemplates,
} from '../domain/rules';
import { TagTemplateSchema, type TagTemplate } from '../domain/tag-template';
import { BUILD_ARG_KEY_RE, MAX_BUILD_ARGS, PROVENANCE_DESCRIPTION, stringMap } from './schemas';
import { CRON_RE, cronIssues, MAX_RULE_SCHEDULES } from '../domain/schedules';
import { isValidTimeZone } from '../domain/time-zones';

const { createInsertSchema, createSelectSchema } = createSchemaFactory({ zodInstance: z });

/**
 * A path inside the repository, as activities/git.ts validateRepoPath checks it, written as the
 * pattern the document states: no control character or backslash, no drive, no `..` or `.git` segment.
 */
export const REPO_PATH_RE = /^(?![A-Za-z]:)(?!(?:.*\/)?\.\.(?:\/|$))(?!(?:.*\/)?\.[Gg][Ii][Tt](?:\/|$))[^\u0000-\u001f\u007f\\]*$/;
const repoPath = (what: string) =>
  z.string().max(1024).regex(REPO_PATH_RE, `${what}: a path inside the repository (no "..", ".git", backslash or control character)`);

/** Offsets (`UTC+8`, `UTC-5:30`, `+08:00`, `GMT+1`) up to ±14:00. */
const UTC_OFFSET_RE = /^(?:UTC|GMT)?[+-](?:(?:0?[0-9]|1[0-3])(?::?[0-5][0-9])?|14(?::?00)?)$/;
/** The IANA names this runtime knows, plus UTC/GMT/Z: a closed list, so the document states it. */
const ZONE_NAMES = [...new Set(['UTC', 'GMT', 'Z', ...Intl.supportedValuesOf('timeZone')])].filter(isValidTimeZone) as [string, ...string[]];

export const TimeZone = z
  .union([z.enum(ZONE_NAMES), z.string().regex(UTC_OFFSET_RE)])
  .openapi({ description: 'Time zone of buildTime (default UTC+8): an offset such as UTC+8, UTC-5:30 or +08:00, or an IANA name', example: 'UTC+8' });

/** IANA names only for schedules: Temporal reads them from its own time zone database. */
const SCHEDULE_ZONES = ZONE_NAMES.filter((z) => z !== 'Z') as [string, ...string[]];

export const RuleScheduleSchema = z
  .object({
    cron: z
      .string()
      .max(512)
      .regex(CRON_RE, 'a five-field cron line: minute hour day-of-month month day-of-week (numbers, *, ranges, steps, lists)')
      .openapi({
        description: 'Five fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12) day-of-week (0-6, 0 = Sunday); each `*`, `*/n`, `a`, `a-b` or `a-b/n`, or a comma list of those. A range must run upwards (else 422).',
        example: '0 3 * * *',
      }),
    timeZone: z.enum(SCHEDULE_ZONES).openapi({ description: 'IANA time zone the cron line is read in', example: 'Europe/Berlin' }),
  })
  .strict()
  .openapi('RuleSchedule');

const ruleFields = {
  match: z.string().min(1).max(MAX_MATCH_LENGTH).openapi({
    description: 'A literal branch/tag name, or a regular expression (RE2, whole-name match) with named groups',
    example: 'release-(?<imageTag>\\w*)',
  }),
  contextDir: repoPath('contextDir').optional(),
  dockerfile: repoPath('dockerfile').optional(),
  platforms: z
    .array(z.enum(PLATFORMS))
    .min(1)
    .refine((a) => new Set(a).size === a.length, 'platforms must be unique')
    .openapi({ uniqueItems: true }),
  buildArgs: stringMap(MAX_BUILD_ARGS, 'build args', { pattern: BUILD_ARG_KEY_RE, message: 'not a valid build arg name' }).optional(),
  target: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'not a valid stage name').nullable().optional(),
  tags: z.array(TagTemplateSchema).min(1).max(MAX_TAG_TEMPLATES),
  paths: z.array(z.string().min(1).max(512)).max(MAX_PATH_FILTERS).optional().openapi({ description: 'Globs; a push touching none starts no build' }),
  timeoutMinutes: z.number().int().min(1).max(1440).optional(),
  schedules: z
    .array(RuleScheduleSchema)
    .max(MAX_RULE_SCHEDULES)
    .optional()
    .openapi({ description: 'Cron schedules that build the rule\'s own branch or tag (a literal match only), each a Temporal Schedule `rule-<id>-<n>`' }),
  provenance: z.enum(PROVENANCE_MODES).optional().openapi({ description: PROVENANCE_DESCRIPTION }),
  rebuildOnBaseChange: z.boolean().optional().openapi({
    description:
      "Rebuild this rule's ref when an image its last build pulled (FROM, COPY --from) from Kiln's registry gets a new digest under the same tag",
  }),
};

/** The rule fields a client sets (everything but ids and times). */
const RULE_FIELDS = {
  type: true,
  match: true,
  contextDir: true,
  dockerfile: true,
  platforms: true,
  buildArgs: true,
  target: true,
  tags: true,
  noCache: true,
  accelerated: true,
  provenance: true,
  enabled: true,
  paths: true,
  semver: true,
  cancelSuperseded: true,
  rebuildOnBaseChange: true,
  timeoutMinutes: true,
  schedules: true,
} as const;

type RuleChecked = {
  type?: 'branch' | 'tag';
  match?: string;
  tags?: TagTemplate[];
  paths?: string[];
  semver?: boolean;
  schedules?: z.infer<typeof RuleScheduleSchema>[];
};

/**
 * Checks a JSON Schema cannot state: the pattern compiles (linear time), templates can yield tags,
 * path globs are well-formed, semver is for tag rules. A rule that fails them matches the document
 * but cannot be carried out: 422, with these issues as details.
 */
export function ruleIssues(rule: RuleChecked): { in: 'json'; path: string[]; message: string }[] {
  const issues: { in: 'json'; path: string[]; message: string }[] = [];
  if (rule.match !== undefined) {
    const compiled = compileRuleMatch(rule.match);
    if (!compiled.ok) issues.push({ in: 'json', path: ['match'], message: compiled.message });
  }
  if (rule.type && rule.match !== undefined && rule.tags) {
    for (const message of validateTagTemplates({ type: rule.type, match: rule.match, tags: rule.tags })) {
      issues.push({ in: 'json', path: ['tags'], message });
    }
  }
  if (rule.paths) for (const message of validatePathFilters(rule.paths)) issues.push({ in: 'json', path: ['paths'], message });
  for (const [i, schedule] of (rule.schedules ?? []).entries()) {
    for (const message of cronIssues(schedule.cron)) issues.push({ in: 'json', path: ['schedules', String(i), 'cron'], message });
  }
  if (rule.schedules?.length && rule.match !== undefined && isRegexMatch(rule.match)) {
    issues.push({ in: 'json', path: ['schedules'], message: 'a schedule builds the rule\'s own branch or tag: the match must be a literal name, not a pattern' });
  }
  if (rule.semver && rule.type === 'branch') issues.push({ in: 'json', path: ['semver'], message: 'semver expansion applies to tag rules only' });
  return issues;
}

export const RuleCreate = createInsertSchema(buildRules, ruleFields).pick(RULE_FIELDS).strict().openapi('RuleCreate');

export type RuleCreateInput = z.infer<typeof RuleCreate>;

export const RuleUpdate = createInsertSchema(buildRules, ruleFields)
  .pick(RULE_FIELDS)
  .partial()
  .strict()
  .openapi('RuleUpdate');

export const RuleView = createSelectSchema(buildRules, {
  createdAt: z.iso.datetime({ offset: true }),
  updatedAt: z.iso.datetime({ offset: true }),
  tags: z.array(TagTemplateSchema),
  buildArgs: z.record(z.string(), z.string()),
  schedules: z.array(RuleScheduleSchema),
  schedulesPaused: z.boolean().openapi({ description: 'The schedules are paused (POST /rules/{id}/schedule/pause and /unpause)' }),
})
  .extend({ regex: z.boolean().openapi({ description: 'Whether match is read as a regular expression' }) })
  .openapi('Rule');

export const RuleTrigger = z
  .object({
    ref: z
      .string()
      .min(1)
      .max(255)
      .optional()
      .openapi({ description: 'Branch or tag name to build; required for regex rules, must match the rule' }),
  })
  .strict()
  .openapi('RuleTrigger');

/** A rule as the preview takes it: a saved rule's id, or the fields of one being edited (checked by the preview, not refused). */
export const RulePreviewRequest = z
  .object({
    rule: z.union([
      z.string().openapi({ format: 'uuid', description: 'A saved rule of this repository' }),
      // The fields of RuleCreate and no others (the document can then say what every value may
      // hold); the ones the preview reads are checked by the preview, not refused.
      RuleCreate.partial()
        .extend({
          type: z.enum(RULE_TYPES),
          match: z.string().max(MAX_MATCH_LENGTH),
          tags: z.array(TagTemplateSchema).max(MAX_TAG_TEMPLATES),
          semver: z.boolean().optional(),
          paths: z.array(z.string().max(512)).max(MAX_PATH_FILTERS).optional(),
          enabled: z.boolean().optional(),
        })
        .strict()
        .openapi({ description: 'An unsaved rule: the fields of RuleCreate' }),
    ]),
    ref: z
      .string()
      .min(1)
      .max(255)
      .openapi({ description: 'Branch or tag name (of the rule\'s type), or a full `refs/heads/x` / `refs/tags/x`', example: 'release-v1' }),
    commit: z
      .string()
      .regex(/^[0-9a-f]{4,64}$/, 'a hex commit id')
      .optional()
      .openapi({ description: 'Commit for the commit-id part of tags; a sample id when omitted' }),
    time: z.iso.datetime({ offset: true }).optional().openapi({ description: 'Build time for the time part of tags; now when omitted' }),
    changedFiles: z.array(z.string().max(1024)).max(1000).optional().openapi({ description: 'Files a push changed, checked against the path filters' }),
  })
  .strict()
  .openapi('RulePreviewRequest');

export const RulePreview = z
  .object({
    matches: z.boolean().openapi({ description: 'Whether a push of this ref would build' }),
    ref: z.object({ type: z.enum(RULE_TYPES), name: z.string() }),
    groups: z.record(z.string(), z.string()).openapi({ description: 'Named groups of the match, usable as ${name}' }),
    tags: z.array(z.string()).openapi({ description: 'Tags the build would push' }),
    commit: z.string(),
    time: z.iso.datetime({ offset: true }),
    reason: z.string().nullable().openapi({ description: 'Why it would not build, or null' }),
    problems: z.array(z.string()).openapi({ description: 'What is wrong with the rule itself (it could not be saved)' }),
  })
  .openapi('RulePreview');
