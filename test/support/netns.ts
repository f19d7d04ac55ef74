// Addresses a network test creates on this machine (and removes): a dummy interface holding a
// host address, and a network namespace standing in for a public host. Tests send traffic only to
// these, to loopback, and to the build bridge's gateway.
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { run } from '../../infra/process-run';

async function ip(args: string[]): Promise<void> {
  const r = await run('ip', args, { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

/**
 * An interface of the test's own with one address of the build host (10.252.x.y/32, at random).
 * A veth pair rather than a dummy link: some kernels (this one) lack the dummy module.
 */
export async function createDummyHostAddress(): Promise<{ address: string; remove(): Promise<void> }> {
  const id = randomBytes(3).toString('hex');
  const name = `ktd${id}`;
  const address = `10.252.${randomBytes(1)[0]! % 250}.${1 + (randomBytes(1)[0]! % 250)}`;
  await ip(['link', 'add', name, 'type', 'veth', 'peer', 'name', `kte${id}`]);
  await ip(['addr', 'add', `${address}/32`, 'dev', name]);
  await ip(['link', 'set', name, 'up']);
  return { address, remove: () => ip(['link', 'delete', name]).catch(() => undefined) };
}

/**
 * A network namespace joined to the host by a veth pair, holding a "public" address (TEST-NET-2,
 * 198.51.100.0/24: outside every range the build firewall refuses) with a TCP server that answers
 * `greeting` to every connection. Reaching it from a RUN step proves egress through the bridge's NAT.
 */
export async function createPublicHost(greeting: string): Promise<{ address: string; port: number; remove(): Promise<void> }> {
  const id = randomBytes(3).toString('hex');
  const ns = `ktpub${id}`;
  const hostSide = `ktph${id}`;
  const nsSide = `ktpn${id}`;
  const octet = 1 + (randomBytes(1)[0]! % 120);
  const address = `198.51.100.${octet + 1}`;
  const hostAddress = `198.51.100.${octet + 128}`;
  const port = 18_000 + (randomBytes(2).readUInt16BE() % 2000);
  await ip(['netns', 'add', ns]);
  let server: ReturnType<typeof run> | undefined;
  try {
    await ip(['link', 'add', hostSide, 'type', 'veth', 'peer', 'name', nsSide]);
    await ip(['link', 'set', nsSide, 'netns', ns]);
    await ip(['addr', 'add', `${hostAddress}/32`, 'dev', hostSide]);
    await ip(['link', 'set', hostSide, 'up']);
    await ip(['route', 'add', `${address}/32`, 'dev', hostSide]);
    await ip(['-n', ns, 'addr', 'add', `${address}/32`, 'dev', nsSide]);
    await ip(['-n', ns, 'link', 'set', nsSide, 'up']);
    await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    await ip(['-n', ns, 'route', 'add', `${hostAddress}/32`, 'dev', nsSide]);
    await ip(['-n', ns, 'route', 'add', 'default', 'via', hostAddress, 'dev', nsSide]);
    // A node process inside the namespace: the server exits with it (killed by remove()).
    const script = `require('net').createServer((s)=>s.end(${JSON.stringify(greeting + '\n')})).listen(${port}, '0.0.0.0')`;
    server = run('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { timeoutMs: 15 * 60_000 });
    await new Promise((r) => setTimeout(r, 500));
  } catch (err) {
    await ip(['netns', 'delete', ns]).catch(() => undefined);
    throw err;
  }
  return {
    address,
    port,
    async remove() {
      await run('ip', ['netns', 'pids', ns]).then(async (r) => {
        for (const pid of r.stdout.split(/\s+/).filter(Boolean)) await run('kill', ['-9', pid]);
      });
      await server;
      await ip(['netns', 'delete', ns]).catch(() => undefined);
      await ip(['link', 'delete', hostSide]).catch(() => undefined);
    },
  };
}

/** A TCP server on every address of the host (0.0.0.0) that answers `greeting`. */
export async function listenEverywhere(greeting: string): Promise<{ port: number; server: Server; close(): Promise<void> }> {
  const server = createServer((s) => s.end(`${greeting}\n`));
  await new Promise<void>((r) => server.listen({ port: 0, host: '0.0.0.0' }, r));
  const { port } = server.address() as { port: number };
  return { port, server, close: () => new Promise((r) => server.close(() => r())) };
}

/** Whether this host can connect to host:port (the control for a probe that must fail from a step). */
export async function hostCanConnect(host: string, port: number): Promise<string | null> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let data = '';
    s.setTimeout(3000, () => {
      s.destroy();
      resolve(null);
    });
    s.on('data', (d) => (data += d.toString()));
    s.on('end', () => resolve(data.trim()));
    s.on('error', () => resolve(null));
  });
}
