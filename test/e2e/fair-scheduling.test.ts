// Issue #10 point 1 on the real stack (Postgres, Temporal, buildkitd, registry): builds over the
// namespace's limit wait as `queued` with their place in the view and the log; another namespace's
// build gets the next free slot; a canceled waiting build frees its place; the number running
// never exceeds the limit (read from the build rows, not from timings).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';

describe('fair build slots', () => {
  let kiln: TestKiln;
  const suffix = randomBytes(3).toString('hex');
  const A = `fair-a-${suffix}`;
  const B = `fair-b-${suffix}`;

  beforeAll(async () => {
    // Two builds at once in the whole deployment; namespace A may use both.
    kiln = await startTestKiln({ db: 'postgres', buildCapacity: 2, components: ['api', 'control', 'build-linux-amd64'] });
    for (const name of [A, B]) expect((await kiln.api('/api/v1/namespaces', { json: { name } })).status).toBe(201);
    const limit = await kiln.api(`/api/v1/namespaces/${A}`, { method: 'PATCH', json: { maxConcurrentBuilds: 2 } });
    expect(limit.status).toBe(200);
    expect((await limit.json()).maxConcurrentBuilds).toBe(2);
  });
  afterAll(async () => {
    await kiln?.close();
  });

  /** A build whose one RUN sleeps `seconds`. */
  async function submit(namespace: string, n: number, seconds = 6): Promise<string> {
    const res = await kiln.api('/api/v1/builds', {
      json: {
        repository: `${namespace}/app`,
        dockerfile: `FROM ${kiln.registry}/base/busybox\nRUN sleep ${seconds} && echo build ${n}`,
        platforms: ['linux/amd64'],
        tags: [`v${n}`],
        noCache: true,
        timeoutMinutes: 10,
      },
    });
    expect(res.status).toBe(202);
    return (await res.json()).buildId;
  }
  const view = async (id: string) => (await kiln.api(`/api/v1/builds/${id}`)).json();
  async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, ms = 60_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await read();
      if (ok(v)) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it("queues A's extra builds with positions, gives B the next free slot, frees a canceled build's place, never runs more than the limit", async () => {
    // A1 ends well before A2, so "the first slot that frees" is A1's.
    const a = [await submit(A, 1, 8), await submit(A, 2, 20)];
    // A's first two hold both slots before A asks for more (which of two builds submitted in the
    // same instant asks first is a race of their workflow tasks, not an order to test).
    await until('A1 and A2 running', () => Promise.all(a.map(view)), (vs) => vs.every((v) => v.status === 'running'));
    a.push(await submit(A, 3), await submit(A, 4));
    const states = () => Promise.all(a.map(view));
    const seen = await until(
      'two of A running and two waiting with places 1 and 2',
      states,
      (vs) => vs.filter((v) => v.status === 'running').length === 2 && vs.filter((v) => v.queuePosition !== null).length === 2,
    );
    const waiting = seen.filter((v) => v.status === 'queued');
    expect(waiting.map((v) => v.queuePosition)).toEqual([1, 2]);
    expect(waiting.map((v) => v.id)).toEqual([a[2], a[3]]); // first come, first served

    // B asks while A holds both slots: B waits too, first in its own namespace.
    const b1 = await submit(B, 1);
    const bWaiting = await until('B1 waiting', () => view(b1), (v) => v.queuePosition !== null);
    expect(bWaiting).toMatchObject({ status: 'queued', queuePosition: 1 });

    // A4 is canceled while it waits: it never starts.
    expect((await kiln.api(`/api/v1/builds/${a[3]}/cancel`, { method: 'POST' })).status).toBe(202);
    const a4 = await waitForBuild(kiln, a[3]!);
    expect(a4.status).toBe('canceled');
    expect(a4.startedAt).toBeNull();
    expect(a4.queuePosition).toBeNull();

    const done = await Promise.all([a[0]!, a[1]!, a[2]!, b1].map((id) => waitForBuild(kiln, id)));
    for (const d of done) expect(d.status, JSON.stringify(d.error)).toBe('succeeded');
    const [a1, a2, a3, b] = done;
    const t = (s: string) => new Date(s).getTime();
    // B's build took the first slot that freed (A1's), ahead of A3 which asked before it; A3 got
    // the second one (B's own or A2's, whichever freed first).
    const frees = [a1, a2, b].map((d) => t(d.finishedAt)).sort((x, y) => x - y);
    expect(frees[0]).toBe(t(a1.finishedAt));
    expect(t(b.startedAt)).toBeGreaterThanOrEqual(frees[0]!);
    expect(t(b.startedAt)).toBeLessThan(frees[1]!);
    expect(t(a3.startedAt)).toBeGreaterThanOrEqual(frees[1]!);
    // Never more than two running: sweep the [startedAt, finishedAt] intervals of every build.
    const edges = done.flatMap((d) => [
      { at: t(d.startedAt), delta: 1 },
      { at: t(d.finishedAt), delta: -1 },
    ]);
    edges.sort((x, y) => x.at - y.at || x.delta - y.delta); // an end before a start at the same instant
    let running = 0;
    let most = 0;
    for (const e of edges) most = Math.max(most, (running += e.delta));
    expect(most).toBe(2);

    // The log says where each began to wait. The slot requests of two builds submitted one after
    // the other are independent activities and may reach the scheduler in either order: the one
    // that arrives first starts out first in line, and the other is put ahead of it if it was
    // submitted earlier (the places in the view above follow submission order).
    const log = async (id: string) => (await kiln.api(`/api/v1/builds/${id}/logs`)).text();
    expect(await log(a[2]!)).toContain(`==> waiting for a build slot: position 1 in namespace ${A}`);
    expect(await log(a[3]!)).toMatch(new RegExp(`==> waiting for a build slot: position [12] in namespace ${A}`));
    expect(await log(b1)).toContain(`==> waiting for a build slot: position 1 in namespace ${B}`);
    expect(await log(a[0]!)).not.toContain('waiting for a build slot');
  });

  it('raising the limit starts waiting builds at once; 422 above maxTimeoutMinutes changes nothing', async () => {
    const patch = (json: unknown) => kiln.api(`/api/v1/namespaces/${A}`, { method: 'PATCH', json });
    expect((await patch({ maxConcurrentBuilds: 1, maxTimeoutMinutes: 10 })).status).toBe(200);
    const tooLong = await kiln.api('/api/v1/builds', {
      json: { repository: `${A}/app`, dockerfile: `FROM ${kiln.registry}/base/busybox`, platforms: ['linux/amd64'], tags: ['x'], timeoutMinutes: 11 },
    });
    expect(tooLong.status).toBe(422);
    expect((await tooLong.json()).error.details).toMatchObject({ quota: 'maxTimeoutMinutes', limit: 10 });

    const first = await submit(A, 11, 10);
    // The first holds the one slot before the second asks: with a free slot, whichever request
    // reaches the scheduler first gets it, and CI once saw the second win (it then never waited).
    await until('the first running', () => view(first), (v) => v.status === 'running');
    const second = await submit(A, 12);
    await until('one running, one waiting', () => view(second), (v) => v.queuePosition === 1);
    expect((await patch({ maxConcurrentBuilds: 2 })).status).toBe(200);
    // With the new limit the second starts while the first still runs (its RUN sleeps 10 s).
    const started = await until('the second starts', () => view(second), (v) => v.status !== 'queued');
    const firstNow = await view(first);
    expect(started.status).toBe('running');
    expect(firstNow.status).toBe('running');
    for (const id of [first, second]) expect((await waitForBuild(kiln, id)).status).toBe('succeeded');
  });
});
