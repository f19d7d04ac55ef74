// Build rules (SPEC §2): which refs a rule matches, which image tags a build gets, and which pushes
// a rule's path filters let through. Pure and deterministic: no Node imports, no I/O, no clock —
// safe to import from Temporal workflow code as well as from the API and activities.
//
// Matching
// - `match` is a regular expression when it contains a regex metacharacter
//   `( ) [ ] * + ? { } ^ $ | \`; otherwise it is a literal ref name compared for equality.
//   A `.` alone does not make a regex: `v1.2.3` and `release/v1` are literal names.
// - Regexes use RE2 syntax and semantics (via re2js): linear-time matching, no backreferences or
//   lookaround, `(?<name>…)` and `(?P<name>…)` named groups. At most 256 characters, bounded
//   program size. A regex must match the WHOLE ref name (`release-.*` does not match
//   `prerelease-x`).
//
// Tag templates — a rendered tag is `template[-time][-commit]` (SPEC §2):
// - `${name}` is replaced by the named group `name` of the match (empty when the group did not
//   take part), `${branch}` by the branch name (branch rules only), `${tag}` by the git tag name
//   (tag rules only). A named group called `branch`/`tag` shadows the built-in.
// - Every substituted value goes through `sanitizeRefForTag`: characters that can never appear in
//   an OCI tag (`/`, `@`, `+`, spaces, non-ASCII, …) become `-`, so branch `feature/x` yields
//   `feature-x`. Nothing else is repaired: a result that is still invalid (leading `.` or `-`,
//   empty, longer than 128) fails the build with `InvalidTagError`.
// - `-time` is appended only when the template has `buildTime` (`yyyyMMdd` | `yyyyMMddHHmm`),
//   formatted in `timeZone` (default UTC+8, as in the SPEC example).
// - `-commit` is appended only when the template asks for it: `commitIdLength` present (1–40), or
//   `commitId: true` (then `commitIdLength` defaults to 6). `commitId: false` turns it off.
// - Semver (tag rules with `semver: true`, ref a semver tag): the templates' tags PLUS
//   `expandSemver(tag)` — `v1.2.3` → `1.2.3`, `1.2`, `1`; pre-releases and versions with build
//   metadata only get their full version. Duplicates are dropped, order is kept.
//
// Path filters — GitHub-Actions-like globs over repository paths (no leading `/`):
// `*` any characters but `/`; `?` one character but `/`; `**` any characters including `/`
// (`**/` is zero or more directories); `[abc]`, `[a-z]`, `[!a]`; `{a,b}` alternatives. A pattern
// with no glob characters, or ending in `/`, also matches everything beneath it (`svc` ≡ `svc/**`).
// `*.md` matches only at the root; use `**/*.md` for any depth. A leading `!` excludes.
import { RE2JS } from 're2js';
import { MAX_TAG_LENGTH, OCI_TAG_CHAR_RE, OCI_TAG_RE } from './oci';
import type { TagTemplate } from './tag-template';
import { DEFAULT_TIME_ZONE, formatBuildTime, isValidTimeZone } from './time-zones';

export interface RuleSpec {
  type: 'branch' | 'tag';
  match: string;
  tags: TagTemplate[];
  semver: boolean;
  paths: string[];
}

export type RefType = 'branch' | 'tag';
export interface RefName {
  type: RefType;
  name: string;
}

/** `refs/heads/x` or `refs/tags/x`: kept whole so a branch and a tag of one name never mix. */
export function fullRefName(ref: RefName): string {
  return `${ref.type === 'tag' ? 'refs/tags' : 'refs/heads'}/${ref.name}`;
}

/** The branch or tag a full ref names; null for other refs (`refs/pull/...`, `HEAD`). */
export function parseFullRef(fullRef: unknown): RefName | null {
  if (typeof fullRef !== 'string') return null;
  if (fullRef.startsWith('refs/heads/')) return { type: 'branch', name: fullRef.slice('refs/heads/'.length) };
  if (fullRef.startsWith('refs/tags/')) return { type: 'tag', name: fullRef.slice('refs/tags/'.length) };
  return null;
}

export const MAX_MATCH_LENGTH = 256;
/** RE2 program size above which a pattern is refused as too complex. */
export const MAX_PROGRAM_SIZE = 10_000;
export const MIN_TAG_TEMPLATES = 1;
export const MAX_TAG_TEMPLATES = 5;
export const DEFAULT_COMMIT_ID_LENGTH = 6;
export { MAX_TAG_LENGTH };
export const MAX_PATH_FILTERS = 50;
export const MAX_PATH_FILTER_LENGTH = 512;

const OCI_TAG = OCI_TAG_RE;
const TAG_CHAR = OCI_TAG_CHAR_RE;
const REGEX_META = /[()[\]*+?{}^$|\\]/;
const VAR_NAME = /^[A-Za-z0-9_]+$/;

/** A rendered tag that is not a valid OCI tag. */
export class InvalidTagError extends Error {
  override readonly name = 'InvalidTagError';
  constructor(
    readonly tag: string,
    readonly reason: string,
    readonly template?: string,
  ) {
    super(
      `Image tag "${tag}" is not valid: ${reason}` +
        (template !== undefined ? ` (from template "${template}")` : '') +
        '. Tags must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}',
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Matching

export function isRegexMatch(match: string): boolean {
  return REGEX_META.test(match);
}

// Small bounded memo of compiled patterns (deterministic: a cache, not state that changes results).
const compiled = new Map<string, RE2JS>();
function compileCached(pattern: string): RE2JS {
  let re = compiled.get(pattern);
  if (!re) {
    re = RE2JS.compile(pattern);
    if (compiled.size >= 512) compiled.clear();
    compiled.set(pattern, re);
  }
  return re;
}

/** Why a literal ref name can never name a git branch or tag (git check-ref-format), or null. */
function literalRefProblem(name: string): string | null {
  if (/[\u0000-\u0020\u007f~^:?*[\\]/.test(name)) return 'contains a space, control character or one of ~ ^ : ? * [ \\';
  if (name.includes('..')) return 'contains ".."';
  if (name.includes('@{')) return 'contains "@{"';
  if (name === '@') return 'is "@"';
  if (name.startsWith('/') || name.endsWith('/') || name.includes('//')) return 'has an empty path component';
  if (name.endsWith('.')) return 'ends with "."';
  if (name.startsWith('-')) return 'starts with "-"';
  for (const part of name.split('/')) {
    if (part.startsWith('.')) return 'has a path component starting with "."';
    if (part.endsWith('.lock')) return 'has a path component ending with ".lock"';
  }
  return null;
}

export function compileRuleMatch(match: string): { ok: true } | { ok: false; message: string } {
  if (typeof match !== 'string' || match.length === 0) return { ok: false, message: 'match must not be empty' };
  if (match.length > MAX_MATCH_LENGTH) {
    return { ok: false, message: `match is ${match.length} characters long; at most ${MAX_MATCH_LENGTH} are allowed` };
  }
  if (!isRegexMatch(match)) {
    const problem = literalRefProblem(match);
    return problem ? { ok: false, message: `match "${match}" is not a valid git ref name: it ${problem}` } : { ok: true };
  }
  let re: RE2JS;
  try {
    re = compileCached(match);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    return { ok: false, message: `match is not a valid regular expression (RE2 syntax): ${detail}` };
  }
  if (re.programSize() > MAX_PROGRAM_SIZE) {
    return { ok: false, message: 'match regular expression is too complex; use fewer or smaller repetitions' };
  }
  return { ok: true };
}

/** Named capture groups of a regex `match` ([] for a literal or an invalid regex). */
export function matchGroupNames(match: string): string[] {
  if (!isRegexMatch(match) || !compileRuleMatch(match).ok) return [];
  return Object.keys(compileCached(match).namedGroups());
}

export function matchRef(rule: Pick<RuleSpec, 'type' | 'match'>, ref: RefName): { groups: Record<string, string> } | null {
  if (rule.type !== ref.type) return null;
  if (!isRegexMatch(rule.match)) return rule.match === ref.name ? { groups: {} } : null;
  if (!compileRuleMatch(rule.match).ok) return null;
  const re = compileCached(rule.match);
  const m = re.matcher(ref.name);
  if (!m.matches()) return null; // whole-input match: the pattern is anchored at both ends
  const groups: Record<string, string> = {};
  for (const name of Object.keys(re.namedGroups())) {
    // defineProperty: a group may be called `__proto__`.
    Object.defineProperty(groups, name, { value: m.group(name) ?? '', enumerable: true, writable: true, configurable: true });
  }
  return { groups };
}

// ---------------------------------------------------------------------------------------------
// Tag templates

type TemplatePart = { kind: 'text'; text: string } | { kind: 'var'; name: string };

function parseTemplate(template: string): { parts: TemplatePart[] } | { error: string } {
  const parts: TemplatePart[] = [];
  let i = 0;
  let text = '';
  while (i < template.length) {
    if (template.startsWith('${', i)) {
      const end = template.indexOf('}', i + 2);
      if (end < 0) return { error: `unclosed "\${" at position ${i + 1}` };
      const name = template.slice(i + 2, end);
      if (!VAR_NAME.test(name)) return { error: `"\${${name}}" is not a valid variable reference (use letters, digits and _)` };
      if (text) parts.push({ kind: 'text', text });
      text = '';
      parts.push({ kind: 'var', name });
      i = end + 1;
    } else {
      text += template[i];
      i += 1;
    }
  }
  if (text) parts.push({ kind: 'text', text });
  return { parts };
}

/**
 * Replaces every character that can never appear in an OCI tag with `-` (one `-` per character),
 * so branch `feature/x` → `feature-x`. Does not fix a leading `.`/`-` or the length: such names
 * still fail as tags, with a reason.
 */
export function sanitizeRefForTag(name: string): string {
  let out = '';
  for (const ch of name) out += TAG_CHAR.test(ch) ? ch : '-';
  return out;
}

/** Null when `tag` is a valid OCI tag, else why not. */
export function ociTagProblem(tag: string): string | null {
  if (OCI_TAG.test(tag)) return null;
  if (tag.length === 0) return 'it is empty';
  if (tag.length > MAX_TAG_LENGTH) return `it is ${tag.length} characters long; at most ${MAX_TAG_LENGTH} are allowed`;
  const first = tag[0]!;
  if (!/^[A-Za-z0-9_]$/.test(first)) return `it starts with "${first}"; the first character must be a letter, digit or _`;
  for (const ch of tag) if (!TAG_CHAR.test(ch)) return `it contains "${ch}"`;
  return 'it is not a valid tag';
}

export function isValidOciTag(tag: string): boolean {
  return OCI_TAG.test(tag);
}

function wantsCommit(t: TagTemplate): boolean {
  if (t.commitId === false) return false;
  return t.commitId === true || t.commitIdLength !== undefined;
}

/**
 * The image tags a build of `ctx.ref` at `ctx.commit` gets under `rule`. Throws InvalidTagError
 * when a rendered tag is not a valid OCI tag (or a template is malformed); RangeError for an
 * invalid time zone.
 */
export function renderImageTags(
  rule: RuleSpec,
  ctx: { ref: RefName; groups: Record<string, string>; commit: string; time: Date },
): string[] {
  const out: string[] = [];
  const add = (tag: string) => {
    if (!out.includes(tag)) out.push(tag);
  };
  for (const t of rule.tags) {
    const parsed = parseTemplate(t.template);
    if ('error' in parsed) throw new InvalidTagError(t.template, parsed.error, t.template);
    let tag = '';
    for (const part of parsed.parts) {
      if (part.kind === 'text') {
        tag += part.text;
        continue;
      }
      let value: string;
      if (Object.prototype.hasOwnProperty.call(ctx.groups, part.name)) value = ctx.groups[part.name]!;
      else if (part.name === 'branch' && ctx.ref.type === 'branch') value = ctx.ref.name;
      else if (part.name === 'tag' && ctx.ref.type === 'tag') value = ctx.ref.name;
      else throw new InvalidTagError(t.template, `unknown variable \${${part.name}}`, t.template);
      tag += sanitizeRefForTag(value);
    }
    if (t.buildTime) tag += `-${formatBuildTime(ctx.time, t.buildTime, t.timeZone ?? DEFAULT_TIME_ZONE)}`;
    if (wantsCommit(t)) {
      const n = t.commitIdLength ?? DEFAULT_COMMIT_ID_LENGTH;
      if (!Number.isInteger(n) || n < 1 || n > 40) {
        throw new InvalidTagError(tag, `commitIdLength must be an integer from 1 to 40, got ${n}`, t.template);
      }
      tag += `-${ctx.commit.slice(0, n)}`;
    }
    const problem = ociTagProblem(tag);
    if (problem) throw new InvalidTagError(tag, problem, t.template);
    add(tag);
  }
  if (rule.semver && rule.type === 'tag' && ctx.ref.type === 'tag') {
    for (const v of expandSemver(ctx.ref.name)) add(v);
  }
  return out;
}

/**
 * Problems with a rule's tag templates that are knowable before any ref is seen, as messages
 * prefixed with `tags[i]`. Empty when the templates are fine. A template whose validity depends on
 * the ref (e.g. `${branch}` on a branch that may start with `.`) is allowed.
 */
export function validateTagTemplates(rule: Pick<RuleSpec, 'type' | 'match' | 'tags'>): string[] {
  const errors: string[] = [];
  const tags = Array.isArray(rule.tags) ? rule.tags : [];
  if (tags.length < MIN_TAG_TEMPLATES) errors.push(`at least ${MIN_TAG_TEMPLATES} tag template is required`);
  if (tags.length > MAX_TAG_TEMPLATES) errors.push(`at most ${MAX_TAG_TEMPLATES} tag templates are allowed, got ${tags.length}`);

  const regex = isRegexMatch(rule.match);
  const compiledOk = compileRuleMatch(rule.match);
  if (regex && !compiledOk.ok) errors.push(compiledOk.message);
  const groups = new Set(matchGroupNames(rule.match));

  tags.forEach((t, i) => {
    const at = `tags[${i}]`;
    if (typeof t?.template !== 'string' || t.template.length === 0) {
      errors.push(`${at}: template must not be empty`);
      return;
    }
    const parsed = parseTemplate(t.template);
    if ('error' in parsed) {
      errors.push(`${at}: template "${t.template}": ${parsed.error}`);
      return;
    }
    const bad = new Set<string>();
    let minLength = 0;
    for (const part of parsed.parts) {
      if (part.kind === 'text') {
        for (const ch of part.text) if (!TAG_CHAR.test(ch)) bad.add(ch);
        minLength += part.text.length;
      } else if (!groups.has(part.name)) {
        if (part.name === 'branch' && rule.type === 'branch') minLength += 1;
        else if (part.name === 'tag' && rule.type === 'tag') minLength += 1;
        else if (part.name === 'branch' || part.name === 'tag') {
          errors.push(`${at}: \${${part.name}} is only available in ${part.name} rules; this is a ${rule.type} rule`);
        } else if (regex && !compiledOk.ok) {
          // The regex error is reported once above; its groups are unknown.
        } else {
          const known = [...groups].concat(rule.type === 'branch' ? ['branch'] : ['tag']).map((n) => `\${${n}}`);
          errors.push(`${at}: unknown variable \${${part.name}}; available: ${known.join(', ')}`);
        }
      }
    }
    if (bad.size) {
      const list = [...bad].map((c) => JSON.stringify(c)).join(', ');
      errors.push(`${at}: template "${t.template}" contains ${list}, which can never appear in an image tag (allowed: letters, digits, _ . -)`);
    }
    const first = parsed.parts[0];
    if (first?.kind === 'text' && !/^[A-Za-z0-9_]/.test(first.text) && TAG_CHAR.test(first.text[0]!)) {
      errors.push(`${at}: template "${t.template}" starts with "${first.text[0]}"; an image tag must start with a letter, digit or _`);
    }
    if (t.buildTime !== undefined) {
      if (t.buildTime !== 'yyyyMMdd' && t.buildTime !== 'yyyyMMddHHmm') {
        errors.push(`${at}: buildTime must be "yyyyMMdd" or "yyyyMMddHHmm"`);
      } else {
        minLength += 1 + t.buildTime.length;
      }
    }
    if (t.timeZone !== undefined && !isValidTimeZone(t.timeZone)) {
      errors.push(`${at}: timeZone "${t.timeZone}" is not valid; use e.g. "UTC+8", "UTC-5:30", "+08:00", "UTC" or an IANA name like "Asia/Shanghai"`);
    }
    if (t.commitIdLength !== undefined && (!Number.isInteger(t.commitIdLength) || t.commitIdLength < 1 || t.commitIdLength > 40)) {
      errors.push(`${at}: commitIdLength must be an integer from 1 to 40, got ${String(t.commitIdLength)}`);
    } else if (wantsCommit(t)) {
      minLength += 1 + (t.commitIdLength ?? DEFAULT_COMMIT_ID_LENGTH);
    }
    if (minLength > MAX_TAG_LENGTH) {
      errors.push(`${at}: template "${t.template}" renders at least ${minLength} characters; an image tag has at most ${MAX_TAG_LENGTH}`);
    }
  });
  return errors;
}

/**
 * Everything knowable about a rule at creation: match, tag templates, path filters. (`semver` on
 * a branch rule is not an error; it simply never applies.)
 */
export function validateRuleSpec(rule: RuleSpec): string[] {
  const errors: string[] = [];
  const match = compileRuleMatch(rule.match);
  if (!match.ok) errors.push(match.message);
  // validateTagTemplates repeats a regex error; keep it once.
  for (const e of validateTagTemplates(rule)) if (!errors.includes(e)) errors.push(e);
  errors.push(...validatePathFilters(rule.paths ?? []));
  return errors;
}

// ---------------------------------------------------------------------------------------------
// Semver

// semver.org's grammar with an optional leading `v`; matched with RE2 (linear time).
const NUM = '(?:0|[1-9][0-9]*)';
const PRE_ID = '(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)';
const BUILD_ID = '[0-9A-Za-z-]+';
const SEMVER = RE2JS.compile(
  `v?(?P<major>${NUM})\\.(?P<minor>${NUM})\\.(?P<patch>${NUM})` +
    `(?:-(?P<pre>${PRE_ID}(?:\\.${PRE_ID})*))?(?:\\+(?P<build>${BUILD_ID}(?:\\.${BUILD_ID})*))?`,
);

/**
 * `v1.2.3`/`1.2.3` → `['1.2.3','1.2','1']`; a pre-release (`v1.2.3-rc.1`) → its full version only;
 * build metadata (`1.2.3+b.5`) → the full version only, with `+` (not allowed in tags) as `_`
 * (Helm's convention); not semver → `[]`.
 */
export function expandSemver(tag: string): string[] {
  const m = SEMVER.matcher(tag);
  if (!m.matches()) return [];
  const major = m.group('major')!;
  const minor = m.group('minor')!;
  const patch = m.group('patch')!;
  const pre = m.group('pre');
  const build = m.group('build');
  const full = `${major}.${minor}.${patch}${pre ? `-${pre}` : ''}${build ? `_${build}` : ''}`;
  if (full.length > MAX_TAG_LENGTH) return [];
  if (pre || build) return [full];
  return [full, `${major}.${minor}`, major];
}

// ---------------------------------------------------------------------------------------------
// Path filters

function globToRegex(glob: string): string {
  let i = 0;
  let braceDepth = 0;
  let out = '';
  while (i < glob.length) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        const atSegmentStart = i === 0 || glob[i - 1] === '/';
        i += 2;
        while (glob[i] === '*') i += 1;
        if (atSegmentStart && glob[i] === '/') {
          out += '(?:[^/]*/)*'; // `**/`: zero or more whole directories
          i += 1;
        } else {
          out += '.*';
        }
      } else {
        out += '[^/]*';
        i += 1;
      }
    } else if (c === '?') {
      out += '[^/]';
      i += 1;
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) throw new Error(`unclosed "[" in "${glob}"`);
      let body = glob.slice(i + 1, end);
      let negate = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        negate = true;
        body = body.slice(1);
      }
      if (!body) throw new Error(`empty "[]" in "${glob}"`);
      if (body.includes('/')) throw new Error(`"/" cannot appear inside "[...]" in "${glob}"`);
      let cls = '';
      for (const ch of body) cls += ch === '\\' || ch === '[' || ch === ']' || ch === '^' ? `\\${ch}` : ch;
      out += negate ? `[^/${cls}]` : `[${cls}]`;
      i = end + 1;
    } else if (c === '{') {
      braceDepth += 1;
      out += '(?:';
      i += 1;
    } else if (c === ',' && braceDepth > 0) {
      out += '|';
      i += 1;
    } else if (c === '}' && braceDepth > 0) {
      braceDepth -= 1;
      out += ')';
      i += 1;
    } else if (c === '\\' && i + 1 < glob.length) {
      out += RE2JS.quote(glob[i + 1]!);
      i += 2;
    } else {
      out += RE2JS.quote(c);
      i += 1;
    }
  }
  if (braceDepth > 0) throw new Error(`unclosed "{" in "${glob}"`);
  return out;
}

interface PathFilter {
  exclude: boolean;
  re: RE2JS;
}

const filterCache = new Map<string, PathFilter>();

function compilePathFilter(pattern: string): PathFilter {
  const hit = filterCache.get(pattern);
  if (hit) return hit;
  let glob = pattern;
  const exclude = glob.startsWith('!');
  if (exclude) glob = glob.slice(1);
  glob = glob.replace(/^\/+/, '');
  if (!glob) throw new Error(`path filter "${pattern}" is empty`);
  const dirPrefix = glob.endsWith('/') || !/[*?[{]/.test(glob);
  glob = glob.replace(/\/+$/, '');
  let source = glob ? globToRegex(glob) : '';
  if (dirPrefix) source = source ? `${source}(?:/.*)?` : '.*';
  const filter = { exclude, re: RE2JS.compile(`(?s:${source})`) };
  if (filterCache.size >= 512) filterCache.clear();
  filterCache.set(pattern, filter);
  return filter;
}

/** Problems with a rule's path filters, as messages prefixed with `paths[i]`; empty when fine. */
export function validatePathFilters(paths: string[]): string[] {
  const errors: string[] = [];
  if (paths.length > MAX_PATH_FILTERS) errors.push(`at most ${MAX_PATH_FILTERS} path filters are allowed, got ${paths.length}`);
  paths.forEach((p, i) => {
    if (typeof p !== 'string' || !p.replace(/^!/, '').replace(/^\/+/, '')) {
      errors.push(`paths[${i}]: path filter must not be empty`);
      return;
    }
    if (p.length > MAX_PATH_FILTER_LENGTH) {
      errors.push(`paths[${i}]: path filter is longer than ${MAX_PATH_FILTER_LENGTH} characters`);
      return;
    }
    if (/[\u0000-\u001f]/.test(p)) {
      errors.push(`paths[${i}]: path filter contains a control character`);
      return;
    }
    if (p.split('/').includes('..')) {
      errors.push(`paths[${i}]: path filter must not contain ".." segments`);
      return;
    }
    try {
      compilePathFilter(p);
    } catch (err) {
      errors.push(`paths[${i}]: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
  return errors;
}

/**
 * True when at least one changed file matches an include pattern and no exclude (`!`) pattern.
 * No filters → true (every push builds). Only exclude patterns → everything else is included.
 * Throws for an invalid pattern (see validatePathFilters).
 */
export function matchesPathFilters(paths: string[], changedFiles: string[]): boolean {
  if (paths.length === 0) return true;
  const filters = paths.map(compilePathFilter);
  const includes = filters.filter((f) => !f.exclude);
  const excludes = filters.filter((f) => f.exclude);
  return changedFiles.some((raw) => {
    const file = raw.replace(/^\/+/, '');
    const included = includes.length === 0 || includes.some((f) => f.re.testExact(file));
    return included && !excludes.some((f) => f.re.testExact(file));
  });
}
