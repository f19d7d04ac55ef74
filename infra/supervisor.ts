/**
 * A small process supervisor for the stack's daemons (Temporal dev server, registry, buildkitd,
 * postgres): spawn with output appended to a log file, wait until ready, restart with backoff when
 * the daemon dies on its own, and stop on request (which suppresses auto-restart until start()).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export interface StartProcessOptions {
  name: string;
  cmd: string;
  args: string[];
  /** Full environment of the child (defaults to process.env). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** stdout and stderr are appended here. */
  logFile: string;
  /** Polled until it resolves true (a throw counts as "not yet"). */
  ready: () => Promise<boolean>;
  readyTimeoutMs?: number;
  /** Restart with backoff when the process exits without stop() being called. */
  restart?: boolean;
  /** Signal for a graceful stop (postgres wants SIGINT: SIGTERM waits for every client to leave). */
  stopSignal?: NodeJS.Signals;
  /** Run as this user (e.g. postgres refuses to run as root). */
  uid?: number;
  gid?: number;
  log?: (msg: string) => void;
}

export interface ProcessHandle {
  readonly name: string;
  /** Pid of the current child, undefined while none runs. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** How many times the supervisor restarted it on its own. */
  readonly restarts: number;
  readonly logFile: string;
  /** SIGTERM (or stopSignal), wait, SIGKILL after 10 s. Suppresses auto-restart until start(). */
  stop(): Promise<void>;
  /** Start again after stop() (no-op while running); resolves once ready. */
  start(): Promise<void>;
  /** Send a signal to the current child, e.g. SIGKILL to simulate a crash (auto-restart applies). */
  kill(signal?: NodeJS.Signals): void;
  /** Resolves once a child is running and ready (e.g. after an auto-restart). */
  waitReady(timeoutMs?: number): Promise<void>;
}

const STOP_GRACE_MS = 10_000;
const POLL_MS = 250;
const PROBE_TIMEOUT_MS = 15_000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15_000;
/** A child that stayed up this long resets the backoff. */
const HEALTHY_RUN_MS = 30_000;

/** Every live child, so a normal process exit can still take them down (see below). */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Children run in their own process group (so stop() can sweep grandchildren); that also means
  // they outlive us unless told. 'exit' handlers must be synchronous: send SIGTERM and go.
  process.on('exit', () => {
    for (const c of live) signalGroup(c.pid, 'SIGTERM');
  });
}

function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    /* group already gone */
  }
}

export function tailFile(path: string, lines = 30): string {
  try {
    const all = readFileSync(path, 'utf8').split('\n');
    if (all.at(-1) === '') all.pop();
    return all.slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function startProcess(opts: StartProcessOptions): Promise<ProcessHandle> {
  const handle = new SupervisedProcess(opts);
  await handle.start();
  return handle;
}

class SupervisedProcess implements ProcessHandle {
  readonly name: string;
  readonly logFile: string;
  restarts = 0;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  /** Set by stop(); cleared by start(). While set, an exit is expected and never restarted. */
  private stopped = true;
  private restartTimer: NodeJS.Timeout | undefined;
  private backoffMs = BACKOFF_MIN_MS;

  constructor(private readonly opts: StartProcessOptions) {
    this.name = opts.name;
    this.logFile = opts.logFile;
    mkdirSync(dirname(opts.logFile), { recursive: true });
    installExitHook();
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  private say(msg: string): void {
    this.opts.log?.(`[${this.name}] ${msg}`);
  }

  private appendLog(line: string): void {
    try {
      const fd = openSync(this.logFile, 'a');
      writeSync(fd, `--- kiln supervisor ${new Date().toISOString()}: ${line}\n`);
      closeSync(fd);
    } catch {
      /* logging must never break supervision */
    }
  }

  private spawnChild(): ChildProcess {
    const { cmd, args } = this.opts;
    this.appendLog(`start ${cmd} ${args.join(' ')}`);
    const fd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, {
        env: this.opts.env ?? process.env,
        cwd: this.opts.cwd,
        stdio: ['ignore', fd, fd],
        detached: true, // own process group: stop() can sweep whatever the daemon forked
        uid: this.opts.uid,
        gid: this.opts.gid,
      });
    } finally {
      closeSync(fd); // the child has its own copy
    }
    const startedAt = Date.now();
    live.add(child);
    this.exited = new Promise<void>((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        live.delete(child);
        // Orphans of the daemon (e.g. runc shims of a killed buildkitd) die with it. The group id
        // cannot be reused while any member is alive, so this never hits a stranger.
        signalGroup(child.pid, 'SIGKILL');
        this.appendLog(`exit code=${code} signal=${signal}`);
        if (this.child === child) this.onUnexpectedExit(code, signal, Date.now() - startedAt);
        resolve();
      };
      child.once('exit', done);
      child.once('error', (err) => {
        this.appendLog(`spawn error: ${err.message}`);
        // 'exit' does not follow a failed spawn (ENOENT, EACCES).
        if (child.pid === undefined) done(null, null);
      });
    });
    this.child = child;
    return child;
  }

  private onUnexpectedExit(code: number | null, signal: NodeJS.Signals | null, ranMs: number): void {
    if (this.stopped || !this.opts.restart) return;
    if (ranMs > HEALTHY_RUN_MS) this.backoffMs = BACKOFF_MIN_MS;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.say(`exited unexpectedly (code=${code} signal=${signal}); restarting in ${delay} ms`);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopped) return;
      this.restarts++;
      this.spawnChild();
      void this.pollReady(this.opts.readyTimeoutMs ?? 60_000).catch((err: Error) => {
        // Not fatal: if it died again, onUnexpectedExit schedules the next attempt.
        this.say(`restart not ready: ${err.message.split('\n')[0]}`);
      });
    }, delay);
  }

  /** Polls ready() while the current child lives; throws with the log tail on death or timeout. */
  private async pollReady(timeoutMs: number): Promise<void> {
    const child = this.child;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!child || child !== this.child || !this.running) {
        throw new Error(
          `${this.name} exited before it was ready (code=${child?.exitCode} signal=${child?.signalCode}); last lines of ${this.logFile}:\n${tailFile(this.logFile)}`,
        );
      }
      const ok = await this.probe(deadline);
      // A readiness probe can be answered by someone else on the same port: the child must be alive.
      if (ok && this.running && child === this.child) return;
      if (Date.now() > deadline) {
        throw new Error(
          `${this.name} was not ready within ${Math.round(timeoutMs / 1000)} s; last lines of ${this.logFile}:\n${tailFile(this.logFile)}`,
        );
      }
      await sleep(POLL_MS);
    }
  }

  /** One ready() call; a throw is "not yet", and a hung probe cannot outlast the deadline. */
  private async probe(deadline: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const limit = Math.max(1000, Math.min(PROBE_TIMEOUT_MS, deadline - Date.now()));
    try {
      return await Promise.race([
        this.opts.ready().catch(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), limit))),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async start(): Promise<void> {
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
    }
    this.stopped = false;
    if (this.running) return this.waitReady();
    this.backoffMs = BACKOFF_MIN_MS;
    this.spawnChild();
    try {
      await this.pollReady(this.opts.readyTimeoutMs ?? 60_000);
    } catch (err) {
      // A failed start leaves nothing behind and is not auto-restarted.
      await this.stop();
      throw err;
    }
    this.say(`ready (pid ${this.pid})`);
  }

  async waitReady(timeoutMs = this.opts.readyTimeoutMs ?? 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.stopped) throw new Error(`${this.name} is stopped`);
      if (this.running && (await this.probe(deadline)) && this.running) return;
      if (Date.now() > deadline) {
        throw new Error(`${this.name} was not ready within ${Math.round(timeoutMs / 1000)} s; last lines of ${this.logFile}:\n${tailFile(this.logFile)}`);
      }
      await sleep(POLL_MS);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
    }
    const child = this.child;
    if (!child || !this.running) {
      await this.exited;
      return;
    }
    this.appendLog('stop requested');
    try {
      child.kill(this.opts.stopSignal ?? 'SIGTERM');
    } catch {
      /* already gone */
    }
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), STOP_GRACE_MS).unref());
    if ((await Promise.race([this.exited.then(() => 'exited' as const), timer])) === 'timeout') {
      this.say(`did not stop within ${STOP_GRACE_MS / 1000} s; SIGKILL`);
      signalGroup(child.pid, 'SIGKILL');
      await this.exited;
    }
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    const child = this.child;
    if (!child || !this.running) return;
    this.appendLog(`kill(${signal}) requested`);
    child.kill(signal);
  }
}
