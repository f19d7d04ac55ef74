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
  finished: boolean;
  /** Output not yet ended by a newline. */
  partial: string;
}

/**
 * Turns BuildKit's rawjson progress into ordered human log lines (in the style of
 * `--progress=plain`: `#3 [2/3] RUN ...`, `#3 DONE 0.4s`) and a step list with cache hits.
 * Vertexes repeat as they update, so state is merged by digest.
 */
export class ProgressTracker {
  private readonly vertexes = new Map<string, VertexState>();
  /** The `#N` the next new vertex gets. */
  nextIndex: number;
  /** Lines that were not JSON: buildctl's own messages, including its final error. */
  readonly plainOutput: string[] = [];

  /** `firstIndex` lets a second solve of one build continue the first one's `#N` numbering. */
  constructor(opts: { firstIndex?: number } = {}) {
    this.nextIndex = opts.firstIndex ?? 1;
  }

  /** Feeds one stderr line; returns the log lines it produced. */
  push(raw: string): string[] {
    const text = raw.trim();
    if (!text) return [];
    let status: RawStatus;
    try {
      status = JSON.parse(text) as RawStatus;
    } catch {
      this.plainOutput.push(text);
      return [text];
    }
    if (typeof status !== 'object' || status === null) return [];
    const out: string[] = [];
    for (const v of status.vertexes ?? []) this.onVertex(v, out);
    for (const l of status.logs ?? []) this.onLog(l, out);
    for (const w of status.warnings ?? []) {
      const state = this.vertexes.get(w.vertex);
      out.push(`${state ? `#${state.index} ` : ''}WARNING: ${decode(w.short ?? '')}`);
    }
    return out;
  }

  private state(digest: string, name = ''): VertexState {
    let s = this.vertexes.get(digest);
    if (!s) {
      s = { index: this.nextIndex++, name, started: null, completed: null, cached: false, error: null, announced: false, finished: false, partial: '' };
      this.vertexes.set(digest, s);
    }
    if (name && !s.name) s.name = name;
    return s;
  }

  private onVertex(v: RawVertex, out: string[]): void {
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
    if (!s.finished && (s.completed || s.error)) {
      s.finished = true;
      if (s.partial) {
        out.push(`#${s.index} ${s.partial}`);
        s.partial = '';
      }
      if (s.error) out.push(`#${s.index} ERROR: ${s.error}`);
      else if (s.cached) out.push(`#${s.index} CACHED`);
      else out.push(`#${s.index} DONE ${seconds(s.started, s.completed)}`);
    }
  }

  private onLog(l: RawLog, out: string[]): void {
    const s = this.state(l.vertex);
    const chunk = s.partial + decode(l.data ?? '');
    const lines = chunk.split(/\r?\n/);
    s.partial = lines.pop() ?? '';
    for (const line of lines) out.push(`#${s.index} ${line}`);
  }

  /** Lines left without a trailing newline when the build ends. */
  flush(): string[] {
    const out: string[] = [];
    for (const s of this.vertexes.values()) {
      if (s.partial) out.push(`#${s.index} ${s.partial}`);
      s.partial = '';
    }
    return out;
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

function decode(b64: string): string {
  return Buffer.from(b64, 'base64').toString('utf8');
}

function seconds(start: string | null, end: string | null): string {
  if (!start || !end) return '';
  const ms = Date.parse(end) - Date.parse(start);
  return Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)}s` : '';
}
