import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { classifyBuildFailure } from '../../activities/build-errors';
import { ProgressTracker } from '../../activities/progress';

const exit1 = { code: 1, signal: null };

// buildctl's plain stderr for each fault, as printed by BuildKit v0.26.0.
const excerpt = (line: number, text: string) => [`Dockerfile:${line}`, '--------------------', `   ${line} | >>> ${text}`, '--------------------'];

describe('classifyBuildFailure', () => {
  it('names the instruction, line and exit code of a failing RUN (real buildctl output)', () => {
    const t = new ProgressTracker();
    readFileSync(new URL('../fixtures/buildctl-run-exit3.stderr', import.meta.url), 'utf8').split('\n').forEach((l) => t.push(l));
    expect(classifyBuildFailure(t.plainOutput, exit1)).toEqual({
      code: 'step_failed',
      message: 'RUN at Dockerfile:3 exited with code 3',
      retryable: false,
    });
  });

  it.each([
    ['network.host', 'RUN --network=host'],
    ['security.insecure', 'RUN --security=insecure'],
  ])('reports a refused %s entitlement as a user fault', (ent, flag) => {
    const f = classifyBuildFailure([...excerpt(2, `${flag} true`), `error: failed to solve: ${ent} is not allowed`], exit1);
    expect(f).toMatchObject({ code: 'entitlement_denied', retryable: false });
    expect(f.message).toBe(`${flag} at Dockerfile:2 is not allowed: build steps run in Kiln's sandbox (entitlement ${ent} is off)`);
  });

  it('a RUN that prints "connection refused" and exits 1 is the user\'s fault, not a transient one', () => {
    const f = classifyBuildFailure(
      [
        '#5 0.120 wget: can\'t connect to remote host (127.0.0.1): Connection refused',
        ...excerpt(3, 'RUN wget -qO- http://127.0.0.1/ || (echo "connection refused"; exit 1)'),
        'error: failed to solve: process "/bin/sh -c wget -qO- http://127.0.0.1/ || (echo \"connection refused\"; exit 1)" did not complete successfully: exit code: 1',
      ],
      exit1,
    );
    expect(f).toEqual({ code: 'step_failed', message: 'RUN at Dockerfile:3 exited with code 1', retryable: false });
  });

  it('buildkitd refusing the connection is still transient', () => {
    const f = classifyBuildFailure(['error: failed to dial: dial unix /run/buildkit.sock: connect: connection refused'], exit1);
    expect(f.retryable).toBe(true);
  });

  it('reports a Dockerfile syntax error', () => {
    const f = classifyBuildFailure(
      [...excerpt(2, 'RUNN echo hi'), 'error: failed to solve: dockerfile parse error on line 2: unknown instruction: RUNN (did you mean RUN?)'],
      exit1,
    );
    expect(f).toEqual({ code: 'dockerfile_syntax', message: 'Dockerfile syntax error on line 2: unknown instruction: RUNN (did you mean RUN?)', retryable: false });
  });

  it('reports a missing COPY source', () => {
    const f = classifyBuildFailure(
      [...excerpt(2, 'COPY missing.txt /x'), 'error: failed to solve: failed to compute cache key: failed to calculate checksum of ref 87zti::x4box: "/missing.txt": not found'],
      exit1,
    );
    expect(f).toEqual({ code: 'file_not_found', message: 'COPY at Dockerfile:2: "/missing.txt" was not found in the build context', retryable: false });
  });

  it('reports a base image the registry refuses as access denied, not as missing', () => {
    const ref = '127.0.0.1:5000/alpha/private:v1';
    const f = classifyBuildFailure(
      [...excerpt(1, `FROM ${ref}`), `error: failed to solve: ${ref}: failed to resolve source metadata for ${ref}: pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed`],
      exit1,
    );
    expect(f).toMatchObject({ code: 'image_access_denied', retryable: false });
    expect(f.message).toMatch(new RegExp(`^Access to image ${ref.replace(/\./g, '\\.')} was denied at Dockerfile:1`));
  });

  it('reports an unknown base image', () => {
    const f = classifyBuildFailure(
      [...excerpt(1, 'FROM 127.0.0.1:5099/nope/nope:1'), 'error: failed to solve: 127.0.0.1:5099/nope/nope:1: failed to resolve source metadata for 127.0.0.1:5099/nope/nope:1: 127.0.0.1:5099/nope/nope:1: not found'],
      exit1,
    );
    expect(f.code).toBe('base_image_not_found');
    expect(f.message).toContain('127.0.0.1:5099/nope/nope:1');
    expect(f.retryable).toBe(false);
  });

  it('reports an unknown target stage', () => {
    expect(classifyBuildFailure(['error: failed to solve: target stage "zzz" could not be found'], exit1).code).toBe('invalid_target');
  });

  it.each([
    ['registry down while pulling', 'error: failed to solve: 127.0.0.1:5099/base/busybox: failed to resolve source metadata for 127.0.0.1:5099/base/busybox:latest: failed to do request: Head "http://127.0.0.1:5099/v2/base/busybox/manifests/latest": dial tcp 127.0.0.1:5099: connect: connection refused'],
    ['registry down while pushing', 'error: failed to solve: failed to push 127.0.0.1:5099/t/rd2: failed to do request: Head "http://127.0.0.1:5099/v2/t/rd2/blobs/sha256:c6": dial tcp 127.0.0.1:5099: connect: connection refused'],
    ['buildkitd dies mid-build', 'error: failed to receive status: rpc error: code = Unavailable desc = error reading from server: EOF'],
    // Seen in CI when the faults e2e test killed buildkitd mid-RUN (the errdefs form of the same status).
    ['buildkitd dies mid-build (errdefs form)', 'error: Unavailable: error reading from server: EOF'],
    ['buildkitd dies mid-solve (errdefs form)', 'error: failed to solve: Unavailable: error reading from server: EOF'],
    ['buildkitd down', 'error: listing workers for Build: failed to list workers: Unavailable: connection error: desc = "transport: Error while dialing: dial unix /tmp/exp/nope.sock: connect: no such file or directory"'],
  ])('retries when the %s', (_name, line) => {
    expect(classifyBuildFailure([line], exit1)).toMatchObject({ code: 'transient', retryable: true });
  });

  it('retries when buildctl died without an error line', () => {
    expect(classifyBuildFailure([], { code: null, signal: 'SIGKILL' })).toMatchObject({ retryable: true });
  });
});
