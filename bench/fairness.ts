// Row (a) of issue #10: namespace A floods the deployment (20 builds, as many running at once as
// the whole deployment allows), then namespace B submits one. B's wait until its build starts,
// against one build's duration: fair slots give B the first slot that frees.
import { randomBytes } from 'node:crypto';
import { api, type BuildCtx } from './builds';
import { median } from './stats';

export const FLOOD = 20;
/** Each build's one RUN sleeps this long (no cache), so a build's duration is mostly known work. */
export const SLEEP_SECONDS = 3;

const t = (iso: string) => new Date(iso).getTime();

export async function benchFairness(ctx: Pick<BuildCtx, 'kiln' | 'token' | 'stack' | 'runs'>): Promise<{ wait: number; duration: number; ratio: number }> {
  const waits: number[] = [];
  const durations: number[] = [];
  const ratios: number[] = [];
  const submit = async (namespace: string, i: number, nonce: string) =>
    (
      await api(ctx, '/api/v1/builds', {
        repository: `${namespace}/app`,
        dockerfile: `FROM ${ctx.stack.registry}/base/busybox\nRUN sleep ${SLEEP_SECONDS} && echo ${nonce} ${i}`,
        platforms: ['linux/amd64'],
        tags: [`b${i}`],
        noCache: true,
      })
    ).buildId as string;
  const view = (id: string) => api(ctx, `/api/v1/builds/${id}`);
  const terminal = (s: string) => ['succeeded', 'failed', 'canceled', 'timed_out'].includes(s);
  for (let run = 0; run < ctx.runs; run++) {
    const nonce = randomBytes(4).toString('hex');
    const a: string[] = [];
    for (let i = 0; i < FLOOD; i++) a.push(await submit('fair-a', i, nonce));
    const b = await submit('fair-b', 0, nonce);
    let bView = await view(b);
    const deadline = Date.now() + 10 * 60_000;
    while (!bView.startedAt) {
      if (Date.now() > deadline) throw new Error(`B's build ${b} never started`);
      await new Promise((r) => setTimeout(r, 100));
      bView = await view(b);
    }
    // One build's duration: A's builds that ran when B asked, start to finish.
    const aViews = await Promise.all(a.map(view));
    const first = aViews.filter((v) => v.startedAt && t(v.startedAt) <= t(bView.createdAt));
    for (;;) {
      const now = await Promise.all(first.map((v) => view(v.id)));
      if (now.every((v) => terminal(v.status))) {
        const d = median(now.map((v) => t(v.finishedAt) - t(v.startedAt)));
        const wait = t(bView.startedAt) - t(bView.createdAt);
        waits.push(wait);
        durations.push(d);
        ratios.push(wait / d);
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    // The rest of the flood is not measured: cancel it so the next run starts on an idle deployment.
    await Promise.all([...a, b].map((id) => api(ctx, `/api/v1/builds/${id}/cancel`, {}).catch(() => undefined)));
    for (const id of [...a, b]) {
      while (!terminal((await view(id)).status)) await new Promise((r) => setTimeout(r, 200));
    }
  }
  return { wait: median(waits), duration: median(durations), ratio: median(ratios) };
}
