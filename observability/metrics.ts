// Prometheus metrics (prom-client). Two registries:
// - the process registry: Node's default process metrics and the build metrics, recorded by the
//   activities where a build's outcome and phases happen (so each process counts what it ran);
// - one HTTP registry per API app (tests build many apps in one process and must not share counts).
// GET /metrics serves both merged.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Db } from '../db/client';
import { countBuildsByStatus } from '../db/queries/builds';

/** Seconds: from a few seconds (cached builds) to the one-hour default time limit and past it. */
const BUILD_SECONDS = [1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200];
const QUEUE_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];
const HTTP_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** `phase` label of whole-build phases; `building` is per platform. */
export const ALL_PLATFORMS = 'all';

function createBuildMetrics(registry: Registry) {
  return {
    finished: new Counter({
      name: 'kiln_builds_finished_total',
      help: 'Builds that reached a terminal status, by status.',
      labelNames: ['status'] as const,
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'kiln_build_duration_seconds',
      help: 'From a build starting to its terminal status, by status.',
      labelNames: ['status'] as const,
      buckets: BUILD_SECONDS,
      registers: [registry],
    }),
    queueWait: new Histogram({
      name: 'kiln_build_queue_wait_seconds',
      help: 'From a build being accepted to its workflow starting it.',
      buckets: QUEUE_SECONDS,
      registers: [registry],
    }),
    phaseDuration: new Histogram({
      name: 'kiln_build_phase_duration_seconds',
      help: `Time spent in each build phase; platform "${ALL_PLATFORMS}" for whole-build phases.`,
      labelNames: ['phase', 'platform', 'outcome'] as const,
      buckets: BUILD_SECONDS,
      registers: [registry],
    }),
    steps: new Counter({
      name: 'kiln_build_steps_total',
      help: 'BuildKit steps of finished platform builds, by platform and whether the cache served them.',
      labelNames: ['platform', 'cached'] as const,
      registers: [registry],
    }),
    logBytes: new Counter({
      name: 'kiln_build_log_bytes_total',
      help: 'Build log bytes produced, by platform (`control` for lines of the build as a whole).',
      labelNames: ['platform'] as const,
      registers: [registry],
    }),
  };
}

let processRegistry: Registry | undefined;
let processBuildMetrics: ReturnType<typeof createBuildMetrics> | undefined;

/** This process's registry: default process metrics and build metrics. */
export function kilnProcessRegistry(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: 'kiln_' });
    processBuildMetrics = createBuildMetrics(processRegistry);
  }
  return processRegistry;
}

export type BuildMetrics = ReturnType<typeof createBuildMetrics>;

/** The build metrics of this process. */
export function buildMetrics(): BuildMetrics {
  kilnProcessRegistry();
  return processBuildMetrics!;
}

/** True when no token is configured, or the Authorization header is `Bearer <token>`. */
export function metricsAuthorized(authorization: string | undefined, token: string | undefined): boolean {
  if (!token) return true;
  const given = /^Bearer (.+)$/i.exec(authorization ?? '')?.[1];
  if (!given) return false;
  // Hashing both sides first makes the comparison constant-time whatever the lengths.
  const digest = (v: string) => createHash('sha256').update(v, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(token));
}

/** Seconds between two instants, never negative (clocks of different hosts). */
export function secondsBetween(from: Date | null | undefined, to: Date): number | null {
  if (!from) return null;
  return Math.max(0, (to.getTime() - from.getTime()) / 1000);
}

/** Runs `work` and observes its duration as `phase`, labelled with its outcome. */
export async function timePhase<T>(phase: string, platform: string, work: () => Promise<T>): Promise<T> {
  const end = buildMetrics().phaseDuration.startTimer({ phase, platform });
  try {
    const out = await work();
    end({ outcome: 'ok' });
    return out;
  } catch (err) {
    end({ outcome: 'error' });
    throw err;
  }
}

/** HTTP metrics of one API app, plus builds by status read from the database at scrape time. */
export class HttpMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'kiln_http_requests_total',
    help: 'HTTP requests handled, by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  private readonly durations = new Histogram({
    name: 'kiln_http_request_duration_seconds',
    help: 'Time to produce the response headers, by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: HTTP_SECONDS,
    registers: [this.registry],
  });
  private readonly merged: Registry;

  constructor(db: Db) {
    new Gauge({
      name: 'kiln_builds_total',
      help: 'Builds recorded in the database, by status.',
      labelNames: ['status'] as const,
      registers: [this.registry],
      async collect() {
        const byStatus = await countBuildsByStatus(db);
        for (const [status, n] of Object.entries(byStatus)) this.set({ status }, n);
      },
    });
    this.merged = Registry.merge([this.registry, kilnProcessRegistry()]);
  }

  observe(method: string, route: string, status: number, seconds: number): void {
    const labels = { method, route, status: String(status) };
    this.requests.inc(labels);
    this.durations.observe(labels, seconds);
  }

  get contentType(): string {
    return this.merged.contentType;
  }

  render(): Promise<string> {
    return this.merged.metrics();
  }
}
