// Following a build live: the log as Server-Sent Events, and the build's per-platform progress.
import type { BuildBody } from '../api/client';

export interface SseEvent {
  event: string;
  id?: string;
  data: string;
}

/** Parses an SSE response body into events (the few fields Kiln sends). */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  let event: Partial<SseEvent> & { data?: string } = {};
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, '');
      buffer = buffer.slice(nl + 1);
      if (line === '') {
        if (event.data !== undefined) yield { event: event.event ?? 'message', id: event.id, data: event.data };
        event = {};
      } else if (!line.startsWith(':')) {
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'data') event.data = event.data === undefined ? value : `${event.data}\n${value}`;
        else if (field === 'event') event.event = value;
        else if (field === 'id') event.id = value;
      }
    }
  }
}

/** One line per platform: `linux/amd64  running   3/5 steps (1 cached)  [2/3] RUN make`. */
export function progressLines(build: BuildBody): string[] {
  return build.platforms.map((p) => {
    const cached = p.steps.filter((s) => s.cached).length;
    const current = [...p.steps].reverse().find((s) => s.startedAt && !s.completedAt && !s.cached);
    const step = current ? `  ${current.name}` : '';
    return `${p.platform.padEnd(12)} ${p.status.padEnd(9)} ${p.progress.completedSteps}/${p.progress.totalSteps} steps (${cached} cached)${step}`;
  });
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
