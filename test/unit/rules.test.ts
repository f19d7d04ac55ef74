import { describe, expect, it } from 'vitest';
import {
  compileRuleMatch,
  expandSemver,
  InvalidTagError,
  isRegexMatch,
  matchesPathFilters,
  matchRef,
  renderImageTags,
  sanitizeRefForTag,
  validatePathFilters,
  validateRuleSpec,
  validateTagTemplates,
  type RuleSpec,
} from '../../domain/rules';
import type { TagTemplate } from '../../domain/tag-template';
import { formatBuildTime, isValidTimeZone } from '../../domain/time-zones';

const COMMIT = 'd4ef3dc3b77a011a5779eec7efdd45e2cb1234ab';
const TIME = new Date('2020-10-15T08:25:00Z');

function rule(partial: Partial<RuleSpec> & Pick<RuleSpec, 'match'>): RuleSpec {
  return { type: 'branch', tags: [{ template: '${branch}' }], semver: false, paths: [], ...partial };
}

/** Matches and renders like a push would. */
function tagsFor(r: RuleSpec, name: string, opts: { commit?: string; time?: Date } = {}): string[] {
  const ref = { type: r.type, name };
  const m = matchRef(r, ref);
  if (!m) throw new Error(`${name} does not match ${r.match}`);
  return renderImageTags(r, { ref, groups: m.groups, commit: opts.commit ?? COMMIT, time: opts.time ?? TIME });
}

function renderError(fn: () => unknown): InvalidTagError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidTagError);
    return err as InvalidTagError;
  }
  throw new Error('expected InvalidTagError');
}

describe('the SPEC example', () => {
  it('release-(?<imageTag>\\w*) on release-v1 with ${imageTag}, yyyyMMddHHmm and 30', () => {
    const r = rule({
      match: 'release-(?<imageTag>\\w*)',
      tags: [{ template: '${imageTag}', buildTime: 'yyyyMMddHHmm', commitIdLength: 30 }],
    });
    expect(matchRef(r, { type: 'branch', name: 'release-v1' })).toEqual({ groups: { imageTag: 'v1' } });
    expect(tagsFor(r, 'release-v1')).toEqual(['v1-202010151625-d4ef3dc3b77a011a5779eec7efdd45']);
  });
});

describe('isRegexMatch', () => {
  it('treats plain names, slashes and dots as literal', () => {
    for (const m of ['main', 'release/v1', 'v1.2.3', 'feature-x_y', 'a.b.c']) expect(isRegexMatch(m)).toBe(false);
  });
  it('treats any regex metacharacter as a regex', () => {
    for (const m of ['release-.*', 'v\\d+', 'a|b', '(x)', '[ab]', 'a+', 'a?', 'a{2}', '^main', 'main$']) expect(isRegexMatch(m)).toBe(true);
  });
});

describe('compileRuleMatch', () => {
  it('accepts literals and RE2 regexes with named groups', () => {
    expect(compileRuleMatch('main')).toEqual({ ok: true });
    expect(compileRuleMatch('release-(?<imageTag>\\w*)')).toEqual({ ok: true });
    expect(compileRuleMatch('v(?P<major>\\d+)\\.(?P<minor>\\d+)')).toEqual({ ok: true });
  });
  it('explains invalid regexes', () => {
    for (const bad of ['release-(', '[a-', 'a{2,1}', '(?<x>a', '*a']) {
      const res = compileRuleMatch(bad);
      expect(res.ok).toBe(false);
      if (!res.ok) expect(res.message).toMatch(/not a valid regular expression/);
    }
  });
  it('refuses backtracking-only features (RE2 has none of them)', () => {
    for (const bad of ['(a)\\1', '(?=a)b', '(?!a)b', '(?<=a)b']) expect(compileRuleMatch(bad).ok).toBe(false);
  });
  it('refuses empty, over-long and too complex patterns', () => {
    expect(compileRuleMatch('').ok).toBe(false);
    const long = compileRuleMatch(`(${'a'.repeat(260)})`);
    expect(long.ok).toBe(false);
    if (!long.ok) expect(long.message).toMatch(/256/);
    expect(compileRuleMatch('a'.repeat(256)).ok).toBe(true);
    const complex = compileRuleMatch('\\w{1000}'.repeat(12));
    expect(complex.ok).toBe(false);
    expect(compileRuleMatch('(a{1000}){1000}').ok).toBe(false);
  });
  it('refuses a literal that can never be a git ref name', () => {
    for (const bad of ['main ', 'a..b', '/main', 'main/', 'x.lock', '-x', 'a/.b', 'v1.']) expect(compileRuleMatch(bad).ok).toBe(false);
  });
  it('cannot be made to hang: (a+)+$ against a long non-matching input returns', () => {
    const r = rule({ match: '(a+)+$' });
    expect(matchRef(r, { type: 'branch', name: `${'a'.repeat(50_000)}!` })).toBeNull();
    expect(matchRef(r, { type: 'branch', name: 'a'.repeat(50_000) })).not.toBeNull();
    const evil = rule({ match: '(x+x+)+y' });
    expect(matchRef(evil, { type: 'branch', name: 'x'.repeat(50_000) })).toBeNull();
  });
});

describe('matchRef', () => {
  it('matches literal names exactly', () => {
    const r = rule({ match: 'main' });
    expect(matchRef(r, { type: 'branch', name: 'main' })).toEqual({ groups: {} });
    expect(matchRef(r, { type: 'branch', name: 'main2' })).toBeNull();
    expect(matchRef(r, { type: 'branch', name: 'xmain' })).toBeNull();
    expect(matchRef(rule({ match: 'v1.2.3', type: 'tag' }), { type: 'tag', name: 'v1x2x3' })).toBeNull();
    expect(matchRef(rule({ match: 'release/v1' }), { type: 'branch', name: 'release/v1' })).not.toBeNull();
  });
  it('only matches refs of its own type', () => {
    expect(matchRef(rule({ match: 'main' }), { type: 'tag', name: 'main' })).toBeNull();
    expect(matchRef(rule({ match: 'v.*', type: 'tag' }), { type: 'branch', name: 'v1' })).toBeNull();
  });
  it('anchors regexes at both ends', () => {
    const r = rule({ match: 'release-.*' });
    expect(matchRef(r, { type: 'branch', name: 'release-x' })).not.toBeNull();
    expect(matchRef(r, { type: 'branch', name: 'prerelease-x' })).toBeNull();
    const v = rule({ match: 'v\\d+' });
    expect(matchRef(v, { type: 'branch', name: 'v12' })).not.toBeNull();
    expect(matchRef(v, { type: 'branch', name: 'v12-hotfix' })).toBeNull();
    // Alternation is anchored as a whole, whichever branch wins.
    const alt = rule({ match: 'a|ab' });
    expect(matchRef(alt, { type: 'branch', name: 'ab' })).not.toBeNull();
    expect(matchRef(alt, { type: 'branch', name: 'abc' })).toBeNull();
  });
  it('returns named groups, empty for groups that did not take part', () => {
    const r = rule({ match: 'release-(?<major>\\d+)(?:\\.(?<minor>\\d+))?' });
    expect(matchRef(r, { type: 'branch', name: 'release-3.4' })).toEqual({ groups: { major: '3', minor: '4' } });
    expect(matchRef(r, { type: 'branch', name: 'release-3' })).toEqual({ groups: { major: '3', minor: '' } });
  });
  it('keeps a group called __proto__ as a plain value', () => {
    const r = rule({ match: '(?<__proto__>.*)', tags: [{ template: 'x-${__proto__}' }] });
    expect(tagsFor(r, 'abc')).toEqual(['x-abc']);
  });
  it('never matches with an invalid regex', () => {
    expect(matchRef(rule({ match: 'release-(' }), { type: 'branch', name: 'release-(' })).toBeNull();
  });
});

describe('renderImageTags', () => {
  it('renders ${branch} and ${tag}', () => {
    expect(tagsFor(rule({ match: 'main' }), 'main')).toEqual(['main']);
    expect(tagsFor(rule({ type: 'tag', match: 'v.*', tags: [{ template: '${tag}' }] }), 'v1.0')).toEqual(['v1.0']);
  });

  it('turns / (and other impossible characters) in a branch into -', () => {
    expect(tagsFor(rule({ match: 'feature/.*' }), 'feature/x')).toEqual(['feature-x']);
    expect(tagsFor(rule({ match: '.*' }), 'user/jo@home+fix')).toEqual(['user-jo-home-fix']);
    expect(tagsFor(rule({ match: '(?<name>.*)', tags: [{ template: 'b-${name}' }] }), 'a/b')).toEqual(['b-a-b']);
    expect(sanitizeRefForTag('feature/x')).toBe('feature-x');
    expect(sanitizeRefForTag('ünï/çødé')).toBe('-n----d-');
  });

  it('appends time and commit only when asked, in template-time-commit order', () => {
    const r = rule({
      match: 'main',
      tags: [
        { template: 'plain' },
        { template: 'day', buildTime: 'yyyyMMdd' },
        { template: 'min', buildTime: 'yyyyMMddHHmm' },
        { template: 'c', commitIdLength: 8 },
        { template: 'both', buildTime: 'yyyyMMdd', commitIdLength: 1 },
      ],
    });
    expect(tagsFor(r, 'main')).toEqual(['plain', 'day-20201015', 'min-202010151625', 'c-d4ef3dc3', 'both-20201015-d']);
  });

  it('commit id: default 6 with commitId: true, full 40, off with commitId: false', () => {
    const r = rule({
      match: 'main',
      tags: [{ template: 'a', commitId: true }, { template: 'b', commitIdLength: 40 }, { template: 'c', commitIdLength: 12, commitId: false }],
    });
    expect(tagsFor(r, 'main')).toEqual(['a-d4ef3d', `b-${COMMIT}`, 'c']);
  });

  it('rejects a commit length out of range', () => {
    for (const n of [0, 41, 2.5, -1]) {
      const err = renderError(() => tagsFor(rule({ match: 'main', tags: [{ template: 'x', commitIdLength: n }] }), 'main'));
      expect(err.reason).toMatch(/1 to 40/);
    }
  });

  it('deduplicates, keeping order', () => {
    const r = rule({ match: 'main', tags: [{ template: 'latest' }, { template: '${branch}' }, { template: 'latest' }] });
    expect(tagsFor(r, 'main')).toEqual(['latest', 'main']);
  });

  it('named groups shadow branch/tag', () => {
    const r = rule({ match: 'x-(?<branch>.*)', tags: [{ template: '${branch}' }] });
    expect(tagsFor(r, 'x-y')).toEqual(['y']);
  });

  it('throws InvalidTagError with a reason when the result is not a valid OCI tag', () => {
    const dot = renderError(() => tagsFor(rule({ match: '.*' }), '.hidden'));
    expect(dot.tag).toBe('.hidden');
    expect(dot.reason).toMatch(/starts with "\."/);
    expect(dot.message).toContain('.hidden');

    const dash = renderError(() => tagsFor(rule({ match: '.*' }), '-x'));
    expect(dash.reason).toMatch(/starts with "-"/);

    const empty = renderError(() => tagsFor(rule({ match: 'v(?<rest>.*)', tags: [{ template: '${rest}' }] }), 'v'));
    expect(empty.reason).toMatch(/empty/);

    const long = renderError(() => tagsFor(rule({ match: '.*', tags: [{ template: '${branch}', commitIdLength: 40 }] }), 'b'.repeat(100)));
    expect(long.reason).toMatch(/141 characters/);
    expect(long.template).toBe('${branch}');
  });

  it('throws for variables it does not know', () => {
    const err = renderError(() => tagsFor(rule({ match: 'main', tags: [{ template: '${tag}' }] }), 'main'));
    expect(err.reason).toMatch(/unknown variable \$\{tag\}/);
  });

  it('adds semver expansions for semver tag rules', () => {
    const r = rule({ type: 'tag', match: 'v.*', semver: true, tags: [{ template: '${tag}' }, { template: 'latest' }] });
    expect(tagsFor(r, 'v1.2.3')).toEqual(['v1.2.3', 'latest', '1.2.3', '1.2', '1']);
    expect(tagsFor(r, 'v1.2.3-rc.1')).toEqual(['v1.2.3-rc.1', 'latest', '1.2.3-rc.1']);
    expect(tagsFor(r, 'vNext')).toEqual(['vNext', 'latest']);
    const plain = rule({ type: 'tag', match: '.*', semver: true, tags: [{ template: '${tag}' }] });
    expect(tagsFor(plain, '1.2.3')).toEqual(['1.2.3', '1.2', '1']);
    // semver off → no expansion
    expect(tagsFor({ ...r, semver: false }, 'v1.2.3')).toEqual(['v1.2.3', 'latest']);
  });
});

describe('expandSemver', () => {
  it('expands releases with or without v', () => {
    expect(expandSemver('v1.2.3')).toEqual(['1.2.3', '1.2', '1']);
    expect(expandSemver('1.2.3')).toEqual(['1.2.3', '1.2', '1']);
    expect(expandSemver('v0.10.0')).toEqual(['0.10.0', '0.10', '0']);
  });
  it('gives pre-releases and build metadata only the full version', () => {
    expect(expandSemver('v1.2.3-rc.1')).toEqual(['1.2.3-rc.1']);
    expect(expandSemver('1.0.0-alpha-beta.0a')).toEqual(['1.0.0-alpha-beta.0a']);
    expect(expandSemver('v1.2.3+build.5')).toEqual(['1.2.3_build.5']);
  });
  it('returns [] for anything that is not semver', () => {
    for (const t of ['v1.2', '1', 'v01.2.3', '1.02.3', 'release-1.2.3', 'v1.2.3.4', 'V1.2.3', '1.2.3-', '1.2.3-01', 'latest', '']) {
      expect(expandSemver(t)).toEqual([]);
    }
  });
});

describe('formatBuildTime', () => {
  it('defaults to UTC+8', () => {
    expect(formatBuildTime(TIME, 'yyyyMMddHHmm')).toBe('202010151625');
    expect(formatBuildTime(new Date('2020-12-31T16:30:00Z'), 'yyyyMMdd')).toBe('20210101');
  });
  it('takes offsets and UTC', () => {
    expect(formatBuildTime(TIME, 'yyyyMMddHHmm', 'UTC')).toBe('202010150825');
    expect(formatBuildTime(TIME, 'yyyyMMddHHmm', 'UTC+0')).toBe('202010150825');
    expect(formatBuildTime(TIME, 'yyyyMMddHHmm', 'UTC-5:30')).toBe('202010150255');
    expect(formatBuildTime(TIME, 'yyyyMMddHHmm', '+08:00')).toBe('202010151625');
    expect(formatBuildTime(TIME, 'yyyyMMddHHmm', 'UTC+0545')).toBe('202010151410');
    expect(formatBuildTime(new Date('2020-10-15T02:00:00Z'), 'yyyyMMdd', 'UTC-5')).toBe('20201014');
  });
  it('takes IANA names, with daylight saving', () => {
    expect(formatBuildTime(TIME, 'yyyyMMddHHmm', 'Asia/Shanghai')).toBe('202010151625');
    expect(formatBuildTime(TIME, 'yyyyMMddHHmm', 'America/New_York')).toBe('202010150425'); // EDT
    expect(formatBuildTime(new Date('2020-01-15T08:25:00Z'), 'yyyyMMddHHmm', 'America/New_York')).toBe('202001150325'); // EST
    expect(formatBuildTime(new Date('2020-10-15T16:05:00Z'), 'yyyyMMddHHmm', 'Asia/Tokyo')).toBe('202010160105');
    expect(formatBuildTime(new Date('2020-10-15T00:30:00Z'), 'yyyyMMddHHmm', 'Europe/London')).toBe('202010150130');
  });
  it('uses a template time zone when rendering', () => {
    const r = rule({ match: 'main', tags: [{ template: 'x', buildTime: 'yyyyMMddHHmm', timeZone: 'UTC' }] });
    expect(tagsFor(r, 'main')).toEqual(['x-202010150825']);
  });
  it('rejects invalid time zones', () => {
    for (const tz of ['Mars/Olympus', 'UTC+15', 'UTC+5:75', '8', '', 'utc+8:3']) expect(isValidTimeZone(tz)).toBe(false);
    for (const tz of ['UTC+8', 'utc-3', 'GMT', '+08:00', '-0330', 'Asia/Shanghai', 'Z']) expect(isValidTimeZone(tz)).toBe(true);
    expect(() => formatBuildTime(TIME, 'yyyyMMdd', 'Mars/Olympus')).toThrow(RangeError);
  });
});

describe('matchesPathFilters', () => {
  it('no filter → always', () => {
    expect(matchesPathFilters([], [])).toBe(true);
    expect(matchesPathFilters([], ['x'])).toBe(true);
  });
  it('svc/** matches anything below svc', () => {
    expect(matchesPathFilters(['svc/**'], ['svc/a.go'])).toBe(true);
    expect(matchesPathFilters(['svc/**'], ['svc/deep/er/a.go'])).toBe(true);
    expect(matchesPathFilters(['svc/**'], ['svc2/a.go', 'other/svc/a.go'])).toBe(false);
    expect(matchesPathFilters(['svc/**'], ['README.md', 'svc/x'])).toBe(true);
  });
  it('*.md matches at the root only; **/*.md at any depth', () => {
    expect(matchesPathFilters(['*.md'], ['README.md'])).toBe(true);
    expect(matchesPathFilters(['*.md'], ['docs/guide.md'])).toBe(false);
    expect(matchesPathFilters(['**/*.md'], ['docs/guide.md'])).toBe(true);
    expect(matchesPathFilters(['**/*.md'], ['README.md'])).toBe(true);
    expect(matchesPathFilters(['**/*.md'], ['a/b/c/d.md'])).toBe(true);
    expect(matchesPathFilters(['**/*.md'], ['a/b/c/d.mdx'])).toBe(false);
    expect(matchesPathFilters(['**.md'], ['a/b.md'])).toBe(true);
  });
  it('nested globs: *, ?, **/ in the middle, classes, braces', () => {
    expect(matchesPathFilters(['services/*/Dockerfile'], ['services/api/Dockerfile'])).toBe(true);
    expect(matchesPathFilters(['services/*/Dockerfile'], ['services/api/v2/Dockerfile'])).toBe(false);
    expect(matchesPathFilters(['services/**/Dockerfile'], ['services/Dockerfile'])).toBe(true);
    expect(matchesPathFilters(['services/**/Dockerfile'], ['services/api/v2/Dockerfile'])).toBe(true);
    expect(matchesPathFilters(['src/?.ts'], ['src/a.ts'])).toBe(true);
    expect(matchesPathFilters(['src/?.ts'], ['src/ab.ts', 'src//.ts'])).toBe(false);
    expect(matchesPathFilters(['v[0-9]/**'], ['v1/x'])).toBe(true);
    expect(matchesPathFilters(['v[!0-9]/**'], ['v1/x'])).toBe(false);
    expect(matchesPathFilters(['{api,web}/**'], ['web/index.ts'])).toBe(true);
    expect(matchesPathFilters(['{api,web}/**'], ['cli/index.ts'])).toBe(false);
  });
  it('a plain path or trailing slash is a directory prefix', () => {
    expect(matchesPathFilters(['svc'], ['svc/a/b'])).toBe(true);
    expect(matchesPathFilters(['svc/'], ['svc/a'])).toBe(true);
    expect(matchesPathFilters(['svc'], ['svc'])).toBe(true);
    expect(matchesPathFilters(['svc'], ['svcx/a'])).toBe(false);
    expect(matchesPathFilters(['/svc/**'], ['svc/a'])).toBe(true);
  });
  it('dots and regex characters are literal', () => {
    expect(matchesPathFilters(['a.b'], ['aXb'])).toBe(false);
    expect(matchesPathFilters(['a+(b)'], ['a+(b)'])).toBe(true);
    expect(matchesPathFilters(['a+(b)'], ['aa(b)'])).toBe(false);
  });
  it('! excludes', () => {
    expect(matchesPathFilters(['svc/**', '!svc/**/*.md'], ['svc/README.md'])).toBe(false);
    expect(matchesPathFilters(['svc/**', '!svc/**/*.md'], ['svc/README.md', 'svc/main.go'])).toBe(true);
    expect(matchesPathFilters(['!**/*.md'], ['docs/a.md'])).toBe(false);
    expect(matchesPathFilters(['!**/*.md'], ['main.go'])).toBe(true);
  });
  it('no changed files → no build', () => {
    expect(matchesPathFilters(['svc/**'], [])).toBe(false);
  });
  it('stays fast on hostile patterns', () => {
    const pattern = `${'*a'.repeat(40)}*b`;
    expect(matchesPathFilters([pattern], ['a'.repeat(20_000)])).toBe(false);
  });
});

describe('validatePathFilters', () => {
  it('accepts good filters and explains bad ones', () => {
    expect(validatePathFilters(['svc/**', '*.md', '!docs/**', '{a,b}/[xy]*'])).toEqual([]);
    const errors = validatePathFilters(['', 'a/[b', '{a,b', '../x', 'a[/]b']);
    expect(errors).toHaveLength(5);
    expect(errors[0]).toMatch(/^paths\[0\]: .*empty/);
    expect(errors[1]).toMatch(/^paths\[1\]: .*\[/);
    expect(errors[3]).toMatch(/\.\./);
  });
});

describe('validateTagTemplates', () => {
  const v = (type: 'branch' | 'tag', match: string, tags: TagTemplate[]) => validateTagTemplates({ type, match, tags });

  it('accepts valid templates, including ones whose validity depends on the ref', () => {
    expect(v('branch', 'release-(?<imageTag>\\w*)', [{ template: '${imageTag}', buildTime: 'yyyyMMddHHmm', commitIdLength: 30 }])).toEqual([]);
    expect(v('branch', '.*', [{ template: '${branch}' }, { template: 'latest' }])).toEqual([]);
    expect(v('tag', 'v(?P<ver>.*)', [{ template: '${ver}', timeZone: 'Asia/Shanghai', buildTime: 'yyyyMMdd' }])).toEqual([]);
    expect(v('branch', 'main', [{ template: '_x-${branch}.1' }])).toEqual([]);
  });

  it('needs 1 to 5 templates', () => {
    expect(v('branch', 'main', [])[0]).toMatch(/at least 1/);
    expect(v('branch', 'main', Array.from({ length: 6 }, (_, i) => ({ template: `t${i}` })))[0]).toMatch(/at most 5/);
  });

  it('rejects empty and malformed templates', () => {
    expect(v('branch', 'main', [{ template: '' }])[0]).toMatch(/tags\[0\]: template must not be empty/);
    expect(v('branch', 'main', [{ template: 'x-${branch' }])[0]).toMatch(/unclosed/);
    expect(v('branch', 'main', [{ template: 'x-${a b}' }])[0]).toMatch(/not a valid variable/);
  });

  it('rejects unknown variables, and ${branch}/${tag} in the wrong rule type', () => {
    expect(v('branch', 'release-(?<imageTag>\\w*)', [{ template: '${imagetag}' }])[0]).toMatch(/unknown variable \$\{imagetag\}.*\$\{imageTag\}/);
    expect(v('branch', 'main', [{ template: '${tag}' }])[0]).toMatch(/\$\{tag\} is only available in tag rules/);
    expect(v('tag', 'v.*', [{ template: '${branch}' }])[0]).toMatch(/\$\{branch\} is only available in branch rules/);
    expect(v('branch', 'main', [{ template: '${imageTag}' }])[0]).toMatch(/unknown variable/);
  });

  it('rejects literal characters that can never be in a tag, and a bad first character', () => {
    expect(v('branch', 'main', [{ template: 'a/b' }])[0]).toMatch(/"\/"/);
    expect(v('branch', 'main', [{ template: 'v1 beta' }])[0]).toMatch(/" "/);
    expect(v('branch', 'main', [{ template: 'a:b+c' }])[0]).toMatch(/":", "\+"/);
    expect(v('branch', 'main', [{ template: '$branch' }])[0]).toMatch(/"\$"/);
    expect(v('branch', 'main', [{ template: '.x' }])[0]).toMatch(/starts with "\."/);
    expect(v('branch', 'main', [{ template: '-${branch}' }])[0]).toMatch(/starts with "-"/);
  });

  it('rejects templates that are always too long', () => {
    expect(v('branch', 'main', [{ template: 'x'.repeat(129) }])[0]).toMatch(/at least 129/);
    expect(v('branch', 'main', [{ template: 'x'.repeat(100), commitIdLength: 40 }])[0]).toMatch(/at least 141/);
    expect(v('branch', 'main', [{ template: 'x'.repeat(87), commitIdLength: 40 }])).toEqual([]);
  });

  it('checks commit length, build time and time zone', () => {
    for (const n of [0, 41, 1.5]) expect(v('branch', 'main', [{ template: 'x', commitIdLength: n }])[0]).toMatch(/commitIdLength must be an integer from 1 to 40/);
    expect(v('branch', 'main', [{ template: 'x', commitIdLength: 1 }, { template: 'y', commitIdLength: 40 }])).toEqual([]);
    expect(v('branch', 'main', [{ template: 'x', buildTime: 'yyyy' as 'yyyyMMdd' }])[0]).toMatch(/buildTime/);
    expect(v('branch', 'main', [{ template: 'x', buildTime: 'yyyyMMdd', timeZone: 'Mars/Olympus' }])[0]).toMatch(/timeZone "Mars\/Olympus"/);
  });

  it('reports an invalid regex once instead of every group it might have had', () => {
    const errors = v('branch', 'release-(?<x>', [{ template: '${x}' }]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/regular expression/);
  });
});

describe('validateRuleSpec', () => {
  it('collects match, template and path problems once each', () => {
    expect(validateRuleSpec(rule({ match: 'release-(?<v>\\d+)', tags: [{ template: 'r${v}' }], paths: ['svc/**'] }))).toEqual([]);
    const errors = validateRuleSpec(rule({ match: 'release-(', tags: [{ template: 'a/b' }], paths: ['{x'], semver: true }));
    expect(errors.filter((e) => /regular expression/.test(e))).toHaveLength(1);
    expect(errors.some((e) => /tags\[0\]/.test(e))).toBe(true);
    expect(errors.some((e) => /paths\[0\]/.test(e))).toBe(true);
    expect(errors).toHaveLength(3);
  });
});
