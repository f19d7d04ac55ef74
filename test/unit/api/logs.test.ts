import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finishBuild, updateBuild } from '../../../db/queries/builds';
import { appendBuildLogs, insertLogChunks, readLogChunksBySeq } from '../../../db/queries/logs';
import { createHarness, DB_TIMEOUT, FakeBuildStarter, makeApp, submitBuild, TOKEN, type Harness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, DB_TIMEOUT);
afterAll(() => h?.close());

const newBuild = () => submitBuild(h, 'logs/web');

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

const follow = (id: string, headers: Record<string, string> = {}, app = h.app) =>
  app.request(`/api/v1/builds/${id}/logs?follow=1`, { headers: { authorization: `Bearer ${TOKEN}`, ...headers } });

const seqsOf = async (id: string) => (await readLogChunksBySeq(h.db, id, { afterSeq: 0, limit: 1000 })).map((c) => String(c.seq));

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

    // One event per stored chunk: the last two lines were written together.
    const seqs = await seqsOf(id);
    expect(sse.events).toEqual([
      { event: 'log', id: seqs[0], data: 'one' },
      { event: 'log', id: seqs[1], data: '[linux/amd64] two' },
      { event: 'log', id: seqs[2], data: '[linux/arm64] three' },
      { event: 'log', id: seqs[3], data: 'four\nbuild succeeded' },
      { event: 'end', data: 'succeeded' },
    ]);
  });

  it('resumes after Last-Event-ID', async () => {
    const id = await newBuild();
    for (const line of ['a', 'b', 'c', 'd']) await appendBuildLogs(h.db, id, [{ platform: null, line }]);
    await finishBuild(h.db, id, { status: 'failed', errorCode: 'step_failed', errorMessage: 'x' });
    const seqs = await seqsOf(id);
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

  it('does not poll: an idle follower reads nothing until a chunk or a status change wakes it, and stops when the client goes away', async () => {
    const id = await newBuild();
    let selects = 0;
    const db = new Proxy(h.db, {
      get(target, prop, receiver) {
        if (prop === 'select') selects++;
        return Reflect.get(target, prop, receiver);
      },
    });
    const app = makeApp({ ...h.handle, db }, new FakeBuildStarter());
    const sse = sseReader(await follow(id, {}, app));
    await appendBuildLogs(h.db, id, [{ platform: null, line: 'hello' }]);
    await sse.until((e) => e.length >= 1);
    await new Promise((r) => setTimeout(r, 100));
    const idle = selects;
    await new Promise((r) => setTimeout(r, 1000));
    expect(selects).toBe(idle);
    await updateBuild(h.db, id, { status: 'running' }); // a status change wakes it too
    await new Promise((r) => setTimeout(r, 300));
    expect(selects).toBeGreaterThan(idle);
    await sse.cancel();
    await sse.finished;
    await new Promise((r) => setTimeout(r, 300));
    const after = selects;
    await appendBuildLogs(h.db, id, [{ platform: null, line: 'nobody reads this' }]);
    await new Promise((r) => setTimeout(r, 500));
    expect(selects).toBe(after);
    expect(sse.events.map((e) => e.data)).toEqual(['hello']);
  });

  it('caps live followers per build and per token (429), and frees the place when one leaves', async () => {
    const app = makeApp(h.handle, new FakeBuildStarter(), { config: { logFollowers: { perBuild: 2, perToken: 3 } } });
    const a = await newBuild();
    const b = await newBuild();
    const first = [await follow(a, {}, app), await follow(a, {}, app)];
    expect(first.map((r) => r.status)).toEqual([200, 200]);
    const third = await follow(a, {}, app);
    expect(third.status).toBe(429);
    expect(((await third.json()) as any).error.code).toBe('too_many_requests');
    expect(third.headers.get('retry-after')).toBe('5');
    // Another build: room for this token's third follower, not a fourth.
    const other = await follow(b, {}, app);
    expect(other.status).toBe(200);
    expect((await follow(b, {}, app)).status).toBe(429);
    const reader = sseReader(first[0]!);
    await reader.cancel();
    await reader.finished;
    await new Promise((r) => setTimeout(r, 100));
    const again = await follow(a, {}, app);
    expect(again.status).toBe(200);
    for (const r of [first[1]!, other, again]) await r.body!.cancel();
  });
});

describe('GET /builds/:id/logs of one platform', () => {
  // Every byte a build can print, in chunks the way the log sink stores them.
  const bytes = Buffer.concat([
    Buffer.from('#5 x\0y\n'),
    Buffer.from([0x23, 0x35, 0x20, 0xff, 0xfe, 0xc3, 0x0a]),
    Buffer.from('#5 10%\r50%\r100%\r\n'),
    Buffer.from(`#5 ${'z'.repeat(150_000)}\n`),
  ]);
  let id: string;
  beforeAll(async () => {
    id = await newBuild();
    const chunks = [bytes.subarray(0, 70_000), bytes.subarray(70_000, 140_000), bytes.subarray(140_000)];
    let offset = 0;
    for (const data of chunks) {
      await insertLogChunks(h.db, id, 'linux/arm64', [{ byteOffset: offset, data }]);
      offset += data.length;
    }
    await appendBuildLogs(h.db, id, [{ platform: null, line: '==> build succeeded' }]);
    await finishBuild(h.db, id, { status: 'succeeded' });
  });
  const get = async (query: string, headers: Record<string, string> = {}) =>
    await h.app.request(`/api/v1/builds/${id}/logs${query}`, { headers: { authorization: `Bearer ${TOKEN}`, ...headers } });
  const body = async (res: Response) => Buffer.from(await res.arrayBuffer());

  it('serves the stream byte for byte, and prefixes it line by line in the combined log', async () => {
    const res = await get('?platform=linux/arm64');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect((await body(res)).equals(bytes)).toBe(true);
    const combined = await body(await get(''));
    const lines = bytes.toString('latin1').split('\n').slice(0, -1);
    const expected = Buffer.from(`${lines.map((l) => `[linux/arm64] ${l}\n`).join('')}==> build succeeded\n`, 'latin1');
    expect(combined.equals(expected)).toBe(true);
    expect((await get('?platform=build').then(body)).toString()).toBe('==> build succeeded\n');
    expect((await get('?platform=linux/amd64').then(body)).length).toBe(0);
  });

  it('resumes from ?offset= or a Range header, across chunk boundaries', async () => {
    expect((await get('?platform=linux/arm64&offset=69990').then(body)).equals(bytes.subarray(69_990))).toBe(true);
    const ranged = await get('?platform=linux/arm64', { range: 'bytes=69990-140005' });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe(`bytes 69990-140005/${bytes.length}`);
    expect((await body(ranged)).equals(bytes.subarray(69_990, 140_006))).toBe(true);
    const open = await get('?platform=linux/arm64', { range: 'bytes=5-' });
    expect((await body(open)).equals(bytes.subarray(5))).toBe(true);
    const suffix = await get('?platform=linux/arm64', { range: 'bytes=-10' });
    expect((await body(suffix)).equals(bytes.subarray(-10))).toBe(true);
    expect((await get(`?platform=linux/arm64&offset=${bytes.length}`).then(body)).length).toBe(0);
  });

  it('416 past the end; 422 for an offset without a platform, 400 for an unknown platform', async () => {
    const past = await get('?platform=linux/arm64', { range: `bytes=${bytes.length}-` });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${bytes.length}`);
    expect((await get('?offset=3')).status).toBe(422);
    expect((await get('?platform=linux/s390x')).status).toBe(400);
    expect((await get('?platform=linux/arm64&offset=-1')).status).toBe(400);
  });

  it('follows one stream with SSE: text as UTF-8, a carriage return as U+240D', async () => {
    const sse = sseReader(await h.app.request(`/api/v1/builds/${id}/logs?follow=1&platform=linux/arm64`, { headers: { authorization: `Bearer ${TOKEN}` } }));
    await sse.finished;
    const text = sse.events.filter((e) => e.event === 'log').map((e) => e.data).join('\n');
    expect(text).toContain('#5 x\0y\n#5 \ufffd\ufffd\ufffd\n#5 10%\u240d50%\u240d100%\u240d\n#5 zzz');
    // Three chunks: the long line arrives in three events (two more line ends), the last newline is implied.
    expect(text.length).toBe(bytes.toString('utf8').length - 1 + 2);
    expect(sse.events.at(-1)).toEqual({ event: 'end', data: 'succeeded' });
  });
});
