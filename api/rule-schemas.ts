import { z } from '@hono/zod-openapi';
import { createSchemaFactory } from 'drizzle-zod';
import { validateRepoPath } from '../activities/git';
import { buildRules, RULE_TYPES } from '../db/schema';
import { PLATFORMS } from '../domain/platforms';
import {
  compileRuleMatch,
  isValidTimeZone,
  MAX_MATCH_LENGTH,
  MAX_PATH_FILTERS,
  MAX_TAG_TEMPLATES,
  validatePathFilters,
  validateTagTemplates,
} from '../domain/rules';
import { BUILD_ARG_KEY_RE, MAX_BUILD_ARGS, stringMap } from './schemas';

const { createInsertSchema, createSelectSchema } = createSchemaFactory({ zodInstance: z });

const repoPath = (what: string) =>
  z
    .string()
    .max(1024)
    .superRefine((v, ctx) => {
      const problem = validateRepoPath(v);
      if (problem) ctx.addIssue({ code: 'custom', message: `${what}: ${problem}` });
    });

export const TagTemplateSchema = z
  .object({
    template: z.string().min(1).max(128).openapi({ example: '${imageTag}' }),
    buildTime: z.enum(['yyyyMMdd', 'yyyyMMddHHmm']).optional().openapi({ description: 'Append the build time' }),
    timeZone: z
      .string()
      .max(64)
      .refine(isValidTimeZone, 'not a time zone: use UTC+8, +08:00, UTC or an IANA name')
      .optional()
      .openapi({ description: 'Time zone of buildTime (default UTC+8)', example: 'UTC+8' }),
    commitIdLength: z.number().int().min(1).max(40).optional().openapi({ description: 'Append the first N characters of the commit id' }),
    commitId: z.boolean().optional().openapi({ description: 'Append the commit id (6 characters unless commitIdLength)' }),
  })
  .strict()
  .openapi('TagTemplate');

const ruleFields = {
  match: z.string().min(1).max(MAX_MATCH_LENGTH).openapi({
    description: 'A literal branch/tag name, or a regular expression (RE2, whole-name match) with named groups',
    example: 'release-(?<imageTag>\\w*)',
  }),
  contextDir: repoPath('contextDir').optional(),
  dockerfile: repoPath('dockerfile').optional(),
  platforms: z.array(z.enum(PLATFORMS)).min(1).refine((a) => new Set(a).size === a.length, 'platforms must be unique'),
  buildArgs: stringMap(MAX_BUILD_ARGS, 'build args', z.string().regex(BUILD_ARG_KEY_RE, 'not a valid build arg name')).optional(),
  target: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'not a valid stage name').nullable().optional(),
  tags: z.array(TagTemplateSchema).min(1).max(MAX_TAG_TEMPLATES),
  paths: z.array(z.string().min(1).max(512)).max(MAX_PATH_FILTERS).optional().openapi({ description: 'Globs; a push touching none starts no build' }),
  timeoutMinutes: z.number().int().min(1).max(1440).optional(),
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
  enabled: true,
  paths: true,
  semver: true,
  cancelSuperseded: true,
  timeoutMinutes: true,
} as const;

/** Cross-field checks: the pattern compiles (linear time), templates can yield tags, semver fits. */
function checkRule(
  rule: { type?: 'branch' | 'tag'; match?: string; tags?: z.infer<typeof TagTemplateSchema>[]; paths?: string[]; semver?: boolean },
  ctx: z.RefinementCtx,
) {
  if (rule.match !== undefined) {
    const compiled = compileRuleMatch(rule.match);
    if (!compiled.ok) ctx.addIssue({ code: 'custom', path: ['match'], message: compiled.message });
  }
  if (rule.type && rule.match !== undefined && rule.tags) {
    for (const message of validateTagTemplates({ type: rule.type, match: rule.match, tags: rule.tags })) {
      ctx.addIssue({ code: 'custom', path: ['tags'], message });
    }
  }
  if (rule.paths) for (const message of validatePathFilters(rule.paths)) ctx.addIssue({ code: 'custom', path: ['paths'], message });
  if (rule.semver && rule.type === 'branch') {
    ctx.addIssue({ code: 'custom', path: ['semver'], message: 'semver expansion applies to tag rules only' });
  }
}

export const RuleCreate = createInsertSchema(buildRules, ruleFields)
  .pick(RULE_FIELDS)
  .strict()
  .superRefine(checkRule)
  .openapi('RuleCreate');

export type RuleCreateInput = z.infer<typeof RuleCreate>;

export const RuleUpdate = createInsertSchema(buildRules, ruleFields)
  .pick(RULE_FIELDS)
  .partial()
  .strict()
  .openapi('RuleUpdate');

/** Checks an update merged over the stored rule, so a partial change cannot break the whole. */
export const RuleMerged = z
  .object({
    type: z.enum(RULE_TYPES),
    match: z.string(),
    tags: z.array(TagTemplateSchema),
    paths: z.array(z.string()),
    semver: z.boolean(),
  })
  .superRefine(checkRule);

export const RuleView = createSelectSchema(buildRules, {
  createdAt: z.iso.datetime({ offset: true }),
  updatedAt: z.iso.datetime({ offset: true }),
  tags: z.array(TagTemplateSchema),
  buildArgs: z.record(z.string(), z.string()),
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

export const RuleIdParams = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, format: 'uuid' }),
});

/** A rule as the preview takes it: a saved rule's id, or the fields of one being edited (checked by the preview, not refused). */
export const RulePreviewRequest = z
  .object({
    rule: z.union([
      z.string().openapi({ format: 'uuid', description: 'A saved rule of this repository' }),
      z
        .object({
          type: z.enum(RULE_TYPES),
          match: z.string().max(MAX_MATCH_LENGTH),
          tags: z.array(TagTemplateSchema).max(MAX_TAG_TEMPLATES),
          semver: z.boolean().optional(),
          paths: z.array(z.string().max(512)).max(MAX_PATH_FILTERS).optional(),
          enabled: z.boolean().optional(),
        })
        .passthrough()
        .openapi({ description: 'An unsaved rule (the fields of RuleCreate; others are ignored)' }),
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
