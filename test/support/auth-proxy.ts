// A private registry for tests: HTTP basic auth in front of a real registry (a reverse proxy on
// loopback, which BuildKit talks to over plain HTTP like any loopback registry).
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface AuthProxy {
  /** host:port */
  address: string;
  /** Requests seen, and whether they carried the right credentials. */
  requests: { method: string; path: string; authorized: boolean }[];
  close(): Promise<void>;
}

export async function startAuthProxy(upstream: string, user: string, password: string): Promise<AuthProxy> {
  const expected = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  const requests: AuthProxy['requests'] = [];
  const server = createServer((req, res) => {
    const authorized = req.headers.authorization === expected;
    requests.push({ method: req.method ?? '', path: req.url ?? '', authorized });
    if (!authorized) {
      res.writeHead(401, {
        'www-authenticate': 'Basic realm="kiln-test-private-registry"',
        'docker-distribution-api-version': 'registry/2.0',
        'content-type': 'application/json',
      });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
      return;
    }
    const headers: IncomingHttpHeaders = { ...req.headers, host: upstream };
    delete headers.authorization;
    const up = httpRequest(`http://${upstream}${req.url}`, { method: req.method, headers }, (upRes) => {
      const out = { ...upRes.headers };
      if (typeof out.location === 'string') out.location = out.location.replace(`http://${upstream}`, `http://${address}`);
      res.writeHead(upRes.statusCode ?? 502, out);
      upRes.pipe(res);
    });
    up.on('error', (err) => {
      res.writeHead(502);
      res.end(String(err));
    });
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    address,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
