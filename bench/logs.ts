// Log rows of `npm run bench` (issue #9): a chatty build end to end against raw buildctl with the
// same flags; how fast 50 live followers see a line after the build printed it, against buildctl
// printing it; the API's memory while 10 clients download a 64 MiB log.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildctlArgs } from '../activities/build';
import { LOG_CHUNK_BYTES } from '../activities/log-sink';
import { openDatabase } from '../db/client';
import { insertLogChunks } from '../db/queries/logs';
import { toolPaths } from '../infra/tools';
import { buildctlPlain } from '../test/support/run-output';
import { readSse } from '../test/support/sse';
import { api, kilnBuild, type BuildCtx } from './builds';
import { median, percentile } from './stats';

const run = promisify(execFile);

/** The host's uptime in seconds: the same clock a build step reads from /proc/uptime. */
const uptime = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);

export const CHATTY_LINES = 1_000_000;

/**
 * Chatty: `seq 1 1000000` (6.9 MB of output), no cache, one platform. Kiln end to end (POST →
 * success, every line stored) vs buildctl with exactly the arguments Kiln passes (rawjson progress,
 * push by digest), interleaved.
 */
export async function benchChatty(ctx: BuildCtx): Promise<{ kiln: number; raw: number; bytes: number }> {
  const kilnMs: number[] = [];
  const rawMs: number[] = [];
  let bytes = 0;
  for (let i = 0; i < ctx.runs; i++) {
    const dockerfile = `FROM ${ctx.stack.registry}/base/busybox\nRUN seq 1 ${CHATTY_LINES} && echo run-${i}\n`;
    const rawFirst = i % 2 === 1;
    const doRaw = async () => {
      const dir = path.join(ctx.workDir, `chatty-${randomBytes(4).toString('hex')}`);
      mkdirSync(path.join(dir, 'context'), { recursive: true });
      writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
      const args = buildctlArgs(
        { buildId: 'bench', repository: 'bench/chatty-raw', platform: 'linux/amd64', source: { kind: 'inline', dockerfile }, buildArgs: {}, labels: {}, target: null, noCache: true },
        { contextDir: path.join(dir, 'context'), dockerfileDir: dir, dockerfileName: 'Dockerfile' },
        { buildkitAddr: ctx.stack.buildkit['linux/amd64'], registry: ctx.stack.registry },
        path.join(dir, 'metadata.json'),
      );
      const t = performance.now();
      await run(toolPaths().buildctl, args, { maxBuffer: 256 * 1024 * 1024 });
      rawMs.push(performance.now() - t);
      rmSync(dir, { recursive: true, force: true });
    };
    const doKiln = async () => {
      const t = performance.now();
      const view = await kilnBuild(ctx, { repository: 'bench/chatty', dockerfile, platforms: ['linux/amd64'], tags: ['chatty'], noCache: true });
      kilnMs.push(performance.now() - t);
      const step = view.platforms[0].steps.find((s: any) => /RUN seq/.test(s.name));
      if (step?.logLines !== CHATTY_LINES + 1 || view.logIncomplete) throw new Error(`chatty: Kiln kept ${step?.logLines} lines`);
      bytes = step.logBytes;
    };
    if (rawFirst) {
      await doRaw();
      await doKiln();
    } else {
      await doKiln();
      await doRaw();
    }
  }
  return { kiln: median(kilnMs), raw: median(rawMs), bytes };
}

/**
 * Live follow: a RUN prints a tick with the host's uptime every 200 ms; 50 SSE followers on the
 * API process each note when every tick reached them. Side by side: buildctl (`--progress=plain`)
 * building the same Dockerfile, noting when each tick reached its own output.
 */
export async function benchFollow(
  ctx: BuildCtx,
  apiUrl: string,
  followers = 50,
): Promise<{ p50: number; p99: number; lastP99: number; rawP50: number; rawP99: number; samples: number }> {
  const ticks = 25;
  const dockerfile = (tag: string) =>
    `FROM ${ctx.stack.registry}/base/busybox\nRUN for i in $(seq 1 ${ticks}); do echo "tick-${tag} $i $(cut -d' ' -f1 /proc/uptime)"; sleep 0.2; done\n`;
  const tickOf = (line: string, tag: string) => {
    const m = new RegExp(`tick-${tag} (\\d+) (\\d+\\.\\d+)$`).exec(line);
    return m ? { n: Number(m[1]), printed: Number(m[2]) } : undefined;
  };

  const tag = randomBytes(3).toString('hex');
  const { buildId } = await api(ctx, '/api/v1/builds', { repository: 'bench/follow', dockerfile: dockerfile(tag), platforms: ['linux/amd64'], tags: ['follow'], noCache: true });
  const delays: number[] = [];
  const last: number[] = [];
  const follow = async () => {
    const res = await fetch(`${apiUrl}/api/v1/builds/${buildId}/logs?follow=1`, { headers: { authorization: `Bearer ${ctx.token}` } });
    if (res.status !== 200) throw new Error(`follow: ${res.status} ${await res.text()}`);
    for await (const ev of readSse(res)) {
      if (ev.event === 'end') return;
      const now = uptime();
      for (const line of ev.data.split('\n')) {
        const t = tickOf(line, tag);
        if (!t) continue;
        delays.push((now - t.printed) * 1000);
        if (t.n === ticks) last.push((now - t.printed) * 1000);
      }
    }
  };
  await Promise.all(Array.from({ length: followers }, follow));
  if (delays.length !== followers * ticks) throw new Error(`follow: ${delays.length} of ${followers * ticks} ticks arrived`);

  const rawTag = randomBytes(3).toString('hex');
  const rawDelays: number[] = [];
  const raw = await buildctlPlain({
    buildctl: toolPaths().buildctl,
    addr: ctx.stack.buildkit['linux/amd64'],
    dockerfile: dockerfile(rawTag),
    platform: 'linux/amd64',
    onLine: (line) => {
      const t = tickOf(line, rawTag);
      if (t) rawDelays.push((uptime() - t.printed) * 1000);
    },
  });
  if (raw.code !== 0) throw new Error(`buildctl: ${raw.stderr.subarray(-500).toString()}`);
  return {
    p50: percentile(delays, 50),
    p99: percentile(delays, 99),
    lastP99: percentile(last, 99),
    rawP50: percentile(rawDelays, 50),
    rawP99: percentile(rawDelays, 99),
    samples: delays.length,
  };
}

/**
 * Memory: a 64 MiB platform log (stored directly, as a build would have) downloaded by 10 clients
 * at once from the API process; its peak RSS (VmHWM) against its RSS before.
 */
export async function benchLogDownload(
  ctx: BuildCtx,
  apiUrl: string,
  apiPid: number,
  databaseUrl: string,
  clients = 10,
): Promise<{ before: number; peak: number; logBytes: number; seconds: number; received: number }> {
  const view = await kilnBuild(ctx, {
    repository: 'bench/biglog',
    dockerfile: `FROM ${ctx.stack.registry}/base/busybox\nRUN echo big\n`,
    platforms: ['linux/amd64'],
    tags: ['biglog'],
  });
  const logBytes = 64 * 1024 * 1024;
  const db = await openDatabase({ url: databaseUrl });
  try {
    const line = Buffer.from(`#7 ${'0123456789abcdef'.repeat(4)} a chatty compiler line\n`);
    const chunk = Buffer.alloc(LOG_CHUNK_BYTES);
    for (let o = 0; o < chunk.length; o += line.length) line.copy(chunk, o);
    for (let offset = 0; offset < logBytes; offset += 16 * LOG_CHUNK_BYTES) {
      const rows = Array.from({ length: 16 }, (_, i) => ({ byteOffset: offset + i * LOG_CHUNK_BYTES, data: chunk }));
      await insertLogChunks(db.db, view.id, 'linux/arm64', rows);
    }
  } finally {
    await db.close();
  }
  const rss = (field: 'VmRSS' | 'VmHWM') =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${apiPid}/status`, 'utf8'))![1]) * 1024;
  const before = rss('VmRSS');
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rss('VmRSS'))), 20);
  const t = performance.now();
  let received = 0;
  try {
    await Promise.all(
      Array.from({ length: clients }, async () => {
        const res = await fetch(`${apiUrl}/api/v1/builds/${view.id}/logs`, { headers: { authorization: `Bearer ${ctx.token}` } });
        for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) received += part.length;
      }),
    );
  } finally {
    clearInterval(sampler);
  }
  return { before, peak, logBytes, seconds: (performance.now() - t) / 1000, received };
}
