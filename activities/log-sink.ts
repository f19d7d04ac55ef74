import type { Db } from '../db/client';
import {
  appendBuildLogs,
  getLogChunkAt,
  getLogStreamEnd,
  insertLogChunks,
  markLogIncomplete,
  reserveLogBytes,
} from '../db/queries/logs';

/** Largest chunk stored as one row. */
export const LOG_CHUNK_BYTES = 64 * 1024;
/** Chunks per insert statement: a bounded piece (1 MiB), far from any parameter or size limit. */
const CHUNKS_PER_INSERT = 16;

/** What the sink needs from the database; tests pass one that fails on purpose. */
export interface LogStore {
  insertChunks(buildId: string, stream: string, chunks: { byteOffset: number; data: Buffer }[]): Promise<number[]>;
  chunkAt(buildId: string, stream: string, byteOffset: number): Promise<Buffer | undefined>;
  streamEnd(buildId: string, stream: string): Promise<number>;
  reserveBytes(buildId: string, bytes: number, cap: number): Promise<number>;
  markIncomplete(buildId: string): Promise<void>;
  appendLines(buildId: string, stream: string, lines: string[]): Promise<void>;
}

export function dbLogStore(db: Db): LogStore {
  return {
    insertChunks: (buildId, stream, chunks) => insertLogChunks(db, buildId, stream, chunks),
    chunkAt: (buildId, stream, offset) => getLogChunkAt(db, buildId, stream, offset),
    streamEnd: (buildId, stream) => getLogStreamEnd(db, buildId, stream),
    reserveBytes: (buildId, bytes, cap) => reserveLogBytes(db, buildId, bytes, cap),
    markIncomplete: (buildId) => markLogIncomplete(db, buildId),
    appendLines: (buildId, stream, lines) => appendBuildLogs(db, buildId, lines.map((line) => ({ platform: stream, line }))),
  };
}

export interface LogSinkOptions {
  /** KILN_MAX_LOG_BYTES: what the whole build may store; beyond it a marker line says so. */
  maxBuildBytes: number;
  intervalMs?: number;
  /** Tries per piece before it counts as lost, and the first back-off (doubling, at most 5 s). */
  attempts?: number;
  backoffMs?: number;
}

/**
 * Collects one platform's log bytes and stores them as chunks of up to 64 KiB at byte offsets it
 * assigns, a few times a second. Nothing is dropped quietly: a write that fails is retried in
 * bounded pieces (a statement of up to 16 chunks, then chunk by chunk); a chunk that still cannot
 * be stored marks the build `logIncomplete` and leaves a marker line; bytes past the build's cap
 * end with a truncation marker. Offsets make retries idempotent: a chunk whose insert did commit
 * before its answer got lost is found in place and not stored twice.
 */
export class LogSink {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private nextOffset: number | undefined;
  private truncated = false;
  private droppedBytes = 0;
  private readonly intervalMs: number;
  private readonly attempts: number;
  private readonly backoffMs: number;

  constructor(
    private readonly store: LogStore,
    private readonly buildId: string,
    private readonly stream: string,
    private readonly opts: LogSinkOptions,
  ) {
    this.intervalMs = opts.intervalMs ?? 200;
    this.attempts = opts.attempts ?? 6;
    this.backoffMs = opts.backoffMs ?? 250;
  }

  /** Kiln's own lines (`==> ...`). */
  pushLines(lines: string[]): void {
    if (lines.length) this.pushBytes(Buffer.from(`${lines.join('\n')}\n`));
  }

  /** Whole lines as the build printed them, each ending in `\n`. */
  pushBytes(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.pending.push(redactBytes(bytes));
    this.pendingBytes += bytes.length;
    // A chatty build writes at once rather than growing the buffer until the timer fires.
    if (this.pendingBytes >= 4 * LOG_CHUNK_BYTES * CHUNKS_PER_INSERT) void this.flush();
    else if (!this.timer) this.timer = setTimeout(() => void this.flush(), this.intervalMs);
  }

  /** Stores everything pushed so far; never rejects (what cannot be stored is marked instead). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.writing = this.writing.then(() => this.writePending());
    return this.writing;
  }

  private async writePending(): Promise<void> {
    if (this.pending.length === 0) return;
    let bytes = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    if (this.truncated) {
      this.droppedBytes += bytes.length;
      return;
    }
    const granted = await this.retry(() => this.store.reserveBytes(this.buildId, bytes.length, this.opts.maxBuildBytes)).catch(
      // Unknown is not "over the cap": keep the bytes rather than guess them away.
      () => bytes.length,
    );
    let marker: string | undefined;
    if (granted < bytes.length) {
      this.truncated = true;
      this.droppedBytes += bytes.length - granted;
      // Cut at the last whole line that fits, so the marker starts a line of its own.
      const cut = bytes.lastIndexOf(0x0a, granted - 1) + 1;
      this.droppedBytes += granted - cut;
      bytes = bytes.subarray(0, cut);
      marker = `==> log truncated: this build reached KILN_MAX_LOG_BYTES (${this.opts.maxBuildBytes} bytes); later output of ${this.stream} is not kept`;
    }
    await this.storeBytes(bytes);
    if (marker) await this.storeBytes(Buffer.from(`${marker}\n`));
  }

  private async storeBytes(bytes: Buffer): Promise<void> {
    if (bytes.length === 0) return;
    if (this.nextOffset === undefined) {
      try {
        this.nextOffset = await this.retry(() => this.store.streamEnd(this.buildId, this.stream));
      } catch (err) {
        return this.lost(bytes.length, err);
      }
    }
    const pieces = splitChunks(bytes);
    for (let i = 0; i < pieces.length; i += CHUNKS_PER_INSERT) {
      const group = pieces.slice(i, i + CHUNKS_PER_INSERT);
      try {
        await this.writeChunks(group, 2);
      } catch {
        // The statement keeps failing: try each chunk on its own, so one bad piece costs only itself.
        for (const chunk of group) {
          try {
            await this.writeChunks([chunk], this.attempts);
          } catch (err) {
            await this.lost(chunk.length, err);
          }
        }
      }
    }
  }

  /** Stores consecutive chunks at the next offsets, trying up to `attempts` times. */
  private async writeChunks(chunks: Buffer[], attempts: number): Promise<void> {
    await this.retry(async () => {
      let offset = this.nextOffset!;
      const rows = chunks.map((data) => {
        const row = { byteOffset: offset, data };
        offset += data.length;
        return row;
      });
      const taken = new Set(await this.store.insertChunks(this.buildId, this.stream, rows));
      for (const row of rows) {
        if (!taken.has(row.byteOffset)) continue;
        const there = await this.store.chunkAt(this.buildId, this.stream, row.byteOffset);
        if (there && there.equals(row.data)) continue; // an earlier try did commit
        // Another writer (an earlier attempt of this activity still running) holds these offsets:
        // go on after everything stored, and write what is not stored yet again.
        this.nextOffset = await this.store.streamEnd(this.buildId, this.stream);
        const rest = rows.slice(rows.indexOf(row)).map((r) => r.data);
        return this.writeChunks(rest, attempts);
      }
      this.nextOffset = offset;
    }, attempts);
  }

  private async lost(bytes: number, err: unknown): Promise<void> {
    const message = `==> log incomplete: ${bytes} bytes of ${this.stream} output could not be stored (${errorText(err)})`;
    await this.retry(() => this.store.markIncomplete(this.buildId)).catch(() => undefined);
    await this.retry(() => this.store.appendLines(this.buildId, this.stream, [message])).catch(() => undefined);
    // The marker took the stream's next bytes: find the end again before the next write.
    this.nextOffset = undefined;
  }

  private async retry<T>(fn: () => Promise<T>, attempts = this.attempts): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (attempt >= attempts) throw err;
        await new Promise((r) => setTimeout(r, Math.min(5_000, this.backoffMs * 2 ** (attempt - 1))));
      }
    }
  }
}

/** Up to LOG_CHUNK_BYTES each, cut after a newline when one is in reach (lines stay whole). */
export function splitChunks(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  while (bytes.length - start > LOG_CHUNK_BYTES) {
    const nl = bytes.lastIndexOf(0x0a, start + LOG_CHUNK_BYTES - 1);
    const end = nl >= start ? nl + 1 : start + LOG_CHUNK_BYTES;
    out.push(bytes.subarray(start, end));
    start = end;
  }
  if (start < bytes.length) out.push(bytes.subarray(start));
  return out;
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 200);
}

const CREDENTIAL_IN_URL = /(\b[a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+(:[^/\s@]*)?@/gi;

/** Hides credentials embedded in URLs (`https://user:token@host`) should a tool print one. */
export function redactLine(line: string): string {
  return line.replace(CREDENTIAL_IN_URL, '$1***@');
}

/** redactLine over raw bytes: latin1 maps each byte to one char, so every other byte stays as it was. */
export function redactBytes(bytes: Buffer): Buffer {
  // Cheap test first: most output holds no "://" at all.
  if (bytes.indexOf('://') < 0) return bytes;
  const text = bytes.toString('latin1');
  const redacted = text.replace(CREDENTIAL_IN_URL, '$1***@');
  return redacted === text ? bytes : Buffer.from(redacted, 'latin1');
}
