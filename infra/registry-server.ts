// The CNCF Distribution registry of the local stack: its config (storage, notifications, token auth) and launcher.
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startProcess, type ProcessHandle } from './supervisor.js';
import { toolPaths } from './tools.js';
import { DEFAULT_PORTS, assertPortFree, httpStatus, logsDir } from './stack-common.js';

/** Distribution `auth: token` settings: Kiln's realm issues the tokens (api/routes/registry-token.ts). */
export interface RegistryTokenAuth {
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate of Kiln's signing key (infra/registry-token-keys.ts). */
  rootCertBundle: string;
}

export interface RegistryOptions {
  dataDir: string;
  port?: number;
  notifications?: { url: string; token: string };
  tokenAuth?: RegistryTokenAuth;
  registryBin?: string;
  log?: (msg: string) => void;
}

/** Distribution 2.8 configuration (YAML; JSON strings are valid YAML scalars, hence JSON.stringify). */
export function registryConfigYaml(o: { rootDir: string; port: number; notifications?: { url: string; token: string }; tokenAuth?: RegistryTokenAuth }): string {
  const q = JSON.stringify;
  const lines = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  fields:',
    '    service: registry',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${q(o.rootDir)}`,
    '  delete:',
    '    enabled: true',
    // No blob descriptor cache: the in-memory one can report blobs that were just deleted.
    'http:',
    `  addr: ${q(`127.0.0.1:${o.port}`)}`,
    '  headers:',
    '    X-Content-Type-Options: [nosniff]',
  ];
  if (o.tokenAuth) {
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${q(o.tokenAuth.realm)}`,
      `    service: ${q(o.tokenAuth.service)}`,
      `    issuer: ${q(o.tokenAuth.issuer)}`,
      `    rootcertbundle: ${q(o.tokenAuth.rootCertBundle)}`,
    );
  }
  if (o.notifications) {
    lines.push(
      'notifications:',
      '  events:',
      '    includereferences: true',
      '  endpoints:',
      '    - name: kiln',
      `      url: ${q(o.notifications.url)}`,
      '      headers:',
      `        Authorization: [${q(`Bearer ${o.notifications.token}`)}]`,
      '      timeout: 1s',
      '      threshold: 5',
      '      backoff: 1s',
      // Kiln records tag pushes only: layer uploads and every pull would be traffic for nothing.
      '      ignore:',
      '        mediatypes: [application/octet-stream]',
      '        actions: [pull]',
    );
  }
  return lines.join('\n') + '\n';
}

export async function startRegistry(o: RegistryOptions): Promise<{ handle: ProcessHandle; address: string }> {
  const dataDir = resolve(o.dataDir);
  const port = o.port ?? DEFAULT_PORTS.registry;
  const bin = o.registryBin ?? toolPaths().registry;
  if (!existsSync(bin)) throw new Error(`registry binary not found at ${bin} (Debian package docker-registry); run: bash infra/setup-tools.sh`);
  await assertPortFree(port, 'registry');
  const rootDir = join(dataDir, 'registry');
  mkdirSync(rootDir, { recursive: true });
  const configFile = join(dataDir, 'registry.yml');
  // 0600: the notification token is a secret.
  writeFileSync(configFile, registryConfigYaml({ rootDir, port, notifications: o.notifications, tokenAuth: o.tokenAuth }), { mode: 0o600 });
  chmodSync(configFile, 0o600);
  const address = `127.0.0.1:${port}`;
  const handle = await startProcess({
    name: 'registry',
    cmd: bin,
    args: ['serve', configFile],
    logFile: join(logsDir(dataDir), 'registry.log'),
    restart: true,
    readyTimeoutMs: 30_000,
    log: o.log,
    // With token auth /v2/ answers 401 and a challenge: that is a registry up and serving.
    ready: async () => (await httpStatus(`http://${address}/v2/`)) === (o.tokenAuth ? 401 : 200),
  });
  return { handle, address };
}
