// Per-build registry credentials (the PAI API's RegistryAuths): stored encrypted on the build row,
// decrypted only inside the build activity, and handed to buildctl as a private DOCKER_CONFIG so
// BuildKit can pull private base images. They never travel in Temporal payloads or reach the log.
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { eq } from 'drizzle-orm';
import type { Db } from '../db/client';
import { decryptSecret, encryptSecret } from '../db/crypto';
import { builds } from '../db/schema';

/** registry host[:port] → base64("user:password"), as in a Docker config's `auths`. */
export type RegistryAuths = Record<string, { auth: string }>;

export function encryptRegistryAuths(secretKey: string, auths: RegistryAuths): string {
  return encryptSecret(secretKey, JSON.stringify(auths));
}

export function decryptRegistryAuths(secretKey: string, ciphertext: string): RegistryAuths {
  return JSON.parse(decryptSecret(secretKey, ciphertext)) as RegistryAuths;
}

/** The Docker config buildctl would read without DOCKER_CONFIG; its other entries are kept. */
function defaultDockerConfigFile(): string {
  return path.join(process.env.DOCKER_CONFIG || path.join(homedir(), '.docker'), 'config.json');
}

/**
 * Writes `dir/config.json` (dir 0700, file 0600): the worker's own Docker config, if any, with
 * the build's credentials added over it, so the worker keeps its own registry logins and
 * credential helpers. Returns `dir`, the value for DOCKER_CONFIG.
 */
export async function writeDockerConfig(dir: string, auths: RegistryAuths, baseConfigFile = defaultDockerConfigFile()): Promise<string> {
  let config: { auths?: Record<string, unknown> } & Record<string, unknown> = {};
  if (existsSync(baseConfigFile)) {
    try {
      config = JSON.parse(await readFile(baseConfigFile, 'utf8'));
    } catch {
      config = {}; // an unreadable worker config must not fail a build that brings its own credentials
    }
  }
  config.auths = { ...config.auths };
  for (const [host, { auth }] of Object.entries(auths)) config.auths[host] = { auth };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const file = path.join(dir, 'config.json');
  await writeFile(file, JSON.stringify(config), { mode: 0o600 });
  await chmod(file, 0o600);
  return dir;
}

/**
 * For the build activity: when the build carries registry credentials, writes them into a
 * DOCKER_CONFIG directory under `workDir` (removed with it) and returns the environment for
 * buildctl; otherwise returns undefined (buildctl keeps the worker's environment).
 *
 *   const env = await registryAuthEnv({ db, secretKey: deps.secretKey, buildId: req.buildId, workDir });
 *   await runBuildctl({ ..., env });
 */
export async function registryAuthEnv(opts: {
  db: Db;
  secretKey: string | undefined;
  buildId: string;
  workDir: string;
  /** The build's own login for Kiln's registry; it wins over a RegistryAuths entry for that host. */
  kilnRegistry?: { host: string; username: string; password: string };
}): Promise<NodeJS.ProcessEnv | undefined> {
  const [row] = await opts.db
    .select({ enc: builds.registryAuthsEnc })
    .from(builds)
    .where(eq(builds.id, opts.buildId));
  let auths: RegistryAuths = {};
  if (row?.enc) {
    if (!opts.secretKey) {
      throw ApplicationFailure.create({
        type: 'registry_auth_unavailable',
        message: 'The build has registry credentials but this worker has no KILN_SECRET_KEY to read them',
        nonRetryable: true,
      });
    }
    try {
      auths = decryptRegistryAuths(opts.secretKey, row.enc);
    } catch {
      throw ApplicationFailure.create({
        type: 'registry_auth_unavailable',
        message: "The build's registry credentials cannot be decrypted: was KILN_SECRET_KEY changed since it was submitted?",
        nonRetryable: true,
      });
    }
  }
  if (opts.kilnRegistry) {
    const { host, username, password } = opts.kilnRegistry;
    auths[host] = { auth: Buffer.from(`${username}:${password}`).toString('base64') };
  }
  if (Object.keys(auths).length === 0) return undefined;
  const dir = await writeDockerConfig(path.join(opts.workDir, 'docker-config'), auths);
  return { ...process.env, DOCKER_CONFIG: dir };
}
