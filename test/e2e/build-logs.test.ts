// Issue #9 on the real stack: what a build prints is what Kiln keeps and serves, byte for byte,
// at any volume, compared against buildctl's own `--progress=plain` view of the same RUN on the
// same buildkitd.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { toolPaths } from '../../infra/tools';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { buildctlPlain, firstDifference, runOutputOfKiln, runOutputOfPlain } from '../support/run-output';

const nonce = randomBytes(4).toString('hex');

async function platformLog(kiln: TestKiln, buildId: string, platform: string): Promise<Buffer> {
  const res = await kiln.api(`/api/v1/builds/${buildId}/logs?platform=${platform}`);
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

async function build(kiln: TestKiln, repository: string, dockerfile: string, platforms: string[]): Promise<any> {
  const submit = await kiln.api('/api/v1/builds', { json: { repository, dockerfile, platforms, tags: ['v1'], noCache: true } });
  expect(submit.status).toBe(202);
  const view = await waitForBuild(kiln, (await submit.json()).buildId, 600_000);
  expect(view.error).toBeUndefined();
  expect(view.status).toBe('succeeded');
  expect(view.logIncomplete).toBe(false);
  return view;
}

/** Kiln's copy of the RUN output of each platform equals buildctl's; the step view counts it. */
async function expectSameAsBuildctl(kiln: TestKiln, view: any, dockerfile: string, step: RegExp) {
  const stack = inject('stack');
  const plain = await Promise.all(
    view.platforms.map((p: any) =>
      buildctlPlain({ buildctl: toolPaths().buildctl, addr: stack.buildkit[p.platform as 'linux/amd64'], dockerfile, platform: p.platform }),
    ),
  );
  const outputs: Record<string, string> = {};
  for (const [i, p] of view.platforms.entries()) {
    const said = plain[i].stderr.toString('latin1').split('\n').filter((l: string) => !/^#\d+ [\d.]+ /.test(l));
    expect(plain[i].code, said.slice(-40).join('\n')).toBe(0);
    const theirs = runOutputOfPlain(plain[i].stderr, step);
    const ours = runOutputOfKiln(await platformLog(kiln, view.id, p.platform), step);
    expect(firstDifference(ours, theirs), p.platform).toBeNull();
    const runStep = p.steps.find((s: any) => step.test(s.name));
    expect(runStep).toMatchObject({ logBytes: theirs.length, logLines: theirs.split('\n').length - 1 });
    outputs[p.platform] = theirs;
  }
  return outputs;
}

describe('build logs keep every line (postgres)', () => {
  let kiln: TestKiln;
  beforeAll(async () => {
    kiln = await startTestKiln({ db: 'postgres' });
  });
  afterAll(async () => {
    await kiln?.close();
  });

  it('a build printing 1,000,000 lines on two platforms: every line kept, the same as buildctl printed', async () => {
    // The trailing sleep is for buildctl's plain view: its client cuts the progress stream 3 s after
    // the solve ends, and printing a million lines one write each takes longer than that.
    const dockerfile = `FROM ${kiln.registry}/base/busybox\nRUN seq 1 1000000 && echo done-${nonce} && sleep 10\n`;
    const view = await build(kiln, `logs/million-${nonce}`, dockerfile, ['linux/amd64', 'linux/arm64']);
    const outputs = await expectSameAsBuildctl(kiln, view, dockerfile, /RUN seq 1 1000000/);
    for (const text of Object.values(outputs)) {
      expect(text.length).toBe(6_888_896 + `done-${nonce}\n`.length);
      expect(text.startsWith('1\n2\n3\n')).toBe(true);
      expect(text.endsWith(`999999\n1000000\ndone-${nonce}\n`)).toBe(true);
    }
    // The combined log holds both platforms too, prefixed line by line.
    const combined = await (await kiln.api(`/api/v1/builds/${view.id}/logs`)).text();
    for (const p of ['linux/amd64', 'linux/arm64']) {
      expect(combined).toMatch(new RegExp(`\\[${p}\\] #\\d+ 1000000\\n`));
      expect(combined).toContain(`[${p}] ==> building ${p}`);
    }
  }, 900_000);
});

describe.each(['pglite', 'postgres'] as const)('build logs keep every byte (%s)', (db) => {
  let kiln: TestKiln;
  beforeAll(async () => {
    kiln = await startTestKiln({ db });
  });
  afterAll(async () => {
    await kiln?.close();
  });

  it('NUL bytes, invalid UTF-8, ANSI colours, \\r progress bars and a 1 MiB line: stored and served as printed', async () => {
    const run =
      `RUN echo before-${nonce} && printf 'x\\000y\\n' && printf '\\377\\376 not utf-8 \\303\\n' ` +
      `&& printf '\\033[31mred\\033[0m\\n' && printf 'bar 10%%\\r50%%\\r100%%\\r\\n' ` +
      `&& head -c 1048576 /dev/zero | tr '\\000' a && echo && echo after`;
    const dockerfile = `FROM ${kiln.registry}/base/busybox\n${run}\n`;
    const view = await build(kiln, `logs/bytes-${db}-${nonce}`, dockerfile, ['linux/amd64']);
    const outputs = await expectSameAsBuildctl(kiln, view, dockerfile, /RUN echo before-/);
    const text = outputs['linux/amd64']!;
    expect(text).toContain('x\0y\n');
    expect(text).toContain('\xff\xfe not utf-8 \xc3\n');
    expect(text).toContain('\x1b[31mred\x1b[0m\n');
    expect(text).toContain('bar 10%\r50%\r100%\r\n');
    expect(text).toContain(`\n${'a'.repeat(1_048_576)}\nafter\n`);

    // Resumable: the second half of the stream from an offset equals the tail of the whole.
    const whole = await platformLog(kiln, view.id, 'linux/amd64');
    const half = Math.floor(whole.length / 2);
    const tail = await kiln.api(`/api/v1/builds/${view.id}/logs?platform=linux/amd64`, { headers: { range: `bytes=${half}-` } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(whole.subarray(half))).toBe(true);
  });
});

describe('issue #9 table: lines printed vs kept (pglite, as a new user runs it)', () => {
  let kiln: TestKiln;
  beforeAll(async () => {
    kiln = await startTestKiln({ db: 'pglite' });
  });
  afterAll(async () => {
    await kiln?.close();
  });

  it('keeps 2,000 / 20,000 / 100,000 lines and the NUL case whole', async () => {
    const cases = [
      { run: 'RUN seq 1 2000', printed: 2000 },
      { run: 'RUN seq 1 20000', printed: 20_000 },
      { run: 'RUN seq 1 100000', printed: 100_000 },
      { run: "RUN echo before && printf 'x\\000y\\n' && echo after", printed: 3 },
    ];
    const views = await Promise.all(
      cases.map((c, i) => build(kiln, `logs/table-${i}-${nonce}`, `FROM ${kiln.registry}/base/busybox\n${c.run}\n`, ['linux/amd64'])),
    );
    const rows: string[] = [];
    for (const [i, c] of cases.entries()) {
      const log = await platformLog(kiln, views[i].id, 'linux/amd64');
      const kept = runOutputOfKiln(log, new RegExp(c.run.slice(4).replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')));
      const lines = kept.split('\n').slice(0, -1);
      rows.push(`| \`${c.run}\` | ${c.printed} | ${lines.length} |`);
      expect(lines).toHaveLength(c.printed);
      if (c.printed === 3) expect(lines).toEqual(['before', 'x\0y', 'after']);
      else expect(lines.at(-1)).toBe(String(c.printed));
      expect(log.toString()).toContain('==> building linux/amd64');
    }
    console.log(`lines printed vs kept:\n${rows.join('\n')}`);
  }, 600_000);
});
