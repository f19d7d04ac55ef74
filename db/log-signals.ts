/** The channel the migration's triggers notify (payload: the build id) on each log chunk and status change. */
export const BUILD_LOG_CHANNEL = 'kiln_build_log';

/** Subscribes to a channel; resolves once listening. Postgres (postgres.js) and PGlite both offer it. */
export type Listen = (channel: string, onPayload: (payload: string) => void) => Promise<unknown>;

export interface BuildLogWatch {
  /** Bumped by every notification for the build. */
  version(): number;
  /** Resolves when the version passes `since` (at once if it already has), after `timeoutMs`, or on abort. */
  changed(since: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  close(): void;
}

/**
 * Wakes log followers when their build's log or status changes, from one LISTEN per process:
 * Postgres NOTIFY across processes, PGlite's own notifications in process. Followers read the
 * version before they read the database, so a change during the read is never missed.
 */
export class BuildLogSignals {
  private readonly builds = new Map<string, { version: number; waiters: Set<() => void>; watchers: number }>();
  private listening: Promise<unknown> | undefined;

  constructor(private readonly listen: Listen) {}

  /** Called with a channel payload (a build id); also usable in-process. */
  notify(buildId: string): void {
    const entry = this.builds.get(buildId);
    if (!entry) return;
    entry.version++;
    for (const wake of entry.waiters) wake();
    entry.waiters.clear();
  }

  async watch(buildId: string): Promise<BuildLogWatch> {
    this.listening ??= this.listen(BUILD_LOG_CHANNEL, (payload) => this.notify(payload)).catch((err) => {
      this.listening = undefined;
      throw err;
    });
    await this.listening;
    let entry = this.builds.get(buildId);
    if (!entry) this.builds.set(buildId, (entry = { version: 0, waiters: new Set(), watchers: 0 }));
    entry.watchers++;
    const e = entry;
    let closed = false;
    return {
      version: () => e.version,
      changed: (since, timeoutMs, signal) =>
        new Promise<boolean>((resolve) => {
          if (e.version !== since || signal?.aborted) return resolve(e.version !== since);
          const done = () => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', done);
            e.waiters.delete(done);
            resolve(e.version !== since);
          };
          const timer = setTimeout(done, timeoutMs);
          signal?.addEventListener('abort', done, { once: true });
          e.waiters.add(done);
        }),
      close: () => {
        if (closed) return;
        closed = true;
        if (--e.watchers === 0) this.builds.delete(buildId);
      },
    };
  }
}
