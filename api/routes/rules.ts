import { randomUUID } from 'node:crypto';
import { createRoute } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { insertBuild } from '../../db/queries/builds';
import { getRepository, type RepositoryWithNamespace } from '../../db/queries/repositories';
import { deleteRule, getRule, insertRule, listRules, updateRule } from '../../db/queries/rules';
import type { BuildRule } from '../../db/schema';
import {
  InvalidTagError,
  isRegexMatch,
  matchesPathFilters,
  matchRef,
  parseFullRef,
  renderImageTags,
  validateRuleSpec,
  type RefName,
  type RuleSpec,
} from '../../domain/rules';
import type { AppDeps } from '../types';
import { requireNamespace, type AppEnv } from '../auth';
import { ApiError, pickErrors } from '../errors';
import { ruleBuildValues, startRuleBuilds } from '../rule-builds';
import {
  RuleCreate,
  ruleIssues,
  RulePreview,
  RulePreviewRequest,
  RuleTrigger,
  RuleUpdate,
  RuleView,
} from '../rule-schemas';
import { BuildAccepted, IdParams } from '../schemas';
import { createRouter, isUuid, jsonContent } from '../util';
import { z } from '@hono/zod-openapi';
import { loadRepository } from './repositories';
import { ScheduleRejectedError } from '../rule-schedules';
import type { RuleSchedule } from '../../domain/schedules';
import { getNamespaceByName } from '../../db/queries/namespaces';
import type { Db } from '../../db/client';
import { assertRuleQuota, assertTimeoutWithinQuota, submissionLimiter } from '../submission-limits';

const RulePage = z.object({ items: z.array(RuleView), nextCursor: z.null() }).openapi('RulePage');

const create = createRoute({
  method: 'post',
  path: '/{id}/rules',
  tags: ['rules'],
  summary: 'Add a build rule to a repository with a code source',
  request: { params: IdParams, body: { required: true, content: jsonContent(RuleCreate) } },
  responses: { 201: { description: 'Created', content: jsonContent(RuleView) }, ...pickErrors(400, 401, 403, 404, 409, 413, 415, 422, 503) },
});

const list = createRoute({
  method: 'get',
  path: '/{id}/rules',
  tags: ['rules'],
  summary: "List a repository's build rules",
  request: { params: IdParams },
  responses: { 200: { description: 'The rules', content: jsonContent(RulePage) }, ...pickErrors(401, 403, 404) },
});

const get = createRoute({
  method: 'get',
  path: '/{id}',
  tags: ['rules'],
  summary: 'Get a build rule',
  request: { params: IdParams },
  responses: { 200: { description: 'The rule', content: jsonContent(RuleView) }, ...pickErrors(401, 403, 404) },
});

const patch = createRoute({
  method: 'patch',
  path: '/{id}',
  tags: ['rules'],
  summary: 'Change a build rule',
  request: { params: IdParams, body: { required: true, content: jsonContent(RuleUpdate) } },
  responses: { 200: { description: 'The rule', content: jsonContent(RuleView) }, ...pickErrors(400, 401, 403, 404, 413, 415, 422, 503) },
});

const remove = createRoute({
  method: 'delete',
  path: '/{id}',
  tags: ['rules'],
  summary: 'Delete a build rule (and its schedules)',
  request: { params: IdParams },
  responses: { 204: { description: 'Deleted' }, ...pickErrors(401, 403, 404, 503) },
});

const trigger = createRoute({
  method: 'post',
  path: '/{id}/builds',
  tags: ['rules'],
  summary: 'Build a rule now',
  description:
    'A literal rule builds its own branch or tag. A regex rule (or any rule) builds the named `ref` when it ' +
    'matches the rule, evaluated exactly as a push would be; the commit is pinned when the build starts.',
  request: { params: IdParams, body: { required: false, content: jsonContent(RuleTrigger) } },
  responses: { 202: { description: 'Accepted', content: jsonContent(BuildAccepted) }, ...pickErrors(400, 401, 403, 404, 409, 422, 429, 503) },
});

const preview = createRoute({
  method: 'post',
  path: '/{id}/rules/preview',
  tags: ['rules'],
  summary: 'Preview a rule against a ref',
  description:
    'Evaluates a saved or unsaved rule against a branch or tag exactly as a push would: whether it matches, the ' +
    'tags it would push for that commit and time, and why not when it would not build (no match, a tag that is ' +
    'not a valid OCI tag for this ref, path filters, a disabled rule, a rule that is not valid). Changes nothing.',
  request: { params: IdParams, body: { required: true, content: jsonContent(RulePreviewRequest) } },
  responses: { 200: { description: 'The outcome', content: jsonContent(RulePreview) }, ...pickErrors(400, 401, 403, 404, 413, 415) },
});

const schedulePause = (paused: boolean) =>
  createRoute({
    method: 'post',
    path: `/{id}/schedule/${paused ? 'pause' : 'unpause'}`,
    tags: ['rules'],
    summary: paused ? "Pause a rule's cron schedules" : "Resume a rule's cron schedules",
    description: paused
      ? 'The Temporal Schedules of the rule start nothing until unpaused (the Temporal UI shows them paused). Idempotent.'
      : 'The Temporal Schedules of the rule start builds again at their next times. Idempotent.',
    request: { params: IdParams },
    responses: { 200: { description: 'The rule', content: jsonContent(RuleView) }, ...pickErrors(401, 403, 404, 503) },
  });
const pause = schedulePause(true);
const unpause = schedulePause(false);

/** A stand-in commit id when the preview names none: visibly a sample. */
export const SAMPLE_COMMIT = '0123456789abcdef0123456789abcdef01234567';

export function ruleView(rule: BuildRule) {
  return {
    ...rule,
    regex: isRegexMatch(rule.match),
    createdAt: rule.createdAt.toISOString(),
    updatedAt: rule.updatedAt.toISOString(),
  };
}

async function loadRule(c: Context<AppEnv>, db: AppDeps['db'], id: string): Promise<{ rule: BuildRule; repo: RepositoryWithNamespace }> {
  const rule = isUuid(id) ? await getRule(db, id) : undefined;
  const repo = rule && (await getRepository(db, rule.repositoryId));
  if (!rule || !repo) throw new ApiError('not_found', `Rule ${id} not found`);
  requireNamespace(c, repo.namespace);
  return { rule, repo };
}

/** A rule's timeoutMinutes when it gives none (the column's default). */
const RULE_DEFAULT_TIMEOUT_MINUTES = 60;

async function namespaceOf(tx: Db, repo: RepositoryWithNamespace) {
  const ns = await getNamespaceByName(tx, repo.namespace);
  if (!ns) throw new ApiError('not_found', `Namespace "${repo.namespace}" not found`);
  return ns;
}

/** The ref a manual build uses: the one named, or a literal rule's own. */
function manualRef(rule: BuildRule, named: string | undefined): { ref: RefName; groups: Record<string, string> } {
  const regex = isRegexMatch(rule.match);
  if (!named && regex) {
    throw new ApiError('unprocessable', `Rule ${rule.id} matches ${rule.type}es by a pattern: name the ref to build`, {
      match: rule.match,
    });
  }
  const ref: RefName = { type: rule.type, name: named ?? rule.match };
  const matched = matchRef(rule, ref);
  if (!matched) {
    throw new ApiError('unprocessable', `${rule.type} "${ref.name}" does not match the rule's "${rule.match}"`, {
      ref: ref.name,
      match: rule.match,
    });
  }
  return { ref, groups: matched.groups };
}

/** Changes of a rule's Temporal schedules; refusals and an unreachable engine become API errors. */
function ruleScheduling(deps: AppDeps) {
  async function scheduling(what: string, change: (scheduler: NonNullable<AppDeps['schedules']>) => Promise<void>): Promise<void> {
    if (!deps.schedules) throw new ApiError('service_unavailable', `Schedules are not available here (${what})`);
    try {
      await change(deps.schedules);
    } catch (err) {
      if (err instanceof ScheduleRejectedError) throw new ApiError('unprocessable', `The schedule engine refused the schedule: ${err.message}`);
      throw new ApiError('service_unavailable', `The schedule engine could not be reached (${what}); nothing was changed`);
    }
  }
  const syncSchedules = (ruleId: string, schedules: RuleSchedule[], paused: boolean, previousCount: number) =>
    schedules.length || previousCount ? scheduling('sync', (s) => s.sync(ruleId, schedules, paused, previousCount)) : Promise.resolve();
  return { scheduling, syncSchedules };
}

/** A repository's rules, mounted under `/repositories`: `/{id}/rules` and its preview. */
export function repositoryRuleRoutes(deps: AppDeps) {
  const { db } = deps;
  const quotaDefaults = deps.config.quotaDefaults;
  const { syncSchedules } = ruleScheduling(deps);
  return createRouter()
    .openapi(create, async (c) => {
      const repo = await loadRepository(c, db, c.req.valid('param').id);
      if (!repo.sourceUrl) {
        throw new ApiError('conflict', `Repository ${repo.namespace}/${repo.name} has no code source: bind one before adding rules`);
      }
      const body = c.req.valid('json');
      const issues = ruleIssues(body);
      if (issues.length) throw new ApiError('unprocessable', 'The rule cannot be used as given', issues);
      // The schedules first, under the rule's id-to-be: a refusal leaves nothing behind.
      const id = randomUUID();
      const schedules = body.schedules ?? [];
      await syncSchedules(id, schedules, false, 0);
      let rule: BuildRule;
      try {
        rule = await db.transaction(async (tx) => {
          const ns = await namespaceOf(tx, repo);
          assertTimeoutWithinQuota(ns, body.timeoutMinutes ?? RULE_DEFAULT_TIMEOUT_MINUTES, quotaDefaults);
          await assertRuleQuota(tx, ns, quotaDefaults);
          return insertRule(tx, { ...body, id, repositoryId: repo.id });
        });
      } catch (err) {
        await deps.schedules?.remove(id, schedules.length).catch(() => undefined);
        throw err;
      }
      return c.json(ruleView(rule), 201);
    })
    .openapi(list, async (c) => {
      const repo = await loadRepository(c, db, c.req.valid('param').id);
      return c.json({ items: (await listRules(db, repo.id)).map(ruleView), nextCursor: null }, 200);
    })
    .openapi(preview, async (c) => {
      const repo = await loadRepository(c, db, c.req.valid('param').id);
      const body = c.req.valid('json');
      let spec: RuleSpec & { enabled: boolean };
      if (typeof body.rule === 'string') {
        const { rule } = await loadRule(c, db, body.rule);
        if (rule.repositoryId !== repo.id) throw new ApiError('not_found', `Rule ${body.rule} is not a rule of this repository`);
        spec = rule;
      } else {
        spec = { semver: false, paths: [], enabled: true, ...body.rule } as RuleSpec & { enabled: boolean };
      }
      return c.json(previewRule(spec, body), 200);
    });
}

/** One rule, mounted under `/rules`: `/{id}` and its manual builds. */
export function ruleRoutes(deps: AppDeps) {
  const { db } = deps;
  const limiter = submissionLimiter(deps);
  const quotaDefaults = deps.config.quotaDefaults;
  const { scheduling, syncSchedules } = ruleScheduling(deps);
  return createRouter()
    .openapi(get, async (c) => c.json(ruleView((await loadRule(c, db, c.req.valid('param').id)).rule), 200))
    .openapi(patch, async (c) => {
      const { rule } = await loadRule(c, db, c.req.valid('param').id);
      const changes = c.req.valid('json');
      const issues = ruleIssues({ ...rule, ...changes });
      if (issues.length) throw new ApiError('unprocessable', 'The rule would not be valid after this change', issues);
      if (changes.timeoutMinutes !== undefined) {
        const repo = await getRepository(db, rule.repositoryId);
        if (repo) assertTimeoutWithinQuota(await namespaceOf(db, repo), changes.timeoutMinutes, quotaDefaults);
      }
      if (changes.schedules) await syncSchedules(rule.id, changes.schedules, rule.schedulesPaused, rule.schedules.length);
      const updated = await updateRule(db, rule.id, changes);
      if (!updated) throw new ApiError('not_found', `Rule ${rule.id} not found`);
      return c.json(ruleView(updated), 200);
    })
    .openapi(remove, async (c) => {
      const { rule } = await loadRule(c, db, c.req.valid('param').id);
      if (rule.schedules.length) await scheduling('delete', (s) => s.remove(rule.id, rule.schedules.length));
      await deleteRule(db, rule.id);
      return c.body(null, 204);
    })
    .openapi(pause, async (c) => {
      const { rule } = await loadRule(c, db, c.req.valid('param').id);
      await syncSchedules(rule.id, rule.schedules, true, rule.schedules.length);
      return c.json(ruleView((await updateRule(db, rule.id, { schedulesPaused: true }))!), 200);
    })
    .openapi(unpause, async (c) => {
      const { rule } = await loadRule(c, db, c.req.valid('param').id);
      await syncSchedules(rule.id, rule.schedules, false, rule.schedules.length);
      return c.json(ruleView((await updateRule(db, rule.id, { schedulesPaused: false }))!), 200);
    })
    .openapi(trigger, async (c) => {
      const { rule, repo } = await loadRule(c, db, c.req.valid('param').id);
      if (!rule.enabled) throw new ApiError('conflict', `Rule ${rule.id} is disabled`);
      limiter.take(repo.namespace);
      let named: string | undefined;
      if (c.req.header('content-type')?.includes('application/json')) named = c.req.valid('json')?.ref;
      const { ref } = manualRef(rule, named);
      const values = ruleBuildValues({ repo, rule, ref, commit: null, trigger: 'manual', creationMethod: 'manual build' });
      const { build } = await insertBuild(db, values);
      const { failed } = await startRuleBuilds(deps, [{ build, rule, repository: `${repo.namespace}/${repo.name}` }]);
      if (failed.length) {
        throw new ApiError('service_unavailable', 'The build engine is unavailable; the build was marked failed', { buildId: build.id });
      }
      return c.json({ buildId: build.id, workflowId: build.workflowId }, 202);
    });
}

/** What a push of `req.ref` would do under `rule`: the rule engine of domain/rules.ts, run dry. */
export function previewRule(
  rule: RuleSpec & { enabled: boolean },
  req: { ref: string; commit?: string; time?: string; changedFiles?: string[] },
): z.infer<typeof RulePreview> {
  const ref: RefName = parseFullRef(req.ref) ?? { type: rule.type, name: req.ref };
  const commit = req.commit ?? SAMPLE_COMMIT;
  const time = req.time ? new Date(req.time) : new Date();
  const base = { ref, groups: {}, tags: [] as string[], commit, time: time.toISOString(), problems: [] as string[] };
  const problems = validateRuleSpec(rule);
  if (problems.length) return { ...base, matches: false, problems, reason: `The rule is not valid: ${problems.join('; ')}` };
  if (ref.type !== rule.type) {
    return { ...base, matches: false, reason: `The rule builds ${rule.type}es; ${ref.name} is a ${ref.type}` };
  }
  const matched = matchRef(rule, ref);
  if (!matched) {
    const how = isRegexMatch(rule.match) ? `does not match the pattern ${rule.match}` : `is not "${rule.match}"`;
    return { ...base, matches: false, reason: `${rule.type} "${ref.name}" ${how}` };
  }
  const groups = matched.groups;
  let tags: string[];
  try {
    tags = renderImageTags(rule, { ref, groups, commit, time });
  } catch (err) {
    if (err instanceof InvalidTagError || err instanceof RangeError) {
      return { ...base, groups, matches: false, reason: `It matches, but the build would fail: ${err.message}` };
    }
    throw err;
  }
  if (req.changedFiles && rule.paths.length && !matchesPathFilters(rule.paths, req.changedFiles)) {
    return { ...base, groups, tags, matches: false, reason: `No changed file matches the path filters (${rule.paths.join(', ')})` };
  }
  if (!rule.enabled) return { ...base, groups, tags, matches: false, reason: 'The rule is disabled' };
  return { ...base, groups, tags, matches: true, reason: null };
}
