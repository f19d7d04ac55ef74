import type { BuildStep } from '../db/schema';

/** The parts of BuildKit's SolveStatus (`buildctl --progress=rawjson`) that Kiln reads. */
interface RawVertex {
  digest: string;
  name?: string;
  started?: string;
  completed?: string;
  cached?: boolean;
  error?: string;
}
interface RawLog {
  vertex: string;
  stream?: number;
  data?: string;
  timestamp?: string;
}
interface RawStatus {
  vertexes?: RawVertex[] | null;
  logs?: RawLog[] | null;
  warnings?: { vertex: string; short?: string }[] | null;
}

interface VertexState {
  index: number;
  name: string;
  started: string | null;
  completed: string | null;
  cached: boolean;
  error: string | null;
  announced: boolean;
  /** When BuildKit reported the step ended (ms, the tracker's clock); its closing line may wait. */
  endSeenAt: number | null;
  /** Its closing line (DONE, CACHED, ERROR) is written. */
  finished: boolean;
  /** Output not yet ended by a newline. */
  partial: Buffer | null;
  /** What the step printed, as bytes and newline-ended lines. */
  logBytes: number;
  logLines: number;
  prefix: Buffer;
}

/**
 * Turns BuildKit's rawjson progress into ordered human log lines (in the style of
 * `--progress=plain`: `#3 [2/3] RUN ...`, `#3 DONE 0.4s`) and a step list with cache hits.
 * Vertexes repeat as they update, so state is merged by digest. A step's output stays raw bytes
 * (NUL, invalid UTF-8, `\r` and all), split into lines at `\n` only, as buildctl's plain view does.
 *
 * A step's last output can arrive in a status message after the one that says it completed
 * (BuildKit sends a step's logs and its vertex updates on separate streams; under load they
 * reorder). So the closing line of a step that ran waits until a later message carries none of
 * its output and END_GRACE_MS have passed (or `tick()`/`flush()`): its output stays above its
 * DONE, and a line cut across the two messages stays one line.
 */
export class ProgressTracker {
  private readonly vertexes = new Map<string, VertexState>();
  /** The `#N` the next new vertex gets. */
  nextIndex: number;
  /** Lines that were not JSON: buildctl's own messages, including its final error. */
  readonly plainOutput: string[] = [];
  /** Steps that ended whose closing line waits for late output. */
  private readonly ending = new Set<VertexState>();
  private readonly now: () => number;

  /** `firstIndex` lets a second solve of one build continue the first one's `#N` numbering. */
  constructor(opts: { firstIndex?: number; now?: () => number } = {}) {
    this.nextIndex = opts.firstIndex ?? 1;
    this.now = opts.now ?? Date.now;
  }

  /** Feeds one stderr line; returns the log lines it produced, each ending in `\n`. */
  push(raw: string): Buffer {
    const text = raw.trim();
    if (!text) return EMPTY;
    let status: RawStatus;
    try {
      status = JSON.parse(text) as RawStatus;
    } catch {
      this.plainOutput.push(text);
      return Buffer.from(`${text}\n`);
    }
    if (typeof status !== 'object' || status === null) return EMPTY;
    const out = new LineOutput();
    // Steps that ended and print nothing more in this message are closed before it is shown.
    const logged = new Set((status.logs ?? []).map((l) => this.vertexes.get(l.vertex)));
    this.closeEnded(out, (s) => !logged.has(s));
    for (const v of status.vertexes ?? []) this.onVertex(v, out);
    for (const l of status.logs ?? []) this.onLog(l, out);
    for (const w of status.warnings ?? []) {
      const state = this.vertexes.get(w.vertex);
      out.push(`${state ? `#${state.index} ` : ''}WARNING: ${Buffer.from(w.short ?? '', 'base64').toString('utf8')}`);
    }
    return out.bytes();
  }

  /** Closing lines of ended steps whose grace has passed; call now and then while nothing arrives. */
  tick(): Buffer {
    const out = new LineOutput();
    this.closeEnded(out, () => true);
    return out.bytes();
  }

  private closeEnded(out: LineOutput, quiet: (s: VertexState) => boolean): void {
    if (this.ending.size === 0) return;
    const now = this.now();
    for (const s of [...this.ending].sort((a, b) => a.index - b.index)) {
      if (quiet(s) && now - s.endSeenAt! >= END_GRACE_MS) this.close(s, out);
    }
  }

  private close(s: VertexState, out: LineOutput): void {
    this.ending.delete(s);
    s.finished = true;
    this.endPartial(s, out);
    if (s.error) out.push(`#${s.index} ERROR: ${s.error}`);
    else if (s.cached) out.push(`#${s.index} CACHED`);
    else out.push(`#${s.index} DONE ${seconds(s.started, s.completed)}`);
  }

  private state(digest: string, name = ''): VertexState {
    let s = this.vertexes.get(digest);
    if (!s) {
      const index = this.nextIndex++;
      s = {
        index, name, started: null, completed: null, cached: false, error: null, announced: false, endSeenAt: null, finished: false,
        partial: null, logBytes: 0, logLines: 0, prefix: Buffer.from(`#${index} `),
      };
      this.vertexes.set(digest, s);
    }
    if (name && !s.name) s.name = name;
    return s;
  }

  private onVertex(v: RawVertex, out: LineOutput): void {
    const s = this.state(v.digest, v.name);
    if (v.started) s.started ??= v.started;
    if (v.cached) s.cached = true;
    if (v.completed) s.completed = v.completed;
    if (v.error) {
      // The first build of a repository and platform finds no registry cache to import; BuildKit
      // reports that on the import vertex and builds on. It is news, not an error.
      if (isMissingCacheImport(s.name, v.error)) {
        if (!s.announced) out.push(`#${s.index} ${s.name}`);
        if (!s.finished) out.push(`#${s.index} no cache there yet`);
        s.announced = true;
        s.finished = true;
        return;
      }
      s.error = v.error;
    }
    if (!s.announced && (s.started || s.cached || s.completed)) {
      s.announced = true;
      out.push(`#${s.index} ${s.name}`);
    }
    if (!s.finished && s.endSeenAt === null && (s.completed || s.error)) {
      // A cache hit ran nothing, so no output can follow: closed at once.
      if (s.cached && !s.error) return this.close(s, out);
      s.endSeenAt = this.now();
      this.ending.add(s);
    }
  }

  private onLog(l: RawLog, out: LineOutput): void {
    const s = this.state(l.vertex);
    const data = Buffer.from(l.data ?? '', 'base64');
    if (data.length === 0) return;
    s.logBytes += data.length;
    const last = data.lastIndexOf(0x0a);
    if (last < 0) {
      s.partial = s.partial ? Buffer.concat([s.partial, data]) : data;
      return;
    }
    // One buffer for every whole line of this message, each behind the step's `#N ` prefix: a
    // chatty step sends thousands of lines per message, too many for a buffer each.
    let lines = 0;
    for (let nl = data.indexOf(0x0a); nl >= 0 && nl <= last; nl = data.indexOf(0x0a, nl + 1)) lines++;
    const partialLength = s.partial?.length ?? 0;
    const lined = Buffer.allocUnsafe(partialLength + last + 1 + lines * s.prefix.length);
    let at = s.prefix.copy(lined, 0);
    if (s.partial) at += s.partial.copy(lined, at);
    let start = 0;
    for (let nl = data.indexOf(0x0a); nl >= 0 && nl <= last; nl = data.indexOf(0x0a, start)) {
      if (start > 0) at += s.prefix.copy(lined, at);
      at += data.copy(lined, at, start, nl + 1);
      start = nl + 1;
    }
    s.logLines += lines;
    s.partial = start < data.length ? Buffer.from(data.subarray(start)) : null;
    out.raw(lined);
  }

  private endPartial(s: VertexState, out: LineOutput): void {
    if (!s.partial) return;
    s.logLines++;
    out.raw(s.prefix, s.partial, NEWLINE);
    s.partial = null;
  }

  /** When the solve has ended: closing lines still waiting, and lines left without a trailing newline. */
  flush(): Buffer {
    const out = new LineOutput();
    for (const s of [...this.ending].sort((a, b) => a.index - b.index)) this.close(s, out);
    for (const s of this.vertexes.values()) this.endPartial(s, out);
    return out.bytes();
  }

  /** Named steps in the order BuildKit announced them. */
  steps(): BuildStep[] {
    return [...this.vertexes.values()]
      .filter((s) => s.name)
      .sort((a, b) => a.index - b.index)
      .map((s) => ({
        name: s.name,
        cached: s.cached,
        startedAt: s.started,
        completedAt: s.completed,
        ...(s.error ? { error: s.error } : {}),
        logBytes: s.logBytes,
        logLines: s.logLines + (s.partial ? 1 : 0),
      }));
  }

  /** Dockerfile steps served from cache (`[stage n/m] ...` vertexes marked cached). */
  cacheHits(): number {
    return [...this.vertexes.values()].filter((s) => s.cached && /^\[.*\d+\/\d+\]/.test(s.name)).length;
  }

  errors(): string[] {
    return [...this.vertexes.values()].filter((s) => s.error).map((s) => s.error!);
  }
}

function isMissingCacheImport(name: string, error: string): boolean {
  return name.startsWith('importing cache manifest from ') && /: not found$/.test(error);
}

/** How long a step's closing line waits for output that arrives after its end. */
export const END_GRACE_MS = 300;

const EMPTY = Buffer.alloc(0);
const NEWLINE = Buffer.from('\n');

/** Collects output lines as byte pieces, joined once. */
class LineOutput {
  private readonly parts: Buffer[] = [];
  push(line: string): void {
    this.parts.push(Buffer.from(`${line}\n`));
  }
  raw(...parts: Buffer[]): void {
    this.parts.push(...parts);
  }
  bytes(): Buffer {
    return this.parts.length ? Buffer.concat(this.parts) : EMPTY;
  }
}

function seconds(start: string | null, end: string | null): string {
  if (!start || !end) return '';
  const ms = Date.parse(end) - Date.parse(start);
  return Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)}s` : '';
}
