import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Returns the configured value, or one generated on first start and kept (mode 0600) in the
 * data dir, so restarts keep the same API token and the same key for stored secrets.
 */
export function loadOrCreateSecret(dataDir: string, name: string, configured?: string): { value: string; generated: boolean } {
  if (configured) return { value: configured, generated: false };
  const file = path.join(dataDir, 'secrets', name);
  if (existsSync(file)) return { value: readFileSync(file, 'utf8').trim(), generated: false };
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const value = randomBytes(32).toString('base64url');
  writeFileSync(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return { value, generated: true };
}
