import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

const ACCEPT_ALL = Object.values(MEDIA_TYPES).join(', ');

/**
 * Sent with every registry request. Registry notifications carry the pusher's User-Agent, which
 * is how /webhooks/registry tells Kiln's own index pushes from tags pushed by hand.
 */
export const KILN_USER_AGENT = `kiln/${(createRequire(import.meta.url)('../package.json') as { version: string }).version}`;

export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface Manifest {
  mediaType: string;
  digest: string;
  body: Buffer;
  json: any;
}

/** A registry HTTP error; `status` lets callers tell a missing manifest from an outage. */
export class RegistryError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/**
 * A small client for the OCI distribution API (manifests and blobs), with basic and token auth.
 * Written here because no well-kept npm package covers pushing manifests to any registry.
 */
export class RegistryClient {
  readonly host: string;
  private readonly baseUrl: string;
  private readonly tokens = new Map<string, string>();

  constructor(
    registry: string,
    private readonly credentials?: RegistryCredentials,
  ) {
    const explicit = /^(https?):\/\//.exec(registry);
    this.host = registry.replace(/^https?:\/\//, '').replace(/\/+$/, '');
    const loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(this.host);
    this.baseUrl = `${explicit?.[1] ?? (loopback ? 'http' : 'https')}://${this.host}`;
  }

  async getManifest(repository: string, reference: string): Promise<Manifest | null> {
    const res = await this.request('GET', repository, `/manifests/${reference}`, { headers: { accept: ACCEPT_ALL } });
    if (res.status === 404) return null;
    await ensureOk(res, `GET manifest ${repository}:${reference}`);
    const body = Buffer.from(await res.arrayBuffer());
    const json = JSON.parse(body.toString('utf8'));
    const mediaType = json.mediaType ?? res.headers.get('content-type') ?? '';
    return { mediaType, digest: res.headers.get('docker-content-digest') ?? sha256(body), body, json };
  }

  /** The digest a tag points at, or null when the tag does not exist. */
  async resolveDigest(repository: string, reference: string): Promise<string | null> {
    const res = await this.request('HEAD', repository, `/manifests/${reference}`, { headers: { accept: ACCEPT_ALL } });
    if (res.status === 404) return null;
    await ensureOk(res, `HEAD manifest ${repository}:${reference}`);
    const digest = res.headers.get('docker-content-digest');
    if (digest) return digest;
    return (await this.getManifest(repository, reference))?.digest ?? null;
  }

  async putManifest(repository: string, reference: string, body: Buffer, mediaType: string): Promise<string> {
    const res = await this.request('PUT', repository, `/manifests/${reference}`, {
      headers: { 'content-type': mediaType },
      body,
    }, 'push,pull');
    await ensureOk(res, `PUT manifest ${repository}:${reference}`);
    return res.headers.get('docker-content-digest') ?? sha256(body);
  }

  async getBlob(repository: string, digest: string): Promise<Buffer> {
    const res = await this.request('GET', repository, `/blobs/${digest}`, {});
    await ensureOk(res, `GET blob ${repository}@${digest}`);
    return Buffer.from(await res.arrayBuffer());
  }

  /**
   * Streams a blob into `repository` without holding it in memory: the digest and size are
   * computed as the bytes pass (content-addressed, so the same bytes twice are one blob). More
   * than `maxBytes` aborts the upload with BlobTooLargeError, leaving nothing behind.
   */
  async uploadBlob(
    repository: string,
    body: AsyncIterable<Uint8Array>,
    opts: { maxBytes?: number; signal?: AbortSignal } = {},
  ): Promise<{ digest: string; size: number }> {
    const started = await this.request('POST', repository, '/blobs/uploads/', {}, 'push,pull');
    await ensureOk(started, `start blob upload to ${repository}`);
    await started.arrayBuffer().catch(() => undefined);
    const location = started.headers.get('location');
    if (!location) throw new RegistryError(`start blob upload to ${repository}: no Location`, started.status);
    const uploadUrl = new URL(location, this.baseUrl);
    // The POST above obtained (and cached) the push token; a stream can be sent only once.
    const auth = this.tokens.get(`repository:${repository}:push,pull`);
    const hash = createHash('sha256');
    let size = 0;
    const max = opts.maxBytes ?? Number.POSITIVE_INFINITY;
    async function* counted() {
      for await (const chunk of body) {
        size += chunk.byteLength;
        if (size > max) throw new BlobTooLargeError(max);
        hash.update(chunk);
        yield chunk;
      }
    }
    let sourceError: unknown;
    const guarded = async function* () {
      try {
        yield* counted();
      } catch (err) {
        sourceError = err;
        throw err;
      }
    };
    try {
      let res: Response;
      try {
        res = await fetch(uploadUrl, {
          method: 'PATCH',
          headers: { 'user-agent': KILN_USER_AGENT, 'content-type': 'application/octet-stream', ...(auth ? { authorization: auth } : {}) },
          body: ReadableStream.from(guarded()),
          duplex: 'half',
          signal: opts.signal,
        } as RequestInit);
      } catch (err) {
        throw sourceError ?? err;
      }
      if (sourceError) throw sourceError;
      await ensureOk(res, `upload blob to ${repository}`);
      await res.arrayBuffer().catch(() => undefined);
      const digest = `sha256:${hash.digest('hex')}`;
      const finishUrl = new URL(res.headers.get('location') ?? uploadUrl.toString(), this.baseUrl);
      finishUrl.searchParams.set('digest', digest);
      const done = await fetch(finishUrl, {
        method: 'PUT',
        headers: { 'user-agent': KILN_USER_AGENT, 'content-length': '0', ...(auth ? { authorization: auth } : {}) },
        signal: opts.signal ?? AbortSignal.timeout(60_000),
      });
      await ensureOk(done, `finish blob upload to ${repository}`);
      await done.arrayBuffer().catch(() => undefined);
      return { digest, size };
    } catch (err) {
      // An unfinished upload would linger in the registry's upload area until its purge.
      await fetch(uploadUrl, { method: 'DELETE', headers: { 'user-agent': KILN_USER_AGENT, ...(auth ? { authorization: auth } : {}) } })
        .then((r) => r.arrayBuffer())
        .catch(() => undefined);
      throw err;
    }
  }

  /** A blob as a stream (for large ones, e.g. build contexts); RegistryError 404 when absent. */
  async openBlob(repository: string, digest: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const res = await this.request('GET', repository, `/blobs/${digest}`, { signal });
    await ensureOk(res, `GET blob ${repository}@${digest}`);
    if (!res.body) throw new RegistryError(`GET blob ${repository}@${digest}: empty body`, res.status);
    return res.body;
  }

  /** Deletes a blob; true when deleted, false when it was already gone. */
  async deleteBlob(repository: string, digest: string): Promise<boolean> {
    const res = await this.request('DELETE', repository, `/blobs/${digest}`, {}, '*');
    await res.arrayBuffer().catch(() => undefined);
    if (res.status === 404) return false;
    await ensureOk(res, `DELETE blob ${repository}@${digest}`);
    return true;
  }

  async ping(): Promise<void> {
    const res = await fetch(`${this.baseUrl}/v2/`, { headers: { 'user-agent': KILN_USER_AGENT }, signal: AbortSignal.timeout(3000) });
    if (res.status !== 200 && res.status !== 401) throw new RegistryError(`registry answered ${res.status}`, res.status);
  }

  private async request(
    method: string,
    repository: string,
    path: string,
    init: { headers?: Record<string, string>; body?: Buffer; signal?: AbortSignal },
    actions = 'pull',
  ): Promise<Response> {
    const url = `${this.baseUrl}/v2/${repository}${path}`;
    const scope = `repository:${repository}:${actions}`;
    const send = (auth?: string) =>
      fetch(url, {
        method,
        headers: { 'user-agent': KILN_USER_AGENT, ...init.headers, ...(auth ? { authorization: auth } : {}) },
        body: init.body,
        redirect: 'follow',
        // A caller's signal (a long blob download) replaces the default limit.
        signal: init.signal ?? AbortSignal.timeout(60_000),
      });
    const cached = this.tokens.get(scope);
    let res = await send(cached);
    if (res.status !== 401) return res;
    const challenge = res.headers.get('www-authenticate') ?? '';
    await res.arrayBuffer().catch(() => undefined);
    const auth = await this.authorize(challenge, scope);
    if (!auth) return res;
    this.tokens.set(scope, auth);
    res = await send(auth);
    return res;
  }

  private async authorize(challenge: string, scope: string): Promise<string | null> {
    const basic = this.credentials
      ? `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64')}`
      : undefined;
    if (/^basic/i.test(challenge)) return basic ?? null;
    if (!/^bearer/i.test(challenge)) return null;
    const params = Object.fromEntries(
      [...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!.toLowerCase(), m[2]!]),
    );
    if (!params.realm) return null;
    const tokenUrl = new URL(params.realm);
    if (params.service) tokenUrl.searchParams.set('service', params.service);
    tokenUrl.searchParams.set('scope', scope);
    const res = await fetch(tokenUrl, {
      headers: { 'user-agent': KILN_USER_AGENT, ...(basic ? { authorization: basic } : {}) },
      signal: AbortSignal.timeout(15_000),
    });
    await ensureOk(res, 'registry token request');
    const body = (await res.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    return token ? `Bearer ${token}` : null;
  }
}

export class BlobTooLargeError extends Error {
  override readonly name = 'BlobTooLargeError';
  constructor(readonly maxBytes: number) {
    super(`more than ${maxBytes} bytes`);
  }
}

export function sha256(body: Buffer): string {
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

async function ensureOk(res: Response, what: string): Promise<void> {
  if (res.ok) return;
  const text = await res.text().catch(() => '');
  throw new RegistryError(`${what} failed: ${res.status} ${text.slice(0, 300)}`.trim(), res.status);
}
