// Packs a local directory as a build context: the files .dockerignore does not exclude (its
// syntax as Docker reads it, through @balena/dockerignore), as a tar stream made as it is read.
import { lstat, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import ignore from '@balena/dockerignore';
import * as tar from 'tar';

export interface PackedContext {
  /** Entries in the tar, directories included, relative and `/`-separated. */
  entries: string[];
  /** Bytes of the files (before tar framing), for progress. */
  fileBytes: number;
  stream(): Readable;
}

export async function packContext(dir: string, opts: { dockerfile: string; gzip?: boolean }): Promise<PackedContext> {
  const rules = await readFile(path.join(dir, '.dockerignore'), 'utf8').catch(() => '');
  const ig = ignore().add(rules.split(/\r?\n/));
  // Docker always sends the Dockerfile and .dockerignore, whatever .dockerignore says.
  const always = new Set([opts.dockerfile, '.dockerignore']);
  const entries: string[] = [];
  let fileBytes = 0;
  async function walk(rel: string): Promise<void> {
    for (const dirent of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${dirent.name}` : dirent.name;
      const ignored = ig.ignores(name) && !always.has(name);
      if (dirent.isDirectory()) {
        // An ignored directory may still hold a re-included (`!`) file: descend, add it only if used.
        const before = entries.length;
        if (!ignored) entries.push(name);
        await walk(name);
        if (ignored && entries.length > before) entries.splice(before, 0, name);
      } else if (!ignored) {
        entries.push(name);
        if (dirent.isFile()) fileBytes += (await lstat(path.join(dir, name))).size;
      }
    }
  }
  await walk('');
  return {
    entries,
    fileBytes,
    // portable: no uid/gid/user names of this machine; noDirRecurse: exactly the entries listed.
    stream: () => tar.c({ cwd: dir, gzip: opts.gzip ? { level: 1 } : false, portable: true, noDirRecurse: true }, entries) as unknown as Readable,
  };
}
