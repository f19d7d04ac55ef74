/**
 * The real local stack (SPEC §1): Temporal dev server, registry, buildkitd (amd64 + arm64 through
 * QEMU), Postgres and the busybox base image — started in a temp data dir on non-default ports.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { indexPlatforms } from '../../infra/base-image';
import { KILN_SEARCH_ATTRIBUTES } from '../../domain/temporal';
import { buildkitPlatforms } from '../../infra/buildkitd';
import { run } from '../../infra/process-run';
import { startRegistry } from '../../infra/registry-server';
import { startStack, type Stack } from '../../infra/stack';
import { startProcess, type ProcessHandle } from '../../infra/supervisor';
import { toolPaths } from '../../infra/tools';

const PORTS = { temporal: 17233, temporalUi: 18233, registry: 15000, postgres: 15432 };
const tools = toolPaths();

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Any process left in the process group the supervisor gave the daemon? */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function v2Status(registry: string): Promise<number> {
  try {
    const r = await fetch(`http://${registry}/v2/`, { signal: AbortSignal.timeout(3000) });
    return r.status;
  } catch {
    return 0;
  }
}

async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('local stack', () => {
  let dataDir: string;
  let stack: Stack;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'kiln-stack-'));
    stack = await startStack({ dataDir, ports: PORTS, withPostgres: true, log: () => {} });
  }, 600_000);

  afterAll(async () => {
    await stack?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }, 120_000);

  it('reports its addresses', () => {
    expect(stack.temporalAddress).toBe(`127.0.0.1:${PORTS.temporal}`);
    expect(stack.temporalUiUrl).toBe(`http://127.0.0.1:${PORTS.temporalUi}`);
    expect(stack.registry).toBe(`127.0.0.1:${PORTS.registry}`);
    expect(stack.buildkit['linux/amd64']).toMatch(/^unix:\/\/.*buildkitd\.sock$/);
    expect(stack.buildkit['linux/arm64']).toBe(stack.buildkit['linux/amd64']);
    expect(stack.postgresUrl).toBe(`postgres://kiln@127.0.0.1:${PORTS.postgres}/kiln`);
    expect(Object.keys(stack.components).sort()).toEqual(['buildkitd', 'postgres', 'registry', 'temporal']);
  });

  it('registry answers /v2/', async () => {
    expect(await v2Status(stack.registry)).toBe(200);
  });

  it('buildkitd lists linux/amd64 and linux/arm64', async () => {
    const platforms = await buildkitPlatforms(tools.buildctl, stack.buildkit['linux/amd64']);
    expect(platforms).toEqual(expect.arrayContaining(['linux/amd64', 'linux/arm64']));
  });

  it('temporal answers and has the Kiln search attributes', async () => {
    const r = await run(tools.temporal, ['operator', 'search-attribute', 'list', '--address', stack.temporalAddress, '-o', 'json'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const text = r.stdout;
    for (const key of KILN_SEARCH_ATTRIBUTES.map((a) => a.name)) expect(text).toContain(key);
  }, 60_000);

  it('postgres accepts connections to the kiln database', async () => {
    const r = await run(join(tools.pgBin, 'psql'), [stack.postgresUrl!, '-tAc', 'SELECT current_database()'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('kiln');
  }, 60_000);

  it('base image index has linux/amd64 and linux/arm64', async () => {
    const platforms = await indexPlatforms(stack.registry);
    expect(platforms).toEqual(expect.arrayContaining(['linux/amd64', 'linux/arm64']));
  });

  it('images FROM the base image RUN on both platforms (arm64 through QEMU)', async () => {
    const ctx = join(dataDir, 'probe');
    mkdirSync(ctx, { recursive: true });
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${stack.registry}/base/busybox:latest\nRUN echo "arch=$(uname -m)"\n`);
    const r = await run(
      tools.buildctl,
      ['--addr', stack.buildkit['linux/amd64'], 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`,
        '--opt', 'platform=linux/amd64,linux/arm64', '--no-cache', '--progress', 'plain'],
      { timeoutMs: 180_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('arch=x86_64');
    expect(r.stderr).toContain('arch=aarch64');
  }, 240_000);

  it('a port in use is reported clearly', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((ok) => blocker.listen(PORTS.registry + 7, '127.0.0.1', ok));
    try {
      await expect(startRegistry({ dataDir: join(dataDir, 'other'), port: PORTS.registry + 7 })).rejects.toThrow(/already in use/);
    } finally {
      blocker.close();
    }
  });

  it('registry: stop() stays down, start() brings it back', async () => {
    const reg = stack.components.registry!;
    const before = reg.pid;
    await reg.stop();
    expect(alive(before)).toBe(false);
    // Stopped on purpose: no auto-restart.
    await new Promise((r) => setTimeout(r, 2000));
    expect(reg.running).toBe(false);
    expect(await v2Status(stack.registry)).toBe(0);
    await reg.start();
    expect(reg.pid).not.toBe(before);
    expect(await v2Status(stack.registry)).toBe(200);
  }, 60_000);

  it('registry: auto-restarts after SIGKILL', async () => {
    const reg = stack.components.registry!;
    const before = reg.pid;
    reg.kill('SIGKILL');
    await waitFor(() => reg.pid !== before && reg.running, 30_000, 'a new registry process');
    await reg.waitReady(30_000);
    expect(await v2Status(stack.registry)).toBe(200);
    expect(reg.restarts).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('buildkitd: stop() and start() again keep its workers', async () => {
    const bk = stack.components.buildkitd!;
    await bk.stop();
    expect(bk.running).toBe(false);
    await bk.start();
    const platforms = await buildkitPlatforms(tools.buildctl, stack.buildkit['linux/amd64']);
    expect(platforms).toEqual(expect.arrayContaining(['linux/amd64', 'linux/arm64']));
  }, 120_000);

  it('stop() leaves no child processes', async () => {
    const handles: ProcessHandle[] = Object.values(stack.components);
    const pids = handles.map((h) => h.pid!);
    expect(pids.every(alive)).toBe(true);
    await stack.stop();
    for (const h of handles) expect(h.running, h.name).toBe(false);
    for (const pid of pids) {
      expect(alive(pid), `pid ${pid}`).toBe(false);
      expect(groupAlive(pid), `process group ${pid}`).toBe(false);
    }
    for (const [name, port] of Object.entries(PORTS)) {
      const srv = createServer();
      await new Promise<void>((ok, fail) => {
        srv.once('error', () => fail(new Error(`${name} port ${port} still bound`)));
        srv.listen(port, '127.0.0.1', () => srv.close(() => ok()));
      });
    }
  }, 120_000);
});

describe('supervisor', () => {
  it('a process that never gets ready fails with the tail of its log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-sup-'));
    try {
      await expect(
        startProcess({
          name: 'doomed',
          cmd: 'sh',
          args: ['-c', 'echo boom-from-child; exit 3'],
          logFile: join(dir, 'logs', 'doomed.log'),
          ready: async () => false,
          readyTimeoutMs: 5_000,
          restart: true,
        }),
      ).rejects.toThrow(/doomed exited before it was ready[\s\S]*boom-from-child/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);

  it('a process that is not ready in time is killed and reported', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-sup-'));
    try {
      const err = await startProcess({
        name: 'slow',
        cmd: 'sh',
        args: ['-c', 'echo waiting-forever; exec sleep 987'],
        logFile: join(dir, 'logs', 'slow.log'),
        ready: async () => false,
        readyTimeoutMs: 1_500,
      }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/not ready within[\s\S]*waiting-forever/);
      const ps = await run('pgrep', ['-f', '^sleep 987$']);
      expect(ps.stdout.trim()).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);
});
