import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendBuildLogs, finishBuild, getBuildLogs, updateBuild } from '../../../db/queries/builds';
import { buildBody, createHarness, DB_TIMEOUT, FakeBuildStarter, makeApp, TOKEN, type Harness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, DB_TIMEOUT);
afterAll(() => h?.close());

async function newBuild(): Promise<string> {
  const res = await h.call('/api/v1/builds', { json: buildBody({ repository: 'logs/web' }) });
  expect(res.status).toBe(202);
  return res.body.buildId;
}

interface SseEvent {
  event?: string;
  id?: string;
  data: string;
}

/** Reads SSE events from a streaming response body as they arrive. */
function sseReader(res: Response) {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const events: SseEvent[] = [];
  let done = false;

  const pump = (async () => {
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buffer += decoder.decode(value, { stream: true });
      let i: number;
      while ((i = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        const ev: SseEvent = { data: '' };
        const data: string[] = [];
        for (const line of block.split('\n')) {
          const [k, ...rest] = line.split(': ');
          const v = rest.join(': ');
          if (k === 'event') ev.event = v;
          else if (k === 'id') ev.id = v;
          else if (k === 'data') data.push(v);
        }
        ev.data = data.join('\n');
        events.push(ev);
      }
    }
    done = true;
  })();

  return {
    events,
    get done() {
      return done;
    },
    finished: pump,
    async until(pred: (events: SseEvent[]) => boolean, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (!pred(events)) {
        if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(events)}`);
        if (done) throw new Error(`stream ended early; got ${JSON.stringify(events)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    cancel: () => reader.cancel(),
  };
}

const follow = (id: string, headers: Record<string, string> = {}) =>
  h.app.request(`/api/v1/builds/${id}/logs?follow=1`, { headers: { authorization: `Bearer ${TOKEN}`, ...headers } });

describe('GET /builds/:id/logs', () => {
  it('returns text, one line per stored line, prefixed with the platform when there is one', async () => {
    const id = await newBuild();
    await appendBuildLogs(h.db, id, [
      { platform: null, line: 'resolving source' },
      { platform: 'linux/amd64', line: '#1 [1/2] FROM busybox' },
      { platform: 'linux/arm64', line: '#1 [1/2] FROM busybox' },
      { platform: null, line: 'build succeeded' },
    ]);
    const res = await h.call(`/api/v1/builds/${id}/logs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(res.text).toBe(
      'resolving source\n[linux/amd64] #1 [1/2] FROM busybox\n[linux/arm64] #1 [1/2] FROM busybox\nbuild succeeded\n',
    );
  });

  it('returns an empty text for a build without lines; 404 for unknown builds', async () => {
    const id = await newBuild();
    const res = await h.call(`/api/v1/builds/${id}/logs`);
    expect(res.status).toBe(200);
    expect(res.text).toBe('');
    expect((await h.call('/api/v1/builds/00000000-0000-4000-8000-000000000000/logs')).status).toBe(404);
    expect((await h.call('/api/v1/builds/zzz/logs?follow=1')).status).toBe(404);
  });

  it('follow=1 streams lines as they are written, then the end event with the final status', async () => {
    const id = await newBuild();
    await appendBuildLogs(h.db, id, [
      { platform: null, line: 'one' },
      { platform: 'linux/amd64', line: 'two' },
    ]);
    const res = await follow(id);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const sse = sseReader(res);
    await sse.until((e) => e.length >= 2);

    await updateBuild(h.db, id, { status: 'running' });
    await appendBuildLogs(h.db, id, [{ platform: 'linux/arm64', line: 'three' }]);
    await sse.until((e) => e.length >= 3);
    expect(sse.done).toBe(false);

    // The last lines and the terminal status land together: every line still comes before `end`.
    await appendBuildLogs(h.db, id, [
      { platform: null, line: 'four' },
      { platform: null, line: 'build succeeded' },
    ]);
    await finishBuild(h.db, id, { status: 'succeeded' });
    await sse.finished;

    const seqs = (await getBuildLogs(h.db, id)).map((l) => String(l.seq));
    expect(sse.events).toEqual([
      { event: 'log', id: seqs[0], data: 'one' },
      { event: 'log', id: seqs[1], data: '[linux/amd64] two' },
      { event: 'log', id: seqs[2], data: '[linux/arm64] three' },
      { event: 'log', id: seqs[3], data: 'four' },
      { event: 'log', id: seqs[4], data: 'build succeeded' },
      { event: 'end', data: 'succeeded' },
    ]);
  });

  it('resumes after Last-Event-ID', async () => {
    const id = await newBuild();
    await appendBuildLogs(h.db, id, ['a', 'b', 'c', 'd'].map((line) => ({ platform: null, line })));
    await finishBuild(h.db, id, { status: 'failed', errorCode: 'step_failed', errorMessage: 'x' });
    const seqs = (await getBuildLogs(h.db, id)).map((l) => String(l.seq));
    const sse = sseReader(await follow(id, { 'Last-Event-ID': seqs[1]! }));
    await sse.finished;
    expect(sse.events).toEqual([
      { event: 'log', id: seqs[2], data: 'c' },
      { event: 'log', id: seqs[3], data: 'd' },
      { event: 'end', data: 'failed' },
    ]);
    // Garbage in Last-Event-ID means from the start.
    const all = sseReader(await follow(id, { 'Last-Event-ID': 'nonsense' }));
    await all.finished;
    expect(all.events.map((e) => e.data)).toEqual(['a', 'b', 'c', 'd', 'failed']);
  });

  it('stops polling when the client goes away', async () => {
    const id = await newBuild();
    let selects = 0;
    const db = new Proxy(h.db, {
      get(target, prop, receiver) {
        if (prop === 'select') selects++;
        return Reflect.get(target, prop, receiver);
      },
    });
    const app = makeApp({ ...h.handle, db }, new FakeBuildStarter());
    const res = await app.request(`/api/v1/builds/${id}/logs?follow=1`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const sse = sseReader(res);
    await appendBuildLogs(h.db, id, [{ platform: null, line: 'hello' }]);
    await sse.until((e) => e.length >= 1);
    await sse.cancel();
    await sse.finished;
    await new Promise((r) => setTimeout(r, 300));
    const after = selects;
    await new Promise((r) => setTimeout(r, 800));
    expect(selects).toBe(after);
    expect(sse.events.map((e) => e.data)).toEqual(['hello']);
  });
});
