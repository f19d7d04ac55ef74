import { describe, expect, it } from 'vitest';
import { redactSecrets, refNameProblem, validateRepoPath } from '../../activities/git';

describe('validateRepoPath', () => {
  it('accepts repository-relative paths; a leading / is the repo root', () => {
    for (const p of ['', '/', 'Dockerfile', '/svc/api', 'svc/api/', 'docker/Dockerfile.prod', './svc', 'a b/c', '.github/x', 'x..y/z']) {
      expect(validateRepoPath(p), p).toBeNull();
    }
  });
  it('refuses .. segments anywhere', () => {
    for (const p of ['..', '../x', 'a/../b', '/..', 'a/..', '/svc/../../etc']) expect(validateRepoPath(p)).toMatch(/\.\./);
  });
  it('refuses NUL, control characters, backslashes, drive letters and .git', () => {
    expect(validateRepoPath('a\0b')).toMatch(/NUL/);
    expect(validateRepoPath('a\nb')).toMatch(/control/);
    expect(validateRepoPath('a\\..\\b')).toMatch(/backslash/);
    expect(validateRepoPath('C:/x')).toMatch(/drive/);
    expect(validateRepoPath('.git/config')).toMatch(/\.git/);
    expect(validateRepoPath('/sub/.GIT')).toMatch(/\.git/);
    expect(validateRepoPath('x'.repeat(1025))).toMatch(/1024/);
  });
});

describe('refNameProblem', () => {
  it('accepts branch and tag names git accepts', () => {
    for (const n of ['main', 'feature/x', 'v1.2.3', 'release-v1', 'a_b']) expect(refNameProblem(n)).toBeNull();
  });
  it('refuses names that could be options or are not ref names', () => {
    for (const n of ['', '-x', '--upload-pack=x', 'a b', 'a..b', 'a~1', 'a^', 'a:b', 'x/', '/x', 'a.lock', '.x', 'a@{1}', 'a\\b']) {
      expect(refNameProblem(n), n).not.toBeNull();
    }
  });
});

describe('redactSecrets', () => {
  it('removes tokens, Authorization values and URL credentials', () => {
    const text = 'fatal: tok3n-abc at https://user:tok3n-abc@host/x.git with Authorization: Basic eHl6OmFiYw== and Authorization: Bearer zzz';
    const out = redactSecrets(text, ['tok3n-abc']);
    expect(out).not.toContain('tok3n-abc');
    expect(out).not.toContain('eHl6OmFiYw==');
    expect(out).not.toContain('zzz');
    expect(out).not.toContain('user:');
    expect(out).toContain('https://***@host/x.git');
  });
});
