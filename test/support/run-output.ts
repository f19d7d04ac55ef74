// What one RUN step printed, read out of buildctl's `--progress=plain` output and out of a Kiln
// platform log, so tests and the bench can compare the two byte for byte. Text is handled as
// latin1: one char per byte, so NUL, invalid UTF-8 and `\r` survive untouched.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

function stepIndex(lines: string[], step: RegExp, what: string): string {
  const announce = lines.find((l) => /^#\d+ /.test(l) && step.test(l.slice(l.indexOf(' ') + 1)));
  if (!announce) throw new Error(`${what}: no step matching ${step}`);
  return announce.slice(1, announce.indexOf(' '));
}

/**
 * The step's output lines (each with its `\n`) from buildctl's plain progress: `#N 0.123 text`.
 * A step interrupted by another one mid-line makes plain output ambiguous (`#N ...`): refused.
 */
export function runOutputOfPlain(stderr: Buffer, step: RegExp): string {
  const lines = stderr.toString('latin1').split('\n');
  const n = stepIndex(lines, step, 'buildctl output');
  const head = `#${n} `;
  if (lines.includes(`${head}...`)) throw new Error(`buildctl interrupted step #${n}: its plain output is ambiguous`);
  const out: string[] = [];
  const stamped = /^\d+\.\d+ /;
  for (const l of lines) {
    if (!l.startsWith(head)) continue;
    const rest = l.slice(head.length);
    const m = stamped.exec(rest);
    if (m) out.push(`${rest.slice(m[0].length)}\n`);
  }
  return out.join('');
}

/** The step's output lines (each with its `\n`) from a Kiln platform log: `#N text`, framed by the step's name and DONE. */
export function runOutputOfKiln(log: Buffer, step: RegExp): string {
  const lines = log.toString('latin1').split('\n');
  const n = stepIndex(lines, step, 'Kiln log');
  const head = `#${n} `;
  const mine = lines.filter((l) => l.startsWith(head)).map((l) => l.slice(head.length));
  mine.shift(); // the step's name
  const last = mine.at(-1);
  if (last !== undefined && /^(DONE|ERROR|CACHED)\b/.test(last)) mine.pop();
  return mine.map((l) => `${l}\n`).join('');
}

/** Where two long texts first differ, for a readable failure. */
export function firstDifference(a: string, b: string): string | null {
  if (a === b) return null;
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  const line = a.slice(0, i).split('\n').length;
  return `lengths ${a.length} vs ${b.length}; first difference at byte ${i} (line ${line}): ${JSON.stringify(a.slice(i, i + 40))} vs ${JSON.stringify(b.slice(i, i + 40))}`;
}

/**
 * Builds a Dockerfile with buildctl itself (`--progress=plain`, no cache, nothing exported) on a
 * buildkitd and returns what it printed. `started` is when buildctl started, `lines` is called per
 * stderr line as it arrives (with the time) when given.
 */
export async function buildctlPlain(opts: {
  buildctl: string;
  addr: string;
  dockerfile: string;
  platform: string;
  onLine?: (line: string, at: number) => void;
}): Promise<{ code: number; stderr: Buffer; ms: number }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-buildctl-'));
  try {
    await writeFile(path.join(dir, 'Dockerfile'), opts.dockerfile);
    const started = performance.now();
    const child = spawn(
      opts.buildctl,
      ['--addr', opts.addr, 'build', '--progress=plain', '--frontend', 'dockerfile.v0', '--local', `context=${dir}`,
        '--local', `dockerfile=${dir}`, '--opt', `platform=${opts.platform}`, '--no-cache'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const parts: Buffer[] = [];
    let pending = '';
    child.stderr.on('data', (b: Buffer) => {
      parts.push(b);
      if (!opts.onLine) return;
      const now = performance.now();
      const text = pending + b.toString('latin1');
      const lines = text.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) opts.onLine(l, now);
    });
    const code = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c) => resolve(c ?? -1));
    });
    return { code, stderr: Buffer.concat(parts), ms: performance.now() - started };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
