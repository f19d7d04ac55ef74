// The shared names hold everywhere they are written down: the compose file, the database enums,
// the workflow's non-retryable list.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { classifyBuildFailure } from '../../activities/build-errors';
import { builds, buildPlatforms } from '../../db/schema';
import { BUILD_PHASES, BUILD_STATUSES, CREATION_METHODS, PLATFORM_STATUSES, TRIGGERS } from '../../domain/builds';
import { BUILD_ERROR_CODES, BUILD_ERRORS, isBuildErrorCode, USER_FAULT_CODES, userFault } from '../../domain/errors';
import { OCI_TAG_RE } from '../../domain/oci';
import { isValidOciTag } from '../../domain/rules';
import { KILN_SEARCH_ATTRIBUTES, searchAttributeFlags } from '../../domain/temporal';
import { USER_FAULT_TYPES } from '../../workflows/image-build';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('search attributes', () => {
  it('the compose file registers exactly the attributes the code uses', () => {
    const compose = readFileSync(path.join(ROOT, 'infra/docker-compose.yml'), 'utf8');
    const registered = [...compose.matchAll(/--search-attribute=(\S+)/g)].map((m) => m[1]);
    expect(registered).toEqual(searchAttributeFlags());
    expect(searchAttributeFlags()).toEqual(KILN_SEARCH_ATTRIBUTES.map((a) => `${a.name}=Keyword`));
  });
});

describe('build statuses, phases and triggers', () => {
  it('feed the database column enums', () => {
    expect(builds.status.enumValues).toEqual([...BUILD_STATUSES]);
    expect(builds.phase.enumValues).toEqual([...BUILD_PHASES]);
    expect(builds.trigger.enumValues).toEqual([...TRIGGERS]);
    expect(builds.creationMethod.enumValues).toEqual([...CREATION_METHODS]);
    expect(buildPlatforms.status.enumValues).toEqual([...PLATFORM_STATUSES]);
  });
});

describe('error codes', () => {
  it('the workflow never retries a user fault, including the codes it used to miss', () => {
    expect(USER_FAULT_TYPES).toEqual(USER_FAULT_CODES);
    for (const code of ['source_not_found', 'registry_auth_unavailable', 'not_found', 'step_failed']) {
      expect(USER_FAULT_TYPES).toContain(code);
    }
    // Outcomes are not failure types an activity raises.
    for (const code of ['canceled', 'timed_out', 'internal_error', 'superseded']) expect(USER_FAULT_TYPES).not.toContain(code);
  });

  it('userFault is a non-retryable ApplicationFailure typed with its code', () => {
    const failure = userFault('tag_immutable', 'taken');
    expect(failure).toMatchObject({ type: 'tag_immutable', message: 'taken', nonRetryable: true });
  });

  it('knows only its own codes', () => {
    expect(BUILD_ERROR_CODES).toHaveLength(Object.keys(BUILD_ERRORS).length);
    expect(isBuildErrorCode('step_failed')).toBe(true);
    expect(isBuildErrorCode('made_up')).toBe(false);
    expect(isBuildErrorCode('toString')).toBe(false);
  });

  it('every code the build-failure classifier emits is a user fault in the list', () => {
    const samples = [
      ['Dockerfile:3', 'error: failed to solve: dockerfile parse error on line 3: unknown instruction: RUNN'],
      ['error: failed to solve: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3'],
      ['error: failed to solve: failed to compute cache key: "/nope" not found'],
      ['error: failed to solve: something else entirely'],
    ];
    for (const lines of samples) {
      const failure = classifyBuildFailure(lines, { code: 1, signal: null });
      expect(failure.retryable).toBe(false);
      expect(USER_FAULT_CODES).toContain(failure.code);
    }
  });
});

describe('the OCI tag grammar', () => {
  it('is one rule for the API, the rules and the activities', () => {
    for (const tag of ['v1', '_x', 'a'.repeat(128), 'a'.repeat(129), '.v1', '-v1', 'v1/x', '']) {
      expect(isValidOciTag(tag)).toBe(OCI_TAG_RE.test(tag));
    }
    expect(OCI_TAG_RE.test('a'.repeat(128))).toBe(true);
    expect(OCI_TAG_RE.test('a'.repeat(129))).toBe(false);
  });
});

describe('baseImagesFromSteps', () => {
  it("reads the images a build pulled from BuildKit's FROM vertexes, once each", async () => {
    const { baseImagesFromSteps } = await import('../../domain/oci');
    const d1 = `sha256:${'a'.repeat(64)}`;
    const d2 = `sha256:${'b'.repeat(64)}`;
    expect(
      baseImagesFromSteps([
        '[internal] load metadata for 127.0.0.1:5000/base/busybox:latest',
        `[1/3] FROM 127.0.0.1:5000/base/busybox:latest@${d1}`,
        `[builder 1/2] FROM 127.0.0.1:5000/team/tools:v2@${d2}`,
        `[stage-2 1/1] FROM 127.0.0.1:5000/base/busybox:latest@${d1}`,
        `[2/3] RUN echo FROM x:y@${d2}`,
        `[3/3] FROM pinned.example/app@${d2}`,
      ]),
    ).toEqual([
      { image: '127.0.0.1:5000/base/busybox:latest', digest: d1 },
      { image: '127.0.0.1:5000/team/tools:v2', digest: d2 },
      { image: 'pinned.example/app', digest: d2 },
    ]);
  });
});
