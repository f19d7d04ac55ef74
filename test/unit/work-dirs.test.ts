import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { claimWorkRoot } from '../../infra/work-dirs';

const roots: string[] = [];
afterEach(async () => {
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true });
});

/** The pid of a process that has exited (so no process has it now, barring reuse). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

describe('claimWorkRoot', () => {
  it("removes this host's directories of exited workers, with the credentials in them; keeps live ones and other hosts'", async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'kiln-work-'));
    roots.push(root);
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    try {
      const dead = await deadPid();
      const leftover = path.join(root, `h1-${dead}`, 'abcd1234-linux-amd64-Xy12Zq');
      await mkdir(path.join(leftover, 'docker'), { recursive: true });
      await writeFile(path.join(leftover, 'docker', 'config.json'), '{"auths":{"r":{"auth":"c2VjcmV0"}}}');
      await mkdir(path.join(root, `h1-${live.pid}`));
      await mkdir(path.join(root, `h2-${dead}`)); // another host's: its own worker cleans it
      await mkdir(path.join(root, 'abcd1234-linux-arm64-Q1w2E3')); // the layout before per-process dirs

      const claimed = await claimWorkRoot(root, 4242, 'h1');
      expect(claimed.dir).toBe(path.join(root, 'h1-4242'));
      expect(claimed.removed.sort()).toEqual(['abcd1234-linux-arm64-Q1w2E3', `h1-${dead}`]);
      expect((await readdir(root)).sort()).toEqual([`h1-${live.pid}`, 'h1-4242', `h2-${dead}`].sort());
    } finally {
      live.kill();
    }
  });

  it('a restart of the same pid keeps its own directory', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'kiln-work-'));
    roots.push(root);
    await mkdir(path.join(root, `h1-${process.pid}`, 'x'), { recursive: true });
    const claimed = await claimWorkRoot(root, process.pid, 'h1');
    expect(claimed.removed).toEqual([]);
    expect(await readdir(claimed.dir)).toEqual(['x']);
  });
});
