// The life of a build on the real stack (Temporal, buildkitd, registry, Postgres): watching it
// live, cancelling it mid-RUN, failures a person can act on, the time limit, idempotency, and
// what operators see in Temporal.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { findProcesses, waitFor } from '../support/processes';
import { fetchManifest, listTags } from '../support/registry';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { readSse, type SseEvent } from '../support/sse';

let kiln: TestKiln;
const nonce = randomBytes(3).toString('hex');

beforeAll(async () => {
  kiln = await startTestKiln({ db: 'postgres' });
});
afterAll(async () => {
  await kiln?.close();
});

const base = () => `${kiln.registry}/base/busybox`;

async function submit(body: Record<string, unknown>): Promise<{ buildId: string; workflowId: string }> {
  const res = await kiln.api('/api/v1/builds', { json: { platforms: ['linux/amd64'], ...body } });
  expect(res.status, await res.clone().text()).toBe(202);
  return res.json();
}

/** A `sleep` whose argument no other process on the machine has. */
const uniqueSleep = () => String(100_000 + randomBytes(3).readUIntBE(0, 3));

describe('live logs and the build view', () => {
  let buildId: string;
  const repo = `life/live-${nonce}`;

  it('streams every step and log line over SSE as BuildKit produces them, in order, then ends with the build', async () => {
    const dockerfile = `FROM ${base()}\nRUN echo "step-one-start ${nonce}"; sleep 2; echo "step-one-end ${nonce}"\nRUN echo "second-step ${nonce}"\n`;
    ({ buildId } = await submit({ repository: repo, dockerfile, platforms: ['linux/amd64', 'linux/arm64'], tags: ['v1'] }));
    const res = await kiln.api(`/api/v1/builds/${buildId}/logs?follow=1`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);

    // Meanwhile the view shows where the build is.
    const seen = { building: false, runningPlatforms: 0 };
    const watching = (async () => {
      for (;;) {
        const v = await (await kiln.api(`/api/v1/builds/${buildId}`)).json();
        if (v.status === 'running' && v.phase === 'building') seen.building = true;
        seen.runningPlatforms = Math.max(seen.runningPlatforms, v.platforms.filter((p: any) => p.status === 'running').length);
        if (['succeeded', 'failed', 'canceled', 'timed_out'].includes(v.status)) return;
        await new Promise((r) => setTimeout(r, 150));
      }
    })();

    const events: SseEvent[] = [];
    for await (const ev of readSse(res)) {
      events.push(ev);
      if (ev.event === 'end') break;
    }
    await watching;
    const end = events.at(-1)!;
    expect(end).toMatchObject({ event: 'end', data: 'succeeded' });
    const chunks = events.filter((e) => e.event === 'log');
    // Each event holds the lines of one stored chunk; taken apart, one entry per line.
    const logs = chunks.flatMap((e) => e.data.split('\n').map((data) => ({ ...e, data })));

    // Exactly the stored log, line for line, with increasing ids (resumable with Last-Event-ID).
    const text = await (await kiln.api(`/api/v1/builds/${buildId}/logs`)).text();
    expect(logs.map((e) => e.data)).toEqual(text.trimEnd().split('\n'));
    const ids = chunks.map((e) => Number(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(ids.length);

    // Live, not replayed at the end: the RUN's first line arrived while it still slept.
    for (const platform of ['linux/amd64', 'linux/arm64']) {
      const at = (needle: string) => logs.find((e) => e.data.startsWith(`[${platform}]`) && e.data.endsWith(needle));
      const start = at(`step-one-start ${nonce}`);
      const stop = at(`step-one-end ${nonce}`);
      expect(start && stop, `${platform} output in the stream`).toBeTruthy();
      expect(stop!.receivedAt - start!.receivedAt).toBeGreaterThanOrEqual(1500);
      expect(end.receivedAt - start!.receivedAt).toBeGreaterThanOrEqual(1500);
      // Each step is announced before its output, and its output before it is done.
      const step = logs.findIndex((e) => e.data.startsWith(`[${platform}]`) && /#\d+ \[2\/3\] RUN echo "step-one-start/.test(e.data));
      const n = /#(\d+) /.exec(logs[step]!.data)![1];
      const out = logs.indexOf(start!);
      const done = logs.findIndex((e, i) => i > out && e.data.startsWith(`[${platform}] #${n} DONE`));
      expect(step).toBeGreaterThanOrEqual(0);
      expect(step).toBeLessThan(out);
      expect(out).toBeLessThan(done);
    }
    expect(logs.at(-1)!.data).toContain('build succeeded');
    expect(seen.building).toBe(true);
    expect(seen.runningPlatforms).toBe(2);
  });

  it('GET /builds/:id shows each step with its cached flag and duration, and per-platform progress', async () => {
    const view = await (await kiln.api(`/api/v1/builds/${buildId}`)).json();
    expect(view.status).toBe('succeeded');
    expect(view.phase).toBeNull();
    for (const p of view.platforms) {
      const sleepStep = p.steps.find((s: any) => /RUN echo "step-one-start/.test(s.name));
      expect(sleepStep).toMatchObject({ cached: false, durationMs: expect.any(Number) });
      expect(sleepStep.durationMs).toBeGreaterThanOrEqual(1900);
      expect(p.progress.totalSteps).toBe(p.steps.length);
      expect(p.progress.completedSteps).toBe(p.progress.totalSteps);
    }

    // The same Dockerfile again is served from cache, and says so.
    const again = await submit({
      repository: repo,
      dockerfile: `FROM ${base()}\nRUN echo "step-one-start ${nonce}"; sleep 2; echo "step-one-end ${nonce}"\nRUN echo "second-step ${nonce}"\n`,
      tags: ['v2'],
    });
    const cached = await waitForBuild(kiln, again.buildId);
    expect(cached.status).toBe('succeeded');
    const runSteps = cached.platforms[0].steps.filter((s: any) => /^\[\d\/3\] RUN/.test(s.name));
    expect(runSteps).toHaveLength(2);
    for (const s of runSteps) expect(s.cached).toBe(true);
    expect(cached.platforms[0].cacheHits).toBeGreaterThanOrEqual(2);
  });

  it('cancelling a build that succeeded is a 409', async () => {
    const res = await kiln.api(`/api/v1/builds/${buildId}/cancel`, { method: 'POST' });
    expect(res.status).toBe(409);
    expect((await res.json()).error).toMatchObject({ code: 'conflict', details: { status: 'succeeded' } });
  });
});

describe('cancel', () => {
  it('stops the solve on the daemon: the RUN processes are gone, the build is canceled within 10 s, no tag is pushed', async () => {
    const repo = `life/cancel-${nonce}`;
    const arg = uniqueSleep();
    const { buildId, workflowId } = await submit({
      repository: repo,
      dockerfile: `FROM ${base()}\nRUN echo "going to sleep"; sleep ${arg}\n`,
      platforms: ['linux/amd64', 'linux/arm64'],
      tags: ['never', 'latest'],
    });
    // Both platforms are inside their RUN (arm64 under QEMU): the same command line, twice.
    await waitFor('both RUN processes', () => findProcesses(`sleep ${arg}`).length >= 2, 90_000);
    expect((await (await kiln.api(`/api/v1/builds/${buildId}`)).json()).status).toBe('running');

    const t0 = Date.now();
    const res = await kiln.api(`/api/v1/builds/${buildId}/cancel`, { method: 'POST' });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ buildId, status: 'running' });
    const build = await waitForBuild(kiln, buildId, 10_000);
    const canceledMs = Date.now() - t0;
    await waitFor('the RUN processes to be gone', () => findProcesses(`sleep ${arg}`).length === 0, 10_000);
    const goneMs = Date.now() - t0;
    console.log(`[cancel] canceled after ${canceledMs} ms, RUN processes gone after ${goneMs} ms`);
    expect(goneMs).toBeLessThan(10_000);

    expect(build.status).toBe('canceled');
    expect(build.error).toEqual({ code: 'canceled', message: 'The build was canceled' });
    expect(build.platforms.map((p: any) => p.status)).toEqual(['canceled', 'canceled']);
    expect(build.pushedTags).toEqual([]);
    expect(build.manifestDigest).toBeNull();
    // The registry's own view: nothing tagged.
    expect(await listTags(kiln.registry, repo)).toEqual([]);
    expect(await fetchManifest(kiln.registry, repo, 'never')).toBeNull();

    // Again: harmless.
    const twice = await kiln.api(`/api/v1/builds/${buildId}/cancel`, { method: 'POST' });
    expect(twice.status).toBe(202);
    expect(await twice.json()).toEqual({ buildId, status: 'canceled' });

    // Temporal: the workflow ended Canceled, and operators can find it by status.
    const desc = await kiln.client.workflow.getHandle(workflowId).describe();
    expect(desc.status.name).toBe('CANCELLED');
    expect(desc.searchAttributes.KilnStatus).toEqual(['canceled']);
    const logs = await (await kiln.api(`/api/v1/builds/${buildId}/logs`)).text();
    expect(logs).toContain('going to sleep');
    expect(logs).toContain('==> build canceled');
  });

  it('a build canceled right after it was submitted ends canceled, wherever it got to', async () => {
    const { buildId } = await submit({ repository: `life/cancel-${nonce}`, dockerfile: `FROM ${base()}\nRUN sleep ${uniqueSleep()}\n`, tags: ['q'] });
    const res = await kiln.api(`/api/v1/builds/${buildId}/cancel`, { method: 'POST' });
    expect(res.status).toBe(202);
    expect((await waitForBuild(kiln, buildId, 10_000)).status).toBe('canceled');
  });
});

describe('failures a person can act on', () => {
  const repo = `life/fail-${nonce}`;
  const failed: string[] = [];

  it.each([
    ['a Dockerfile syntax error', () => `FROM ${base()}\nRUN echo fine\nRUNN echo typo\n`, 'dockerfile_syntax', /^Dockerfile syntax error on line 3: unknown instruction: RUNN/, 'RUNN echo typo'],
    ['a missing COPY source', () => `FROM ${base()}\nCOPY missing-${nonce}.txt /x\n`, 'file_not_found', new RegExp(`^COPY at Dockerfile:2: "/missing-${nonce}.txt" was not found in the build context$`), `COPY missing-${nonce}.txt /x`],
    ['an unknown base image', () => `FROM ${kiln.registry}/nope/nothing-${nonce}:v1\nRUN true\n`, 'base_image_not_found', new RegExp(`^Base image [\\d.:]+/nope/nothing-${nonce}:v1 could not be pulled \\(not found\\) at Dockerfile:1$`), 'not found'],
    ['a failing RUN', () => `FROM ${base()}\nRUN echo ok\nRUN echo "about to fail ${nonce}" && exit 7\n`, 'step_failed', /^RUN at Dockerfile:3 exited with code 7$/, `about to fail ${nonce}`],
  ])('%s fails at once, never retried, with a code, a message and the output in the log', async (_what, dockerfile, code, message, inLog) => {
    const t0 = Date.now();
    const { buildId, workflowId } = await submit({ repository: repo, dockerfile: dockerfile(), platforms: ['linux/amd64', 'linux/arm64'], tags: ['v1'] });
    const build = await waitForBuild(kiln, buildId, 60_000);
    failed.push(workflowId);
    expect(build.status).toBe('failed');
    expect(build.error.code).toBe(code);
    expect(build.error.message).toMatch(message);
    expect(Date.now() - t0).toBeLessThan(30_000);
    const logs = await (await kiln.api(`/api/v1/builds/${buildId}/logs`)).text();
    expect(logs).toContain(inLog);
    expect(logs).toContain(`==> build failed: ${build.error.message}`);
    expect(logs).not.toMatch(/attempt \d/); // a retry announces its attempt
    const history = await kiln.client.workflow.getHandle(workflowId).fetchHistory();
    const attempts = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!.attempt);
    expect(attempts.every((a) => a === 1)).toBe(true);
    expect(await listTags(kiln.registry, repo)).toEqual([]);
  });

  it('operators find every failed build of the repository in Temporal by search attributes; the view links the Temporal UI', async () => {
    const query = `KilnRepository = "${repo}" AND KilnStatus = "failed"`;
    const ids = await waitFor('visibility to list the failed builds', async () => {
      const found: string[] = [];
      for await (const wf of kiln.client.workflow.list({ query })) found.push(wf.workflowId);
      return found.length >= failed.length ? found : null;
    }, 20_000, 500);
    expect(ids.sort()).toEqual([...failed].sort());
    const other: string[] = [];
    for await (const wf of kiln.client.workflow.list({ query: `KilnRepository = "${repo}" AND KilnStatus = "succeeded"` })) other.push(wf.workflowId);
    expect(other).toEqual([]);

    const view = await (await kiln.api(`/api/v1/builds/${failed[0]!.replace(/^build-/, '')}`)).json();
    expect(view.temporalUiUrl).toBe(`${inject('stack').temporalUiUrl!.replace(/\/+$/, '')}/namespaces/default/workflows/${failed[0]}`);
    const ui = await fetch(view.temporalUiUrl);
    expect(ui.status).toBe(200);
    expect(ui.headers.get('content-type')).toMatch(/text\/html/);
  });
});

describe('time limit', () => {
  it('a build that outlives timeoutMinutes ends timed_out, its RUN stopped, nothing pushed', async () => {
    const repo = `life/slow-${nonce}`;
    const arg = uniqueSleep();
    const t0 = Date.now();
    const { buildId, workflowId } = await submit({ repository: repo, dockerfile: `FROM ${base()}\nRUN sleep ${arg}\n`, tags: ['v1'], timeoutMinutes: 1 });
    await waitFor('the RUN process', () => findProcesses(`sleep ${arg}`).length > 0, 60_000);
    const build = await waitForBuild(kiln, buildId, 100_000);
    const tookMs = Date.now() - t0;
    console.log(`[timeout] timed_out after ${tookMs} ms (limit 60000 ms)`);
    expect(build.status).toBe('timed_out');
    expect(build.error).toEqual({ code: 'timed_out', message: 'The build exceeded its time limit' });
    expect(tookMs).toBeGreaterThanOrEqual(60_000);
    expect(tookMs).toBeLessThan(80_000);
    await waitFor('the RUN process to be gone', () => findProcesses(`sleep ${arg}`).length === 0, 10_000);
    expect(await listTags(kiln.registry, repo)).toEqual([]);
    expect((await kiln.client.workflow.getHandle(workflowId).describe()).searchAttributes.KilnStatus).toEqual(['timed_out']);
  }, 150_000);
});

describe('idempotency', () => {
  it('a used clientToken with a different request is a 409 and creates nothing', async () => {
    const body = { repository: `life/idem-${nonce}`, dockerfile: `FROM ${base()}\nRUN echo one\n`, tags: ['v1'], clientToken: `life-${nonce}` };
    const first = await submit(body);
    const list = async () => (await (await kiln.api(`/api/v1/builds?repository=life/idem-${nonce}`)).json()).items.length;
    const conflict = await kiln.api('/api/v1/builds', { json: { platforms: ['linux/amd64'], ...body, dockerfile: `FROM ${base()}\nRUN echo two\n` } });
    expect(conflict.status).toBe(409);
    expect((await conflict.json()).error).toMatchObject({ code: 'conflict', details: { clientToken: `life-${nonce}` } });
    expect(await list()).toBe(1);
    const same = await kiln.api('/api/v1/builds', { json: { platforms: ['linux/amd64'], ...body } });
    expect(await same.json()).toEqual(first);
    expect((await waitForBuild(kiln, first.buildId)).status).toBe('succeeded');
  });
});
