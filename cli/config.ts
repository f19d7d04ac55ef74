// Where the CLI finds the API: KILN_URL and KILN_TOKEN, else what `kiln login` stored (mode 0600).
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';

export interface CliConfig {
  url: string;
  token: string;
}

export const DEFAULT_URL = 'http://127.0.0.1:3000';

export function configFile(): string {
  const base = process.env.XDG_CONFIG_HOME || path.join(homedir(), '.config');
  return path.join(base, 'kiln', 'config.json');
}

export async function readStoredConfig(): Promise<Partial<CliConfig>> {
  try {
    return JSON.parse(await readFile(configFile(), 'utf8')) as Partial<CliConfig>;
  } catch {
    return {};
  }
}

export async function storeConfig(config: CliConfig): Promise<string> {
  const file = configFile();
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(file, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  await chmod(file, 0o600); // an existing file keeps its mode on write
  return file;
}

/** The URL and token to use; the token may be missing (then commands say how to log in). */
export async function resolveConfig(): Promise<{ url: string; token: string | undefined }> {
  const stored = await readStoredConfig();
  return {
    url: (process.env.KILN_URL || stored.url || DEFAULT_URL).replace(/\/+$/, ''),
    token: process.env.KILN_TOKEN || stored.token,
  };
}
