import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { END_GRACE_MS, ProgressTracker } from '../../activities/progress';

/** The tracker's output as lines (each ends in a newline). */
const linesOf = (b: Buffer) => b.toString('utf8').split('\n').slice(0, -1);

const fixture = readFileSync(new URL('../fixtures/buildctl-run-exit3.stderr', import.meta.url), 'utf8').split('\n');

describe('ProgressTracker on real buildctl rawjson output', () => {
  const tracker = new ProgressTracker();
  const lines = linesOf(Buffer.concat([...fixture.map((l) => tracker.push(l)), tracker.flush()]));

  it('announces each step once, in order, with its output under it', () => {
    const runOne = lines.findIndex((l) => /^#\d+ \[2\/3\] RUN echo line-one/.test(l));
    expect(runOne).toBeGreaterThan(-1);
    const n = lines[runOne]!.split(' ')[0];
    expect(lines.slice(runOne)).toContain(`${n} line-one`);
    expect(lines.indexOf(`${n} line-one`)).toBeLessThan(lines.indexOf(`${n} line-two`));
    expect(lines.filter((l) => l.startsWith(`${n} [2/3]`))).toHaveLength(1);
    expect(lines.some((l) => l.startsWith(`${n} DONE`))).toBe(true);
  });

  it('reports the failing step with its error and keeps buildctl plain output', () => {
    expect(lines.some((l) => /^#\d+ ERROR: process .*exit code: 3/.test(l))).toBe(true);
    expect(tracker.plainOutput.at(-1)).toMatch(/^error: failed to solve: process .* exit code: 3/);
    expect(tracker.plainOutput).toContain('Dockerfile:3');
    expect(tracker.errors()).toHaveLength(1);
  });

  it('lists the steps with timing', () => {
    const steps = tracker.steps();
    const names = steps.map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining([expect.stringMatching(/^\[2\/3\] RUN/), expect.stringMatching(/^\[3\/3\] RUN/)]));
    const failed = steps.find((s) => s.name.startsWith('[3/3]'))!;
    expect(failed.error).toMatch(/exit code: 3/);
    expect(steps.find((s) => s.name.startsWith('[2/3]'))!.cached).toBe(false);
  });
});

describe('ProgressTracker merging', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  it('merges repeated vertexes by digest and counts cached Dockerfile steps', () => {
    const t = new ProgressTracker();
    const out = [
      JSON.stringify({ vertexes: [{ digest: 'a', name: '[1/2] FROM base' }] }),
      JSON.stringify({ vertexes: [{ digest: 'a', name: '[1/2] FROM base', started: '2026-01-01T00:00:00Z', cached: true, completed: '2026-01-01T00:00:00Z' }] }),
      JSON.stringify({ vertexes: [{ digest: 'b', name: '[2/2] RUN x', started: '2026-01-01T00:00:00Z', cached: true, completed: '2026-01-01T00:00:01Z' }] }),
      JSON.stringify({ vertexes: [{ digest: 'c', name: 'exporting to image', started: '2026-01-01T00:00:01Z', cached: true, completed: '2026-01-01T00:00:02Z' }] }),
    ].flatMap((l) => linesOf(t.push(l)));
    expect(out).toEqual(['#1 [1/2] FROM base', '#1 CACHED', '#2 [2/2] RUN x', '#2 CACHED', '#3 exporting to image', '#3 CACHED']);
    expect(t.cacheHits()).toBe(2);
  });

  it('joins output split across chunks and flushes a trailing partial line', () => {
    const t = new ProgressTracker();
    t.push(JSON.stringify({ vertexes: [{ digest: 'a', name: 'RUN', started: '2026-01-01T00:00:00Z' }] }));
    expect(linesOf(t.push(JSON.stringify({ logs: [{ vertex: 'a', data: b64('hel') }] })))).toEqual([]);
    expect(linesOf(t.push(JSON.stringify({ logs: [{ vertex: 'a', data: '' }] })))).toEqual([]);
    expect(linesOf(t.push(JSON.stringify({ logs: [{ vertex: 'a', data: b64('lo\nwor') }] })))).toEqual(['#1 hello']);
    expect(linesOf(t.flush())).toEqual(['#1 wor']);
    expect(t.steps()[0]).toMatchObject({ logBytes: 9, logLines: 2 });
  });

  it('keeps every byte a step prints: NUL, invalid UTF-8, \\r bars, CRLF, long lines', () => {
    const t = new ProgressTracker();
    t.push(JSON.stringify({ vertexes: [{ digest: 'a', name: '[2/2] RUN x', started: '2026-01-01T00:00:00Z' }] }));
    const printed = Buffer.concat([
      Buffer.from('x\0y\n'),
      Buffer.from([0xff, 0xfe, 0x41, 0xc3, 0x0a]),
      Buffer.from('10%\r50%\r100%\r\n'),
      Buffer.alloc(300_000, 0x61),
      Buffer.from('\n'),
    ]);
    // Split at awkward places, as BuildKit's log messages are.
    const out: Buffer[] = [];
    for (let i = 0; i < printed.length; i += 7_001) {
      out.push(t.push(JSON.stringify({ logs: [{ vertex: 'a', data: printed.subarray(i, i + 7_001).toString('base64') }] })));
    }
    out.push(t.flush());
    const expected = Buffer.concat(
      printed
        .toString('latin1')
        .split('\n')
        .slice(0, -1)
        .map((l) => Buffer.from(`#1 ${l}\n`, 'latin1')),
    );
    expect(Buffer.concat(out).equals(expected)).toBe(true);
    expect(t.steps()[0]).toMatchObject({ logBytes: printed.length, logLines: 4 });
  });
});

describe('ProgressTracker: output that arrives after its step completed', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const run = { digest: 'r', name: '[2/2] RUN seq 1 5', started: '2026-01-01T00:00:00Z' };
  const done = { ...run, completed: '2026-01-01T00:00:01Z' };

  it('keeps late output above DONE and a line cut across the two messages whole', () => {
    let now = 1_000;
    const t = new ProgressTracker({ now: () => now });
    const out = [
      t.push(JSON.stringify({ vertexes: [run] })),
      t.push(JSON.stringify({ logs: [{ vertex: 'r', data: b64('1\n2\n3') }] })),
      // BuildKit says the step completed, then sends the rest of what it printed.
      t.push(JSON.stringify({ vertexes: [done] })),
      t.push(JSON.stringify({ logs: [{ vertex: 'r', data: b64('3\n4\n5\n') }] })),
    ];
    now += END_GRACE_MS;
    out.push(t.push(JSON.stringify({ vertexes: [{ digest: 'e', name: 'exporting to image', started: '2026-01-01T00:00:01Z' }] })));
    out.push(t.flush());
    expect(linesOf(Buffer.concat(out))).toEqual([
      '#1 [2/2] RUN seq 1 5', '#1 1', '#1 2', '#1 33', '#1 4', '#1 5', '#1 DONE 1.0s', '#2 exporting to image',
    ]);
  });

  it('a quiet build still gets DONE from tick() once the grace has passed, not before', () => {
    let now = 0;
    const t = new ProgressTracker({ now: () => now });
    t.push(JSON.stringify({ vertexes: [run] }));
    t.push(JSON.stringify({ logs: [{ vertex: 'r', data: b64('x\n') }] }));
    t.push(JSON.stringify({ vertexes: [done] }));
    expect(linesOf(t.tick())).toEqual([]);
    now = END_GRACE_MS;
    expect(linesOf(t.tick())).toEqual(['#1 DONE 1.0s']);
    expect(linesOf(t.flush())).toEqual([]);
  });

  it('a failed step: its last output comes before its ERROR line', () => {
    let now = 0;
    const t = new ProgressTracker({ now: () => now });
    const out = [
      t.push(JSON.stringify({ vertexes: [run] })),
      t.push(JSON.stringify({ vertexes: [{ ...run, completed: '2026-01-01T00:00:01Z', error: 'exit code: 3' }] })),
      t.push(JSON.stringify({ logs: [{ vertex: 'r', data: b64('why it failed\n') }] })),
      t.flush(),
    ];
    expect(linesOf(Buffer.concat(out))).toEqual(['#1 [2/2] RUN seq 1 5', '#1 why it failed', '#1 ERROR: exit code: 3']);
  });
});
