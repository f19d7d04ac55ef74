// Shared by the stack's service launchers: port checks, log and socket locations.
import { createHash } from 'node:crypto';
import { createServer, createConnection } from 'node:net';
import { join, resolve } from 'node:path';

/** True if something accepts TCP connections on host:port. */
export function tcpOpen(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((r) => {
    const s = createConnection({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      r(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Throws a clear error if host:port cannot be bound (most likely another Kiln is running). */
export async function assertPortFree(port: number, what: string, host = '127.0.0.1'): Promise<void> {
  await new Promise<void>((ok, fail) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE'
          ? `port ${port} on ${host} is already in use — is another Kiln (or ${what}) running? Stop it, choose another port, or point Kiln at the running one`
          : `cannot listen on ${host}:${port}: ${err.message}`;
      fail(new Error(`${what}: ${why}`));
    });
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => ok()));
  });
}

export async function httpStatus(url: string, timeoutMs = 2000): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return 0;
  }
}

export function logsDir(dataDir: string): string {
  return join(dataDir, 'logs');
}

/** sockaddr_un.sun_path holds 108 bytes; keep a margin. */
export const MAX_SOCKET_PATH = 100;

/** A short per-data-dir directory for sockets when the data dir path is too long for them. */
export function shortRuntimeDir(dataDir: string): string {
  const hash = createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 12);
  return join('/tmp', `kiln-${hash}`);
}

export function buildkitSocketPath(dataDir: string): string {
  const preferred = join(resolve(dataDir), 'buildkit', 'buildkitd.sock');
  return preferred.length <= MAX_SOCKET_PATH ? preferred : join(shortRuntimeDir(dataDir), 'buildkitd.sock');
}

export const DEFAULT_PORTS = { temporal: 7233, temporalUi: 8233, registry: 5000, postgres: 55432 } as const;

/** A `host:port` on this machine's loopback. */
export function isLoopback(hostPort: string): boolean {
  const host = hostPort.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
