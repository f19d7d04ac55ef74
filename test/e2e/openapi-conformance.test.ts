// SPEC §4 "the document is the API": schemathesis (PyPI, pinned by infra/setup-tools.sh) generates
// requests from /api/v1/openapi.json, valid and invalid, and runs every check against a real Kiln
// (API and control worker on Postgres, real Temporal). It must find nothing: no 5xx for any input,
// every response as documented, every request the document allows accepted and every one it
// forbids refused.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { builds } from '../../db/schema';
import { toolPaths } from '../../infra/tools';
import { startTestKiln, type TestKiln } from '../support/kiln';

/** Per operation: with 31 operations, the coverage phase and stateful runs, over 6,000 cases (100 gave 4,777). */
const MAX_EXAMPLES = Number(process.env.KILN_SCHEMATHESIS_EXAMPLES ?? 130);
/** Bounds the run (schemathesis' own --max-time would keep fuzzing until it is spent). */
const TIMEOUT_MS = 15 * 60_000;
const MIN_CASES = 5000;

const ROOT = path.resolve(import.meta.dirname, '../..');
let kiln: TestKiln;

beforeAll(async () => {
  // No build workers: builds the fuzzer submits are accepted and wait; they are ended below.
  // No submission limit, so the fuzzer's builds reach past the 429 (which the document lists).
  kiln = await startTestKiln({ db: 'postgres', components: ['api', 'control'], submissionRate: { perMinute: 1_000_000, burst: 1_000_000 } });
});

afterAll(async () => {
  if (!kiln) return;
  // Leave no workflow behind for the next file's workers to pick up.
  const started = await kiln.db.db.select({ workflowId: builds.workflowId }).from(builds);
  for (const { workflowId } of started) {
    await kiln.client.workflow
      .getHandle(workflowId)
      .terminate('openapi conformance test finished')
      .catch(() => undefined);
  }
  await kiln.close();
});

it(
  'schemathesis --checks all finds nothing in at least 5,000 cases',
  async () => {
    const reportDir = mkdtempSync(path.join(tmpdir(), 'kiln-schemathesis-'));
    const args = [
      'run',
      `${kiln.url}/api/v1/openapi.json`,
      '--url',
      kiln.url,
      '-H',
      `Authorization: Bearer ${kiln.token}`,
      '--checks',
      'all',
      '--max-examples',
      String(MAX_EXAMPLES),
      // One worker: CPython 3.11 trips over its own AST recursion counter with threads in the coverage phase.
      '--workers',
      '1',
      '--seed',
      process.env.KILN_SCHEMATHESIS_SEED ?? String(Date.now() % 1_000_000),
      '--report',
      'json',
      '--report-dir',
      reportDir,
      '--no-color',
    ];
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      // cwd: the repo root, where schemathesis.toml is.
      const child = spawn(toolPaths().schemathesis, args, { cwd: ROOT, env: { ...process.env, NO_COLOR: '1' } });
      let out = '';
      const timer = setTimeout(() => child.kill('SIGTERM'), TIMEOUT_MS);
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('error', reject);
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve({ code: c, output: out });
      });
    });
    const summary = output.split('\n').filter((l) => /^=+ .* in [0-9.]+s =+$/.test(l.trim()));
    const reportFile = readdirSync(reportDir).find((f) => f.endsWith('.json'));
    const report = reportFile ? JSON.parse(readFileSync(path.join(reportDir, reportFile), 'utf8')) : null;
    const cases: number = report?.test_cases?.generated ?? 0;
    console.log(`[schemathesis] ${cases} cases: ${summary.at(-1) ?? '(no summary line)'}`);
    if (code !== 0) console.log(output.slice(-30_000));
    expect(code, 'schemathesis exit status (0: nothing found)').toBe(0);
    expect(report?.failures ?? [], 'failures').toEqual([]);
    expect(report?.errors ?? [], 'errors').toEqual([]);
    expect(cases, 'generated cases').toBeGreaterThanOrEqual(MIN_CASES);
  },
  TIMEOUT_MS + 60_000,
);
