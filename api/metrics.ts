import type { Db } from '../db/client';
import { countBuildsByStatus } from '../db/queries/builds';

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const labels = (l: Record<string, string>) =>
  `{${Object.entries(l)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(',')}}`;

/** In-process HTTP metrics; one instance per app so tests do not share counters. */
export class HttpMetrics {
  private readonly requests = new Map<string, { labels: Record<string, string>; n: number }>();
  private readonly durations = new Map<string, { labels: Record<string, string>; buckets: number[]; sum: number; n: number }>();

  observe(method: string, route: string, status: number, seconds: number): void {
    const l = { method, route, status: String(status) };
    const key = JSON.stringify(l);
    const r = this.requests.get(key) ?? { labels: l, n: 0 };
    r.n += 1;
    this.requests.set(key, r);

    const dl = { method, route };
    const dkey = JSON.stringify(dl);
    const d = this.durations.get(dkey) ?? { labels: dl, buckets: BUCKETS.map(() => 0), sum: 0, n: 0 };
    BUCKETS.forEach((b, i) => {
      if (seconds <= b) d.buckets[i]! += 1;
    });
    d.sum += seconds;
    d.n += 1;
    this.durations.set(dkey, d);
  }

  async render(db: Db): Promise<string> {
    const out: string[] = [];
    out.push('# HELP kiln_http_requests_total HTTP requests handled, by method, route and status.');
    out.push('# TYPE kiln_http_requests_total counter');
    for (const r of this.requests.values()) out.push(`kiln_http_requests_total${labels(r.labels)} ${r.n}`);

    out.push('# HELP kiln_http_request_duration_seconds Time to produce the response headers.');
    out.push('# TYPE kiln_http_request_duration_seconds histogram');
    for (const d of this.durations.values()) {
      BUCKETS.forEach((b, i) =>
        out.push(`kiln_http_request_duration_seconds_bucket${labels({ ...d.labels, le: String(b) })} ${d.buckets[i]}`),
      );
      out.push(`kiln_http_request_duration_seconds_bucket${labels({ ...d.labels, le: '+Inf' })} ${d.n}`);
      out.push(`kiln_http_request_duration_seconds_sum${labels(d.labels)} ${d.sum}`);
      out.push(`kiln_http_request_duration_seconds_count${labels(d.labels)} ${d.n}`);
    }

    const byStatus = await countBuildsByStatus(db);
    out.push('# HELP kiln_builds_total Builds recorded in the database, by status.');
    out.push('# TYPE kiln_builds_total gauge');
    for (const [status, n] of Object.entries(byStatus)) out.push(`kiln_builds_total${labels({ status })} ${n}`);
    return `${out.join('\n')}\n`;
  }
}
