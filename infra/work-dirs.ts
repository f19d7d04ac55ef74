import { mkdir, readdir, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';

/**
 * Build workers work under `<workRoot>/<host>-<pid>`. A crashed worker leaves checkouts and
 * decrypted registry credentials behind; the next worker on the same host removes every directory
 * of this host whose process is gone. Other hosts' directories (a shared volume) are left to them.
 */
export async function claimWorkRoot(workRoot: string, pid = process.pid, host = hostname()): Promise<{ dir: string; removed: string[] }> {
  await mkdir(workRoot, { recursive: true, mode: 0o700 });
  const prefix = `${host}-`;
  const removed: string[] = [];
  for (const entry of await readdir(workRoot)) {
    if (LEGACY_WORK_DIR.test(entry)) {
      await rm(path.join(workRoot, entry), { recursive: true, force: true });
      removed.push(entry);
      continue;
    }
    if (!entry.startsWith(prefix)) continue;
    const owner = Number(entry.slice(prefix.length));
    if (!Number.isInteger(owner) || owner === pid || isAlive(owner)) continue;
    await rm(path.join(workRoot, entry), { recursive: true, force: true });
    removed.push(entry);
  }
  const dir = path.join(workRoot, `${prefix}${pid}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return { dir, removed };
}

/** A build directory straight under the root: the layout before per-process directories. */
const LEGACY_WORK_DIR = /^[0-9a-f]{8}-linux-[a-z0-9]+-[A-Za-z0-9]{6}$/;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
