// The `kiln` CLI end to end (issue 12): it runs as a user runs it (node bin/kiln.mjs, the npm bin)
// against a real Kiln, and the images it builds are checked through the registry's own API.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestKiln, type TestKiln } from '../support/kiln';
import { fetchManifest, unpackImage, platformEntries } from '../support/registry';

const BIN = path.resolve(__dirname, '../../bin/kiln.mjs');
const LIMIT = 1024 * 1024;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function kilnCli(args: string[], env: Record<string, string>, opts: { input?: string; onStdout?: (s: string) => void } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      opts.onStdout?.(String(d));
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

async function writeTree(files: Record<string, string | Buffer>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-cli-'));
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
  return dir;
}

describe('kiln CLI', () => {
  let kiln: TestKiln;
  let env: Record<string, string>;

  beforeAll(async () => {
    kiln = await startTestKiln({ maxContextBytes: LIMIT });
    const config = await mkdtemp(path.join(tmpdir(), 'kiln-cli-config-'));
    env = { KILN_URL: kiln.url, KILN_TOKEN: kiln.token, XDG_CONFIG_HOME: config };
  });
  afterAll(async () => {
    await kiln?.close();
  });

  it('builds a local directory for two platforms, honouring .dockerignore, and prints the pushed image', async () => {
    const dir = await writeTree({
      Dockerfile: `FROM ${kiln.registry}/base/busybox\nCOPY . /ctx\nRUN echo "built on $(uname -m)" > /arch\n`,
      '.dockerignore': 'secret.env\nnode_modules\n!node_modules/keep.txt\n*.log\n',
      'app/main.sh': 'echo hi\n',
      'secret.env': 'PASSWORD=hunter2\n',
      'debug.log': 'noise\n',
      'node_modules/big/index.js': 'x\n',
      'node_modules/keep.txt': 'kept\n',
    });
    const run = await kilnCli(['build', dir, '--tag', 'cli/app:v1', '--tag', 'cli/app:latest', '--platform', 'linux/amd64,linux/arm64'], env);
    expect(run.stderr).toMatch(/uploaded .* MiB\/s/);
    expect(run.code, run.stderr).toBe(0);
    // One progress line per platform with steps done/total and cached steps.
    expect(run.stderr).toMatch(/linux\/amd64\s+succeeded\s+\d+\/\d+ steps \(\d+ cached\)/);
    expect(run.stderr).toMatch(/linux\/arm64\s+succeeded\s+\d+\/\d+ steps \(\d+ cached\)/);
    expect(run.stderr).toMatch(/RUN echo "built on/);
    const [imageLine, ...tagLines] = run.stdout.trim().split('\n');
    const index = (await fetchManifest(kiln.registry, 'cli/app', 'v1'))!;
    expect(imageLine).toBe(`cli/app@${index.digest}`);
    expect(tagLines.sort()).toEqual(['cli/app:latest', 'cli/app:v1']);
    expect((await fetchManifest(kiln.registry, 'cli/app', 'latest'))!.digest).toBe(index.digest);
    const arches: Record<string, string> = { amd64: 'x86_64', arm64: 'aarch64' };
    expect(platformEntries(index.json).map((m: any) => m.platform.architecture).sort()).toEqual(['amd64', 'arm64']);
    for (const entry of platformEntries(index.json)) {
      const { rootfs } = await unpackImage(kiln.registry, 'cli/app', entry.digest);
      expect(await readFile(path.join(rootfs, 'arch'), 'utf8')).toBe(`built on ${arches[entry.platform.architecture]}\n`);
      expect(await readFile(path.join(rootfs, 'ctx/app/main.sh'), 'utf8')).toBe('echo hi\n');
      expect(await readFile(path.join(rootfs, 'ctx/node_modules/keep.txt'), 'utf8')).toBe('kept\n');
      for (const gone of ['ctx/secret.env', 'ctx/debug.log', 'ctx/node_modules/big']) {
        await expect(stat(path.join(rootfs, gone))).rejects.toThrow(/ENOENT/);
      }
    }
  });

  it('exits 1 with the error code when the build fails, and 2 for usage errors', async () => {
    const dir = await writeTree({ Dockerfile: `FROM ${kiln.registry}/base/busybox\nRUN echo "about to fail" && exit 7\n` });
    const failed = await kilnCli(['build', dir, '-t', 'cli/broken:v1', '--progress=plain'], env);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('about to fail');
    expect(failed.stderr).toMatch(/failed: RUN at Dockerfile:2 exited with code 7 \(step_failed\)/);
    expect(failed.stdout).toBe('');

    expect((await kilnCli(['build', dir], env)).code).toBe(2); // no --tag
    expect((await kilnCli(['build', dir, '-t', 'cli/x:1', '--platform', 'linux/s390x'], env)).code).toBe(2);
    expect((await kilnCli(['frobnicate'], env)).code).toBe(2);
  });

  it('--detach prints the build id; kiln logs -f follows it to the end', async () => {
    const dir = await writeTree({ Dockerfile: `FROM ${kiln.registry}/base/busybox\nRUN for i in 1 2 3; do echo "tick $i"; sleep 1; done\n` });
    const detached = await kilnCli(['build', dir, '-t', 'cli/detached:v1', '--detach', '--no-cache'], env);
    expect(detached.code, detached.stderr).toBe(0);
    const buildId = detached.stdout.trim();
    expect(buildId).toMatch(/^[0-9a-f-]{36}$/);
    let firstOutputAt = 0;
    const logs = await kilnCli(['logs', '-f', buildId], env, { onStdout: () => (firstOutputAt ||= Date.now()) });
    const endedAt = Date.now();
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/tick 1[\s\S]*tick 2[\s\S]*tick 3/);
    expect(logs.stdout).toContain('build succeeded');
    // It followed a running build (output came while it ran), rather than printing a finished log.
    expect(endedAt - firstOutputAt).toBeGreaterThan(1000);
    const ls = await kilnCli(['builds', 'ls', '--repository', 'cli/detached'], env);
    expect(ls.stdout).toMatch(new RegExp(`${buildId}\\s+cli/detached\\s+succeeded`));
  });

  it('Ctrl-C without a terminal on stdin cancels the build without asking, and exits 1', async () => {
    const dir = await writeTree({ Dockerfile: `FROM ${kiln.registry}/base/busybox\nRUN echo started-sleeping; sleep 120\n` });
    const child = spawn(process.execPath, [BIN, 'build', dir, '-t', 'cli/interrupted:v1', '--no-cache'], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`never started: ${stderr}`)), 120_000);
      child.stderr.on('data', (d) => {
        stderr += d;
        if (stderr.includes('started-sleeping')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    child.kill('SIGINT');
    expect(await closed).toBe(1);
    expect(stderr).not.toContain('[y/N]');
    expect(stderr).toMatch(/canceling build/);
    expect(stderr).toMatch(/build [0-9a-f-]{36} canceled/);
    expect(await fetchManifest(kiln.registry, 'cli/interrupted', 'v1')).toBeNull();
  });

  it('refuses a context over KILN_MAX_CONTEXT_BYTES with a clear error', async () => {
    const dir = await writeTree({ Dockerfile: `FROM ${kiln.registry}/base/busybox\n`, 'big.bin': randomBytes(LIMIT + 64 * 1024) });
    const run = await kilnCli(['build', dir, '-t', 'cli/big:v1'], env);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/exceeds the limit of 1048576 bytes \(KILN_MAX_CONTEXT_BYTES\) \(payload_too_large, HTTP 413\)/);
  });

  it('kiln login stores the token with mode 0600 and later commands use it; tags ls shows the image', async () => {
    const config = await mkdtemp(path.join(tmpdir(), 'kiln-cli-login-'));
    const loginEnv = { XDG_CONFIG_HOME: config, KILN_URL: '', KILN_TOKEN: '' };
    expect((await kilnCli(['login', kiln.url], loginEnv, { input: 'wrong-token\n' })).code).toBe(1);
    const login = await kilnCli(['login', kiln.url], loginEnv, { input: `${kiln.token}\n` });
    expect(login.code, login.stderr).toBe(0);
    const file = path.join(config, 'kiln', 'config.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ url: kiln.url, token: kiln.token });
    const tags = await kilnCli(['tags', 'ls', 'cli/app'], loginEnv);
    expect(tags.code, tags.stderr).toBe(0);
    const digest = (await fetchManifest(kiln.registry, 'cli/app', 'v1'))!.digest;
    expect(tags.stdout).toMatch(new RegExp(`v1\\s+${digest}\\s+manual build`));
  });
});
