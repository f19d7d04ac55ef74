import type { Db } from '../db/client';
import type { BuildLogWatch } from '../db/log-signals';
import { readLogChunksByOffset, readLogChunksBySeq, type LogChunk } from '../db/queries/logs';
import { BUILD_LOG_STREAM } from '../db/schema';
import { ApiError } from './errors';

/** Chunks per database read: at most 1 MiB held per reader, whatever the log's size. */
const CHUNKS_PER_READ = 16;

/** `?platform=build` names the stream of Kiln's own lines about the whole build. */
export const BUILD_STREAM_NAME = 'build';

export const streamOf = (platform: string) => (platform === BUILD_STREAM_NAME ? BUILD_LOG_STREAM : platform);

/**
 * The combined log: every stream's lines in write order, a platform's prefixed `[platform] `.
 * A line longer than a chunk spans chunks; should another stream's chunk come between them, the
 * line is ended there and goes on under its prefix again.
 */
export class CombinedLogRenderer {
  /** The stream whose line is open (not yet ended by `\n`) at the end of what was rendered. */
  private open: string | null = null;
  private readonly prefixes = new Map<string, Buffer>();

  render(chunk: Pick<LogChunk, 'stream' | 'data'>): Buffer {
    const { stream, data } = chunk;
    let prefix = this.prefixes.get(stream);
    if (!prefix) this.prefixes.set(stream, (prefix = Buffer.from(stream === BUILD_LOG_STREAM ? '' : `[${stream}] `)));
    const parts: Buffer[] = [];
    if (this.open !== null && this.open !== stream) parts.push(NEWLINE);
    let start = 0;
    if (this.open === stream) {
      // Continues the line this stream left open.
      const nl = data.indexOf(0x0a);
      const end = nl < 0 ? data.length : nl + 1;
      parts.push(data.subarray(0, end));
      start = end;
    }
    while (start < data.length) {
      const nl = data.indexOf(0x0a, start);
      const end = nl < 0 ? data.length : nl + 1;
      if (prefix.length) parts.push(prefix);
      parts.push(data.subarray(start, end));
      start = end;
    }
    if (data.length) this.open = data[data.length - 1] !== 0x0a ? stream : null;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}

const NEWLINE = Buffer.from('\n');

/**
 * The log as a byte stream read a page at a time as the client takes it (pull), so memory stays
 * flat whatever the log's size. One stream from `offset` when `stream` is given, else the combined log.
 */
export function logBody(db: Db, buildId: string, opts: { stream?: string; offset?: number; end?: number }): ReadableStream<Uint8Array> {
  const renderer = new CombinedLogRenderer();
  let afterSeq = 0;
  let nextOffset = opts.offset ?? 0;
  let lastOffset = -1;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          if (opts.stream === undefined) {
            const chunks = await readLogChunksBySeq(db, buildId, { afterSeq, limit: CHUNKS_PER_READ });
            if (chunks.length === 0) return controller.close();
            afterSeq = chunks[chunks.length - 1]!.seq;
            const out = Buffer.concat(chunks.map((c) => renderer.render(c)));
            if (out.length) return controller.enqueue(out);
            continue;
          }
          const limitEnd = opts.end ?? Number.POSITIVE_INFINITY;
          if (nextOffset >= limitEnd) return controller.close();
          const chunks = (await readLogChunksByOffset(db, buildId, opts.stream, { fromOffset: nextOffset, limit: CHUNKS_PER_READ })).filter(
            (c) => c.byteOffset > lastOffset,
          );
          const parts: Buffer[] = [];
          for (const c of chunks) {
            lastOffset = c.byteOffset;
            const from = Math.max(0, nextOffset - c.byteOffset);
            const to = Math.min(c.data.length, limitEnd - c.byteOffset);
            if (to > from) parts.push(c.data.subarray(from, to));
            nextOffset = Math.max(nextOffset, c.byteOffset + to);
          }
          if (parts.length === 0) return controller.close();
          return controller.enqueue(Buffer.concat(parts));
        }
      },
    },
    { highWaterMark: 0 },
  );
}

/** A single `bytes=` range (RFC 9110): [start, end) within a stream of `length` bytes. */
export function parseRange(header: string, length: number): { start: number; end: number } | 'ignore' | 'unsatisfiable' {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'ignore'; // several ranges or another unit: send it all
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, length - suffix), end: length };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? length : Math.min(length, Number(m[2]) + 1);
  if (start >= length || end <= start) return 'unsatisfiable';
  return { start, end };
}

/** SSE carries UTF-8 text and ends a line at `\r`: shown as U+FFFD and ␍ there; the text log has the bytes. */
export function sseText(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  return (text.endsWith('\n') ? text.slice(0, -1) : text).replace(/\r/g, '\u240d');
}

/** Reads what was stored after `afterSeq`, one page at a time, for a follower. */
export async function* chunksAfter(db: Db, buildId: string, stream: string | undefined, afterSeq: number): AsyncGenerator<LogChunk> {
  for (let after = afterSeq; ; ) {
    const chunks = await readLogChunksBySeq(db, buildId, { stream, afterSeq: after, limit: CHUNKS_PER_READ });
    for (const c of chunks) yield c;
    if (chunks.length < CHUNKS_PER_READ) return;
    after = chunks[chunks.length - 1]!.seq;
  }
}

/** Counts live followers per build and per token; refuses (429) past either cap. */
export class FollowerLimits {
  private readonly perBuild = new Map<string, number>();
  private readonly perToken = new Map<string, number>();

  constructor(private readonly caps: { perBuild: number; perToken: number }) {}

  /** Takes a place or throws 429; call the returned release exactly once. */
  acquire(buildId: string, token: string): () => void {
    const b = this.perBuild.get(buildId) ?? 0;
    const t = this.perToken.get(token) ?? 0;
    if (b >= this.caps.perBuild || t >= this.caps.perToken) {
      const which = b >= this.caps.perBuild ? `this build (${this.caps.perBuild})` : `this token (${this.caps.perToken})`;
      throw new ApiError('too_many_requests', `Too many live log followers for ${which}; read the text log or retry later`, null, {
        'Retry-After': '5',
      });
    }
    this.perBuild.set(buildId, b + 1);
    this.perToken.set(token, t + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      decrement(this.perBuild, buildId);
      decrement(this.perToken, token);
    };
  }
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 1) - 1;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}

export type { BuildLogWatch };
