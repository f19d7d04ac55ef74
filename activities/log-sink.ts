import type { Db } from '../db/client';
import { appendBuildLogs, type LogLine } from '../db/queries/builds';

/**
 * Buffers build log lines and writes them in batches, so a chatty build costs a few inserts a
 * second rather than one per line. Lines stay buffered across a failed write.
 */
export class LogSink {
  private buffer: LogLine[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Db,
    private readonly buildId: string,
    private readonly platform: string | null,
    private readonly intervalMs = 200,
  ) {}

  push(lines: string[]): void {
    for (const line of lines) this.buffer.push({ platform: this.platform, line: redactLine(line) });
    if (!this.timer && this.buffer.length) this.timer = setTimeout(() => void this.flush(), this.intervalMs);
  }

  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.writing = this.writing.then(async () => {
      if (this.buffer.length === 0) return;
      const batch = this.buffer;
      this.buffer = [];
      try {
        await appendBuildLogs(this.db, this.buildId, batch);
      } catch {
        this.buffer = batch.concat(this.buffer);
      }
    });
    return this.writing;
  }
}

/** Hides credentials embedded in URLs (`https://user:token@host`) should a tool print one. */
export function redactLine(line: string): string {
  return line.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+(:[^/\s@]*)?@/gi, '$1***@');
}
