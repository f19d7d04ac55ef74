// `kiln`: build the directory you stand in and follow it live, and a few nouns of the API.
// Results go to stdout, progress and logs to stderr. Exit status: 0 success, 1 a failed or
// canceled build (or an API error), 2 a usage error. No prompt when stdin is not a terminal.
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { Transform } from 'node:stream';
import { Command, CommanderError, Option } from 'commander';
import type { InferResponseType } from 'hono/client';
import { kilnClient, type BuildBody, type KilnClient } from '../api/client';
import { PLATFORMS } from '../domain/platforms';
import { resolveConfig, storeConfig, DEFAULT_URL } from './config';
import { packContext } from './context';
import { formatBytes, progressLines, readSse } from './follow';

type ContextUploaded = InferResponseType<KilnClient['contexts']['$post'], 201>;

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

class UsageError extends Error {}
/** A failure already explained on stderr; ends the command with status 1. */
class Failed extends Error {}

const err = (line: string): void => void process.stderr.write(`${line}\n`);
const out = (line: string): void => void process.stdout.write(`${line}\n`);

async function connect(): Promise<{ api: KilnClient; url: string; token: string }> {
  const { url, token } = await resolveConfig();
  if (!token) throw new UsageError(`Not logged in: run \`kiln login ${url}\` or set KILN_TOKEN`);
  return { api: kilnClient(url, token), url, token };
}

/** The JSON body of a 2xx answer; otherwise the API's error, printed, and status 1. */
async function ok<T>(res: { ok: boolean; status: number; json(): Promise<unknown> }, what: string): Promise<T> {
  const body = (await res.json().catch(() => null)) as any;
  if (res.ok) return body as T;
  const e = body?.error;
  err(`kiln: ${what} failed: ${e ? `${e.message} (${e.code}, HTTP ${res.status})` : `HTTP ${res.status}`}`);
  if (Array.isArray(e?.details)) for (const d of e.details) err(`  ${[d.in, ...(d.path ?? [])].join('.')}: ${d.message}`);
  throw new Failed();
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function keyValues(pairs: string[], what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new UsageError(`${what} "${p}" is not KEY=VALUE`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

/** `ns/name:tag` (repeatable, one repository) → repository and tags. */
function parseTags(refs: string[]): { repository: string; tags: string[] } {
  if (refs.length === 0) throw new UsageError('give at least one --tag namespace/name:tag');
  let repository: string | undefined;
  const tags: string[] = [];
  for (const ref of refs) {
    const m = /^([a-z0-9][a-z0-9._-]*\/[a-z0-9][a-z0-9._-]*)(?::([A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?$/.exec(ref);
    if (!m) throw new UsageError(`--tag "${ref}" is not namespace/name:tag`);
    if (repository && repository !== m[1]) throw new UsageError(`all --tag values must name one repository (${repository} and ${m[1]})`);
    repository = m[1];
    tags.push(m[2] ?? 'latest');
  }
  return { repository: repository!, tags: [...new Set(tags)] };
}

async function ask(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// Following a build

interface FollowOptions {
  plain: boolean;
  /** Where log lines go: stderr for `kiln build` (its stdout is the result), stdout for `kiln logs`. */
  logTo: (line: string) => void;
  showProgress: boolean;
}

/** Streams the log and the progress until the build ends; returns the final build. */
async function follow(conn: { api: KilnClient; url: string; token: string }, buildId: string, opts: FollowOptions): Promise<BuildBody> {
  const tty = process.stderr.isTTY && opts.showProgress && !opts.plain;
  let drawn = 0;
  let lastPlain = '';
  let progress: string[] = [];
  const clear = () => {
    if (tty && drawn) process.stderr.write(`\x1b[${drawn}A\x1b[J`);
    drawn = 0;
  };
  const draw = () => {
    if (!opts.showProgress || opts.plain) return;
    if (tty) {
      clear();
      for (const l of progress) process.stderr.write(`${l}\n`);
      drawn = progress.length;
    } else {
      const text = progress.join('\n');
      if (text && text !== lastPlain) err(text);
      lastPlain = text;
    }
  };
  const logLine = (line: string) => {
    clear();
    opts.logTo(line);
    draw();
  };

  let done = false;
  const poll = (async () => {
    while (!done) {
      const res = await conn.api.builds[':id'].$get({ param: { id: buildId } }).catch(() => null);
      if (res?.status === 200) {
        const b = await res.json();
        progress = progressLines(b);
        draw();
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  })();

  let lastId: string | undefined;
  for (let attempt = 0; ; attempt++) {
    // A dropped stream resumes where it was (Last-Event-ID); the server ends it with `end`.
    const res = await fetch(`${conn.url}/api/v1/builds/${buildId}/logs?follow=1`, {
      headers: { authorization: `Bearer ${conn.token}`, accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) },
    }).catch(() => null);
    if (res && !res.ok) await ok(res, 'following the log');
    let ended = false;
    if (res?.body) {
      try {
        for await (const ev of readSse(res.body)) {
          if (ev.event === 'log') {
            lastId = ev.id ?? lastId;
            logLine(ev.data);
          } else if (ev.event === 'end') {
            ended = true;
            break;
          }
        }
      } catch {
        /* reconnect below */
      }
    }
    if (ended) break;
    if (attempt > 30) throw new Error('lost the log stream');
    await new Promise((r) => setTimeout(r, 1000));
  }
  done = true;
  await poll;
  const final = await ok<BuildBody>(await conn.api.builds[':id'].$get({ param: { id: buildId } }), 'reading the build');
  progress = progressLines(final);
  draw();
  drawn = 0;
  return final;
}

/** Prints the outcome; the exit status follows from it. */
function report(build: BuildBody, json: boolean): number {
  if (json) out(JSON.stringify(build, null, 2));
  if (build.status === 'succeeded') {
    if (!json) {
      out(`${build.repository}@${build.manifestDigest}`);
      for (const t of build.pushedTags) out(`${build.repository}:${t}`);
    }
    return EXIT_OK;
  }
  err(`kiln: build ${build.id} ${build.status}${build.error ? `: ${build.error.message} (${build.error.code})` : ''}`);
  return EXIT_FAILED;
}

/** Ctrl-C while following: ask whether to cancel (a terminal), or cancel at once (CI, scripts). */
function cancelOnInterrupt(conn: { api: KilnClient }, buildId: string): () => void {
  let asking = false;
  const cancel = async () => {
    err(`kiln: canceling build ${buildId}`);
    await ok(await conn.api.builds[':id'].cancel.$post({ param: { id: buildId } }), 'cancel').catch(() => undefined);
  };
  const onSignal = async (signal: NodeJS.Signals) => {
    if (!process.stdin.isTTY || signal === 'SIGTERM') return void (await cancel());
    if (asking) process.exit(130); // a second Ctrl-C leaves, the build keeps running
    asking = true;
    const answer = await ask(`\nCancel build ${buildId}? [y/N] (Ctrl-C again to detach) `);
    asking = false;
    if (/^y(es)?$/i.test(answer.trim())) await cancel();
    else err(`kiln: still following; the build goes on`);
  };
  const handler = (s: NodeJS.Signals) => void onSignal(s);
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

// ---------------------------------------------------------------------------------------------
// Commands

interface BuildOptions {
  tag: string[];
  platform: string[];
  buildArg: string[];
  label: string[];
  file: string;
  target?: string;
  cache: boolean;
  accelerated?: boolean;
  detach?: boolean;
  json?: boolean;
  progress: 'auto' | 'plain';
  compress?: boolean;
}

async function buildCommand(dirArg: string | undefined, o: BuildOptions): Promise<number> {
  const dir = path.resolve(dirArg ?? '.');
  if (!(await stat(dir).catch(() => null))?.isDirectory()) throw new UsageError(`${dir} is not a directory`);
  const { repository, tags } = parseTags(o.tag);
  const platforms = [...new Set(o.platform.flatMap((p) => p.split(',')).map((p) => p.trim()).filter(Boolean))];
  if (platforms.length === 0) platforms.push('linux/amd64');
  for (const p of platforms) if (!(PLATFORMS as readonly string[]).includes(p)) throw new UsageError(`unknown platform ${p} (${PLATFORMS.join(', ')})`);
  const dockerfileAbs = path.resolve(dir, o.file);
  const dockerfile = path.relative(dir, dockerfileAbs).split(path.sep).join('/');
  if (dockerfile.startsWith('..') || path.isAbsolute(dockerfile)) throw new UsageError(`--file ${o.file} must be inside ${dir}`);
  if (!(await stat(dockerfileAbs).catch(() => null))?.isFile()) throw new UsageError(`no Dockerfile at ${dockerfileAbs}`);
  const buildArgs = keyValues(o.buildArg, '--build-arg');
  const labels = keyValues(o.label, '--label');
  const conn = await connect();

  // Upload: the tar is made as it is sent; nothing is written to disk or held whole.
  const packed = await packContext(dir, { dockerfile, gzip: o.compress });
  err(`kiln: sending ${packed.entries.length} entries (${formatBytes(packed.fileBytes)}) from ${dir}${o.compress ? ' (gzip)' : ''}`);
  let sent = 0;
  const started = Date.now();
  let lastReport = 0;
  const reportUpload = (final = false) => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001);
    const line = `kiln: uploaded ${formatBytes(sent)} (${(sent / 1024 / 1024 / secs).toFixed(1)} MiB/s)`;
    if (process.stderr.isTTY) process.stderr.write(`\r${line}${final ? '\n' : ''}`);
    else if (final) err(line);
  };
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      sent += chunk.length;
      if (Date.now() - lastReport > 200) {
        lastReport = Date.now();
        reportUpload();
      }
      cb(null, chunk);
    },
  });
  const res = await fetch(`${conn.url}/api/v1/contexts?repository=${encodeURIComponent(repository)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${conn.token}`, 'content-type': o.compress ? 'application/gzip' : 'application/x-tar' },
    body: packed.stream().pipe(counter) as unknown as ReadableStream,
    duplex: 'half',
  } as RequestInit).catch((e: Error) => {
    err(`kiln: upload failed: ${(e.cause as Error)?.message ?? e.message}`);
    throw new Failed();
  });
  reportUpload(true);
  const context = await ok<ContextUploaded>(res, 'uploading the context');
  err(`kiln: context ${context.digest} (${formatBytes(context.size)})`);

  const submitted = await ok<{ buildId: string; workflowId: string }>(
    await conn.api.builds.$post({
      json: {
        repository,
        context: { digest: context.digest, contextDir: '/', dockerfile },
        platforms: platforms as ('linux/amd64' | 'linux/arm64')[],
        tags,
        buildArgs,
        labels,
        ...(o.target ? { target: o.target } : {}),
        ...(o.cache ? {} : { noCache: true }),
        ...(o.accelerated !== undefined ? { accelerated: o.accelerated } : {}),
      },
    }),
    'submitting the build',
  );
  const { buildId } = submitted;
  if (o.detach) {
    if (o.json) out(JSON.stringify(submitted));
    else out(buildId);
    err(`kiln: build ${buildId} started; follow it with \`kiln logs -f ${buildId}\``);
    return EXIT_OK;
  }
  err(`kiln: build ${buildId}`);
  const stop = cancelOnInterrupt(conn, buildId);
  try {
    const build = await follow(conn, buildId, { plain: o.progress === 'plain', logTo: err, showProgress: true });
    return report(build, !!o.json);
  } finally {
    stop();
  }
}

function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
}

async function findRepository(api: KilnClient, path: string): Promise<{ id: string }> {
  const [namespace, name] = path.split('/');
  if (!namespace || !name) throw new UsageError(`"${path}" is not namespace/name`);
  let cursor: string | undefined;
  do {
    const page = await ok<{ items: { id: string; name: string }[]; nextCursor: string | null }>(
      await api.repositories.$get({ query: { namespace, limit: '100', ...(cursor ? { cursor } : {}) } as never }),
      'listing repositories',
    );
    const hit = page.items.find((r) => r.name === name);
    if (hit) return hit;
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  err(`kiln: no repository ${path}`);
  throw new Failed();
}

export function program(): Command {
  const p = new Command('kiln')
    .description('Build container images with Kiln and follow them live')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  p.command('build')
    .description('Build a local directory (default: .) and follow the build')
    .argument('[dir]', 'the build context')
    .requiredOption('-t, --tag <ns/name:tag>', 'image to push (repeatable; one repository)', collect, [])
    .option('--platform <list>', 'linux/amd64, linux/arm64 (comma-separated or repeated)', collect, [])
    .option('--build-arg <K=V>', 'build argument (repeatable)', collect, [])
    .option('--label <k=v>', 'image label (repeatable)', collect, [])
    .option('-f, --file <path>', 'Dockerfile, relative to the directory', 'Dockerfile')
    .option('--target <stage>', 'build this stage')
    .option('--no-cache', 'do not use the build cache')
    .option('--accelerated', 'also push an eStargz (lazy-pull) variant')
    .option('--compress', 'gzip the context before sending it (slow links)')
    .option('-d, --detach', 'print the build id and return at once')
    .option('--json', 'print the final build (or, with --detach, the ids) as JSON')
    .addOption(new Option('--progress <mode>', 'auto: progress lines and log; plain: the log only').choices(['auto', 'plain']).default('auto'))
    .action(async (dir: string | undefined, o: BuildOptions) => {
      process.exitCode = await buildCommand(dir, o);
    });

  p.command('login')
    .description('Store the API URL and a token (read from stdin, or asked for) in ~/.config/kiln/config.json (0600)')
    .argument('[url]', 'Kiln API URL', DEFAULT_URL)
    .action(async (url: string) => {
      const token = (process.stdin.isTTY ? await ask('Token: ') : await readStdin()).trim();
      if (!token) throw new UsageError('no token given');
      const base = url.replace(/\/+$/, '');
      const check = await fetch(`${base}/api/v1/namespaces?limit=1`, { headers: { authorization: `Bearer ${token}` } }).catch((e: Error) => {
        err(`kiln: cannot reach ${base}: ${(e.cause as Error)?.message ?? e.message}`);
        throw new Failed();
      });
      if (check.status === 401) {
        err(`kiln: ${base} refused the token`);
        throw new Failed();
      }
      const file = await storeConfig({ url: base, token });
      err(`kiln: logged in to ${base} (saved in ${file})`);
    });

  const builds = p.command('builds').description('Builds');
  builds
    .command('ls')
    .description('List builds, newest first')
    .option('--repository <ns/name>', 'only this repository')
    .option('--status <status>', 'only builds with this status')
    .option('--limit <n>', 'how many', '20')
    .option('--json', 'JSON output')
    .action(async (o: { repository?: string; status?: string; limit: string; json?: boolean }) => {
      const { api } = await connect();
      const page = await ok<{ items: BuildBody[] }>(
        await api.builds.$get({ query: { limit: o.limit, ...(o.repository ? { repository: o.repository } : {}), ...(o.status ? { status: o.status } : {}) } as never }),
        'listing builds',
      );
      if (o.json) return out(JSON.stringify(page.items, null, 2));
      table([
        ['ID', 'REPOSITORY', 'STATUS', 'TRIGGER', 'TAGS', 'CREATED'],
        ...page.items.map((b) => [b.id, b.repository, b.status, b.trigger, b.tags.join(','), b.createdAt]),
      ]);
    });

  p.command('logs')
    .description("Print a build's log; -f follows it until the build ends (exit 1 unless it succeeded)")
    .argument('<id>', 'build id')
    .option('-f, --follow', 'follow while the build runs')
    .action(async (id: string, o: { follow?: boolean }) => {
      const conn = await connect();
      if (!o.follow) {
        const res = await conn.api.builds[':id'].logs.$get({ param: { id }, query: {}, header: {} });
        if (!res.ok) await ok(res, 'reading the log');
        return void process.stdout.write(await res.text());
      }
      const build = await follow(conn, id, { plain: true, logTo: out, showProgress: false });
      if (build.status !== 'succeeded') {
        err(`kiln: build ${id} ${build.status}${build.error ? `: ${build.error.message} (${build.error.code})` : ''}`);
        process.exitCode = EXIT_FAILED;
      }
    });

  p.command('cancel')
    .description('Cancel a build')
    .argument('<id>', 'build id')
    .action(async (id: string) => {
      const { api } = await connect();
      const res = await ok<{ status: string }>(await api.builds[':id'].cancel.$post({ param: { id } }), 'cancel');
      out(`${id} ${res.status}`);
    });

  p.command('tags')
    .description('Image tags')
    .command('ls')
    .argument('<ns/name>', 'repository')
    .option('--json', 'JSON output')
    .action(async (repo: string, o: { json?: boolean }) => {
      const { api } = await connect();
      const { id } = await findRepository(api, repo);
      const page = await ok<{ items: { tag: string; digest: string; creationMethod: string; updatedAt: string }[] }>(
        await api.repositories[':id'].tags.$get({ param: { id } }),
        'listing tags',
      );
      if (o.json) return out(JSON.stringify(page.items, null, 2));
      table([['TAG', 'DIGEST', 'CREATED BY', 'UPDATED'], ...page.items.map((t) => [t.tag, t.digest, t.creationMethod, t.updatedAt])]);
    });

  const rules = p.command('rules').description('Build rules');
  rules
    .command('ls')
    .argument('<ns/name>', 'repository')
    .option('--json', 'JSON output')
    .action(async (repo: string, o: { json?: boolean }) => {
      const { api } = await connect();
      const { id } = await findRepository(api, repo);
      const page = await ok<{ items: { id: string; type: string; match: string; enabled: boolean; tags: { template: string }[]; platforms: string[] }[] }>(
        await api.repositories[':id'].rules.$get({ param: { id } }),
        'listing rules',
      );
      if (o.json) return out(JSON.stringify(page.items, null, 2));
      table([
        ['ID', 'TYPE', 'MATCH', 'TAGS', 'PLATFORMS', 'ENABLED'],
        ...page.items.map((r) => [r.id, r.type, r.match, r.tags.map((t) => t.template).join(','), r.platforms.join(','), String(r.enabled)]),
      ]);
    });
  rules
    .command('preview')
    .description('What a push of REF would build: a saved rule (--rule ID) or one described here')
    .argument('<ns/name>', 'repository')
    .requiredOption('--ref <ref>', 'branch or tag name, or refs/heads/x, refs/tags/x')
    .option('--rule <id>', 'a saved rule')
    .addOption(new Option('--type <type>', 'rule type').choices(['branch', 'tag']).default('branch'))
    .option('--match <match>', 'literal name or regular expression')
    .option('--tag-template <template>', 'tag template (repeatable)', collect, [])
    .option('--commit <sha>', 'commit id for the commit part of tags')
    .option('--json', 'JSON output')
    .action(async (repo: string, o: { ref: string; rule?: string; type: 'branch' | 'tag'; match?: string; tagTemplate: string[]; commit?: string; json?: boolean }) => {
      if (!o.rule && !o.match) throw new UsageError('give --rule ID, or --match and --tag-template');
      const { api } = await connect();
      const { id } = await findRepository(api, repo);
      const rule = o.rule ?? { type: o.type, match: o.match!, tags: (o.tagTemplate.length ? o.tagTemplate : ['latest']).map((template) => ({ template })) };
      const res = await ok<{ matches: boolean; tags: string[]; reason: string | null }>(
        await api.repositories[':id'].rules.preview.$post({ param: { id }, json: { rule, ref: o.ref, ...(o.commit ? { commit: o.commit } : {}) } }),
        'preview',
      );
      if (o.json) return out(JSON.stringify(res, null, 2));
      out(res.matches ? `builds ${o.ref}: ${res.tags.join(', ')}` : `does not build ${o.ref}: ${res.reason}`);
      if (!res.matches) process.exitCode = EXIT_FAILED;
    });
  return p;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    if (e instanceof UsageError) {
      err(`kiln: ${e.message}`);
      return EXIT_USAGE;
    }
    if (e instanceof Failed) return EXIT_FAILED;
    err(`kiln: ${e instanceof Error ? e.message : String(e)}`);
    return EXIT_FAILED;
  }
}

process.exitCode = await main(process.argv);
