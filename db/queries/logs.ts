import { and, asc, desc, eq, gt, lte, sql } from 'drizzle-orm';
import type { Db } from '../client';
import { BUILD_LOG_STREAM, buildLogChunks, builds } from '../schema';

export interface LogChunk {
  seq: number;
  stream: string;
  byteOffset: number;
  data: Buffer;
}

/**
 * Inserts chunks of one stream at the offsets given. An offset already taken is not
 * overwritten: the offsets that were taken come back, for the writer to check against.
 */
export async function insertLogChunks(
  db: Db,
  buildId: string,
  stream: string,
  chunks: { byteOffset: number; data: Buffer }[],
): Promise<number[]> {
  if (chunks.length === 0) return [];
  const inserted = await db
    .insert(buildLogChunks)
    .values(chunks.map((c) => ({ buildId, stream, byteOffset: c.byteOffset, data: c.data })))
    .onConflictDoNothing()
    .returning({ byteOffset: buildLogChunks.byteOffset });
  const done = new Set(inserted.map((r) => r.byteOffset));
  return chunks.map((c) => c.byteOffset).filter((o) => !done.has(o));
}

/** The chunk stored at an offset, if any. */
export async function getLogChunkAt(db: Db, buildId: string, stream: string, byteOffset: number): Promise<Buffer | undefined> {
  const [row] = await db
    .select({ data: buildLogChunks.data })
    .from(buildLogChunks)
    .where(and(eq(buildLogChunks.buildId, buildId), eq(buildLogChunks.stream, stream), eq(buildLogChunks.byteOffset, byteOffset)));
  return row?.data;
}

/** The length of a stream: where its next byte goes. */
export async function getLogStreamEnd(db: Db, buildId: string, stream: string): Promise<number> {
  const [row] = await db
    .select({ end: sql<string>`${buildLogChunks.byteOffset} + octet_length(${buildLogChunks.data})` })
    .from(buildLogChunks)
    .where(and(eq(buildLogChunks.buildId, buildId), eq(buildLogChunks.stream, stream)))
    .orderBy(desc(buildLogChunks.byteOffset))
    .limit(1);
  return row ? Number(row.end) : 0;
}

/**
 * Counts `bytes` against the build's log cap and returns how many of them fit (all, some, none).
 * One statement, so two platforms writing at once cannot both take the last bytes.
 */
export async function reserveLogBytes(db: Db, buildId: string, bytes: number, cap: number): Promise<number> {
  const rows = await db.execute<{ granted: string }>(sql`
    with before as (select ${builds.logBytes} as n from ${builds} where ${builds.id} = ${buildId}::uuid for update)
    update ${builds} set log_bytes = least(${cap}::bigint, before.n + ${bytes}::bigint)
    from before where ${builds.id} = ${buildId}::uuid
    returning least(${cap}::bigint, before.n + ${bytes}::bigint) - least(before.n, ${cap}::bigint) as granted`);
  const row = (Array.isArray(rows) ? rows : (rows as { rows: { granted: string }[] }).rows)[0];
  // A build that is gone keeps nothing anyway.
  return row ? Math.max(0, Number(row.granted)) : 0;
}

export async function markLogIncomplete(db: Db, buildId: string): Promise<void> {
  await db.update(builds).set({ logIncomplete: true }).where(eq(builds.id, buildId));
}

export interface LogLine {
  /** null: a line about the whole build. */
  platform: string | null;
  line: string;
}

/**
 * Appends a few whole lines (Kiln's own `==>` lines) at the current end of their streams. Offsets
 * are taken in SQL, so concurrent appenders never clash; one that races another is retried.
 */
export async function appendBuildLogs(db: Db, buildId: string, lines: LogLine[]): Promise<void> {
  // One chunk per run of lines of the same stream, in the order given.
  const runs: [string, string[]][] = [];
  for (const l of lines) {
    const stream = l.platform ?? BUILD_LOG_STREAM;
    const last = runs.at(-1);
    if (last && last[0] === stream) last[1].push(l.line);
    else runs.push([stream, [l.line]]);
  }
  for (const [stream, text] of runs) {
    const data = Buffer.from(`${text.join('\n')}\n`);
    for (let attempt = 1; ; attempt++) {
      try {
        await db.execute(sql`
          insert into ${buildLogChunks} (build_id, stream, byte_offset, data)
          select ${buildId}::uuid, ${stream}::text, coalesce(max(byte_offset + octet_length(data)), 0), ${data}::bytea
          from ${buildLogChunks} where build_id = ${buildId}::uuid and stream = ${stream}::text`);
        break;
      } catch (err) {
        if (attempt >= 5 || !isUniqueViolation(err)) throw err;
      }
    }
  }
}

function isUniqueViolation(err: unknown): boolean {
  for (let e = err as { code?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) if (e.code === '23505') return true;
  return false;
}

/** Chunks of a build in write order after `afterSeq`, optionally of one stream. */
export async function readLogChunksBySeq(
  db: Db,
  buildId: string,
  opts: { stream?: string; afterSeq: number; limit: number },
): Promise<LogChunk[]> {
  return db
    .select({ seq: buildLogChunks.seq, stream: buildLogChunks.stream, byteOffset: buildLogChunks.byteOffset, data: buildLogChunks.data })
    .from(buildLogChunks)
    .where(
      and(
        eq(buildLogChunks.buildId, buildId),
        opts.stream !== undefined ? eq(buildLogChunks.stream, opts.stream) : undefined,
        gt(buildLogChunks.seq, opts.afterSeq),
      ),
    )
    .orderBy(asc(buildLogChunks.seq))
    .limit(opts.limit);
}

/** Chunks of one stream in byte order, starting with the one holding `fromOffset`. */
export async function readLogChunksByOffset(
  db: Db,
  buildId: string,
  stream: string,
  opts: { fromOffset: number; limit: number },
): Promise<LogChunk[]> {
  const inStream = and(eq(buildLogChunks.buildId, buildId), eq(buildLogChunks.stream, stream));
  const [first] = await db
    .select({ byteOffset: buildLogChunks.byteOffset })
    .from(buildLogChunks)
    .where(and(inStream, lte(buildLogChunks.byteOffset, opts.fromOffset)))
    .orderBy(desc(buildLogChunks.byteOffset))
    .limit(1);
  return db
    .select({ seq: buildLogChunks.seq, stream: buildLogChunks.stream, byteOffset: buildLogChunks.byteOffset, data: buildLogChunks.data })
    .from(buildLogChunks)
    .where(and(inStream, sql`${buildLogChunks.byteOffset} >= ${first?.byteOffset ?? 0}`))
    .orderBy(asc(buildLogChunks.byteOffset))
    .limit(opts.limit);
}
