// Row 6: a 200 MiB local context sent by `kiln build --detach` (packing the directory as it sends,
// progress counted) against `curl --data-binary` of the same directory's tar to the same endpoint.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { median } from './stats';

const run = promisify(execFile);
const BIN = path.resolve(import.meta.dirname, '../bin/kiln.mjs');
export const UPLOAD_MIB = 200;

/** Uploads per side; returns median MiB/s of each. */
export async function benchUpload(o: { url: string; token: string; workDir: string; runs: number }) {
  const dir = path.join(o.workDir, 'upload-ctx');
  mkdirSync(dir, { recursive: true });
  // Incompressible, in 8 files as a real context is: neither side can win by compression.
  for (let i = 0; i < 8; i++) writeFileSync(path.join(dir, `blob-${i}.bin`), randomBytes((UPLOAD_MIB / 8) * 1024 * 1024));
  writeFileSync(path.join(dir, 'Dockerfile'), 'FROM scratch\nCOPY . /\n');
  const tarFile = path.join(o.workDir, 'upload-ctx.tar');
  await run('tar', ['-cf', tarFile, '-C', dir, '.']);
  const cli: number[] = [];
  const curl: number[] = [];
  try {
    for (let i = 0; i < o.runs; i++) {
      // The CLI prints `uploaded N MiB (R MiB/s)` when the context is stored.
      const out = await new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, [BIN, 'build', dir, '-t', `bench/upload:run${i}`, '--detach'], {
          env: { ...process.env, KILN_URL: o.url, KILN_TOKEN: o.token },
        });
        let err = '';
        child.stderr.on('data', (d) => (err += d));
        child.on('close', (code) => (code === 0 ? resolve(err) : reject(new Error(`kiln build exited ${code}: ${err}`))));
      });
      const m = /uploaded ([\d.]+) MiB \(([\d.]+) MiB\/s\)/.exec(out);
      if (!m) throw new Error(`no upload line in: ${out}`);
      cli.push(Number(m[2]));
      const { stdout } = await run('curl', [
        '-sS', '-o', '/dev/null', '-w', '%{http_code} %{speed_upload}',
        '-H', `authorization: Bearer ${o.token}`, '-H', 'content-type: application/x-tar',
        '--data-binary', `@${tarFile}`, `${o.url}/api/v1/contexts?repository=bench/upload`,
      ], { maxBuffer: 1024 * 1024 });
      const [code, speed] = stdout.trim().split(' ');
      if (code !== '201') throw new Error(`curl upload answered ${code}`);
      curl.push(Number(speed) / 1024 / 1024);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(tarFile, { force: true });
  }
  return { cli: median(cli), curl: median(curl) };
}
