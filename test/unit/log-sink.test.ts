import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dbLogStore, LOG_CHUNK_BYTES, LogSink, type LogStore } from '../../activities/log-sink';
import { getBuild } from '../../db/queries/builds';
import { readLogChunksByOffset } from '../../db/queries/logs';
import { createHarness, DB_TIMEOUT, submitBuild, type Harness } from './api/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, DB_TIMEOUT);
afterAll(() => h?.close());

const newBuild = () => submitBuild(h, 'sink/web');

async function stored(buildId: string, stream: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let from = 0; ; ) {
    const chunks = (await readLogChunksByOffset(h.db, buildId, stream, { fromOffset: from, limit: 100 })).filter((c) => c.byteOffset >= from);
    if (chunks.length === 0) return Buffer.concat(parts);
    for (const c of chunks) {
      expect(c.byteOffset).toBe(from); // contiguous: no hole, no overlap
      parts.push(c.data);
      from += c.data.length;
    }
  }
}

/** Output with everything a build can print, ~1 MiB in all. */
function output(): Buffer {
  const lines: Buffer[] = [];
  for (let i = 0; i < 20_000; i++) lines.push(Buffer.from(`#7 line ${i} \0 \x1b[31mred\x1b[0m 10%\r100%\r\n`));
  lines.push(Buffer.concat([Buffer.from([0xff, 0xc3]), Buffer.alloc(200_000, 0x78), Buffer.from('\n')]));
  return Buffer.concat(lines);
}

const fast = { maxBuildBytes: 64 * 1024 * 1024, intervalMs: 5, backoffMs: 1 };

describe('LogSink', () => {
  it('retries writes that fail, including one that committed but lost its answer, and stores every byte once', async () => {
    const buildId = await newBuild();
    const real = dbLogStore(h.db);
    let calls = 0;
    const flaky: LogStore = {
      ...real,
      async insertChunks(id, stream, chunks) {
        calls++;
        if (calls <= 3) throw new Error('connection reset');
        if (calls === 5) {
          await real.insertChunks(id, stream, chunks);
          throw new Error('connection lost after commit');
        }
        // A whole statement of 16 chunks fails every other time: the sink goes chunk by chunk.
        if (chunks.length > 1 && calls % 2 === 0) throw new Error('statement too large');
        return real.insertChunks(id, stream, chunks);
      },
    };
    const sink = new LogSink(flaky, buildId, 'linux/amd64', fast);
    const bytes = output();
    for (let i = 0; i < bytes.length; i += 50_000) {
      // Whole lines only, as the progress tracker hands them over.
      const end = Math.min(bytes.length, bytes.indexOf(0x0a, i + 50_000) + 1 || bytes.length);
      if (end > i) sink.pushBytes(bytes.subarray(i, end));
      i = end - 50_000;
    }
    await sink.flush();
    expect(calls).toBeGreaterThan(5);
    expect((await stored(buildId, 'linux/amd64')).equals(bytes)).toBe(true);
    expect((await getBuild(h.db, buildId))!.logIncomplete).toBe(false);
  });

  it('a chunk that cannot be stored for good marks the build and leaves a marker; the rest is kept', async () => {
    const buildId = await newBuild();
    const real = dbLogStore(h.db);
    const poisoned: LogStore = {
      ...real,
      async insertChunks(id, stream, chunks) {
        if (chunks.some((c) => c.data.includes('POISON'))) throw new Error('value too long for the disk');
        return real.insertChunks(id, stream, chunks);
      },
    };
    const sink = new LogSink(poisoned, buildId, 'linux/arm64', fast);
    const before = Buffer.from('#3 before\n');
    const bad = Buffer.from(`#3 POISON ${'p'.repeat(LOG_CHUNK_BYTES)}\n`); // a chunk of its own
    const after = Buffer.from('#3 after\n');
    sink.pushBytes(before);
    await sink.flush();
    sink.pushBytes(bad);
    await sink.flush();
    sink.pushBytes(after);
    await sink.flush();
    const text = (await stored(buildId, 'linux/arm64')).toString();
    expect(text).toMatch(/^#3 before\n==> log incomplete: \d+ bytes of linux\/arm64 output could not be stored \(value too long for the disk\)\n/);
    expect(text.endsWith('#3 after\n')).toBe(true);
    expect((await getBuild(h.db, buildId))!.logIncomplete).toBe(true);
  });

  it('ends a build at KILN_MAX_LOG_BYTES with a truncation marker, on whole lines, across platforms', async () => {
    const buildId = await newBuild();
    const store = dbLogStore(h.db);
    const amd = new LogSink(store, buildId, 'linux/amd64', { ...fast, maxBuildBytes: 1000 });
    const arm = new LogSink(store, buildId, 'linux/arm64', { ...fast, maxBuildBytes: 1000 });
    const line = (n: number) => Buffer.from(`#2 ${String(n).padStart(6, '0')}\n`); // 10 bytes
    for (let i = 0; i < 60; i++) amd.pushBytes(line(i));
    await amd.flush();
    for (let i = 0; i < 60; i++) arm.pushBytes(line(i));
    await arm.flush();
    arm.pushBytes(line(99));
    await arm.flush();
    const a = (await stored(buildId, 'linux/amd64')).toString();
    const b = (await stored(buildId, 'linux/arm64')).toString();
    expect(a.split('\n').filter(Boolean)).toHaveLength(60);
    expect(b.split('\n').filter((l) => l.startsWith('#2 '))).toHaveLength(40);
    expect(b).toMatch(/\n==> log truncated: this build reached KILN_MAX_LOG_BYTES \(1000 bytes\); later output of linux\/arm64 is not kept\n$/);
  });
});
