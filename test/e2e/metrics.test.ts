// Observability on the real stack: after a build, GET /metrics shows it in the build histograms.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';

type Sample = { name: string; labels: Record<string, string>; value: number };

function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of every sample of `name` whose labels include `where`. */
function value(samples: Sample[], name: string, where: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
}

describe('GET /metrics after a build', () => {
  let kiln: TestKiln;
  const metricsToken = 'e2e-metrics-token-0123456789';

  beforeAll(async () => {
    kiln = await startTestKiln({ metricsToken });
  });
  afterAll(async () => {
    await kiln?.close();
  });

  const scrape = async () => {
    const res = await fetch(`${kiln.url}/metrics`, { headers: { authorization: `Bearer ${metricsToken}` } });
    expect(res.status).toBe(200);
    return parseMetrics(await res.text());
  };

  it('counts the build in the build, phase, queue, cache and log metrics', async () => {
    expect((await fetch(`${kiln.url}/metrics`)).status).toBe(401);
    const before = await scrape();

    const submit = await kiln.api('/api/v1/builds', {
      headers: { 'x-request-id': 'e2e-metrics-build' },
      json: {
        repository: 'demo/metrics',
        dockerfile: `FROM ${kiln.registry}/base/busybox\nRUN echo measured > /m\n`,
        platforms: ['linux/amd64'],
        tags: ['v1'],
      },
    });
    expect(submit.status).toBe(202);
    expect(submit.headers.get('x-request-id')).toBe('e2e-metrics-build');
    const { buildId } = await submit.json();
    const build = await waitForBuild(kiln, buildId);
    expect(build.status).toBe('succeeded');

    const after = await scrape();
    const delta = (name: string, where: Record<string, string> = {}) => value(after, name, where) - value(before, name, where);

    expect(delta('kiln_builds_finished_total', { status: 'succeeded' })).toBeGreaterThanOrEqual(1);
    expect(delta('kiln_build_duration_seconds_count', { status: 'succeeded' })).toBeGreaterThanOrEqual(1);
    expect(delta('kiln_build_duration_seconds_sum', { status: 'succeeded' })).toBeGreaterThan(0);
    // The build's duration falls in the +Inf bucket and in no bucket below its own length.
    expect(delta('kiln_build_duration_seconds_bucket', { status: 'succeeded', le: '+Inf' })).toBeGreaterThanOrEqual(1);
    expect(delta('kiln_build_queue_wait_seconds_count')).toBeGreaterThanOrEqual(1);
    for (const phase of ['resolving', 'assembling', 'recording']) {
      expect(delta('kiln_build_phase_duration_seconds_count', { phase, platform: 'all', outcome: 'ok' }), phase).toBeGreaterThanOrEqual(1);
    }
    expect(delta('kiln_build_phase_duration_seconds_count', { phase: 'building', platform: 'linux/amd64', outcome: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(delta('kiln_build_phase_duration_seconds_count', { phase: 'building', platform: 'linux/arm64' })).toBe(0);
    // One RUN step (and its base): counted as cached or not, for amd64 only.
    expect(delta('kiln_build_steps_total', { platform: 'linux/amd64' })).toBeGreaterThanOrEqual(1);
    expect(delta('kiln_build_log_bytes_total', { platform: 'linux/amd64' })).toBeGreaterThan(0);
    // The database's view agrees and the HTTP metrics saw the submission by its route pattern.
    expect(value(after, 'kiln_builds_total', { status: 'succeeded' })).toBeGreaterThanOrEqual(1);
    expect(delta('kiln_http_requests_total', { method: 'POST', route: '/api/v1/builds', status: '202' })).toBe(1);
    expect(value(after, 'kiln_process_resident_memory_bytes')).toBeGreaterThan(0);
  });
});
