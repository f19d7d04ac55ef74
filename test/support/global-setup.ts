// Starts the real stack once for every integration and e2e file: Temporal dev server, buildkitd
// (amd64 + arm64 through QEMU), a CNCF Distribution registry with the busybox base image, and
// Postgres. Ports differ from `npm start`'s so a running Kiln is not disturbed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startStack, type Stack } from '../../infra/stack';

export interface TestStack {
  dataDir: string;
  temporalAddress: string;
  temporalUiUrl: string | null;
  registry: string;
  buildkit: Stack['buildkit'];
  postgresUrl: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    stack: TestStack;
  }
}

/**
 * KILN_TEST_PORT_OFFSET shifts every port (and those test files start themselves), so two test
 * runs on one machine (two clones, two engineers) do not collide.
 */
export const TEST_PORT_OFFSET = Number(process.env.KILN_TEST_PORT_OFFSET ?? 0) || 0;

export const TEST_PORTS = {
  temporal: 27233 + TEST_PORT_OFFSET,
  temporalUi: 28233 + TEST_PORT_OFFSET,
  registry: 25000 + TEST_PORT_OFFSET,
  postgres: 25432 + TEST_PORT_OFFSET,
};

export default async function setup(project: TestProject) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kiln-test-'));
  const started = Date.now();
  const stack = await startStack({
    dataDir,
    ports: TEST_PORTS,
    withPostgres: true,
    // .ci/run and `npm test` run infra/setup-tools.sh before vitest.
    ensureTools: false,
    log: (m) => console.log(`[stack] ${m}`),
  });
  console.log(`[stack] ready in ${((Date.now() - started) / 1000).toFixed(1)}s (${dataDir})`);
  project.provide('stack', {
    dataDir,
    temporalAddress: stack.temporalAddress,
    temporalUiUrl: stack.temporalUiUrl,
    registry: stack.registry,
    buildkit: stack.buildkit,
    postgresUrl: stack.postgresUrl!,
  });
  return async () => {
    await stack.stop();
    rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
  };
}
