// A small Server-Sent Events reader over fetch, recording when each event arrived.
export interface SseEvent {
  event: string;
  id?: string;
  data: string;
  receivedAt: number;
}

export async function* readSse(res: Response): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const ev: SseEvent = { event: 'message', data: '', receivedAt: Date.now() };
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'event') ev.event = value;
        else if (field === 'id') ev.id = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length === 0 && ev.event === 'message') continue; // a comment (keepalive)
      ev.data = data.join('\n');
      yield ev;
    }
  }
}
