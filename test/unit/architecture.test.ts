// The layering the code relies on, checked over the real import graph (type-only imports count:
// they couple files as much as value imports do): once as this file parses it, once as madge
// (`npm run check:graph`) resolves it through tsconfig.json, so neither parser can miss an edge alone.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LAYERS = ['domain', 'db', 'workflows', 'activities', 'api', 'infra', 'observability', 'cli', 'console'];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return name === 'node_modules' || name === 'tools' || name === 'migrations' ? [] : sourceFiles(full);
    return /\.tsx?$/.test(full) ? [full] : [];
  });
}

function resolve(from: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  const base = path.resolve(path.dirname(from), spec.replace(/\.js$/, ''));
  for (const candidate of [`${base}.ts`, `${base}.tsx`, path.join(base, 'index.ts')]) if (existsSync(candidate)) return candidate;
  return null;
}

/** file → the project files it imports (static, dynamic, type-only and re-exports). */
function importGraph(): Map<string, string[]> {
  const files = [...LAYERS.flatMap((l) => sourceFiles(path.join(ROOT, l))), path.join(ROOT, 'env.ts')];
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const specs = [...text.matchAll(/(?:^|\s)(?:import|export)\s[^'";]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm)]
      .map((m) => m[1] ?? m[2] ?? m[3]!);
    graph.set(file, [...new Set(specs.map((s) => resolve(file, s)).filter((f): f is string => f !== null))]);
  }
  return graph;
}

/** Every strongly connected component of more than one file, or a file importing itself (Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const indexOf = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    indexOf.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!indexOf.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, indexOf.get(w)!));
    }
    if (low.get(v) === indexOf.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(path.relative(ROOT, w));
      } while (w !== v);
      if (component.length > 1 || graph.get(v)?.includes(v)) out.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!indexOf.has(v)) visit(v);
  return out;
}

const layerOf = (file: string) => path.relative(ROOT, file).split(path.sep)[0]!;

function importsBetween(graph: Map<string, string[]>, from: string[], to: string): string[] {
  return [...graph].flatMap(([file, deps]) =>
    from.includes(layerOf(file)) ? deps.filter((d) => layerOf(d) === to).map((d) => `${path.relative(ROOT, file)} → ${path.relative(ROOT, d)}`) : [],
  );
}

describe('import graph', () => {
  const graph = importGraph();

  it('sees the project (sanity: the parser finds the known edges)', () => {
    expect(graph.size).toBeGreaterThan(60);
    expect(graph.get(path.join(ROOT, 'api/app.ts'))).toContain(path.join(ROOT, 'api/types.ts'));
    expect(graph.get(path.join(ROOT, 'workflows/image-build.ts'))).toContain(path.join(ROOT, 'activities/build.ts'));
  });

  it('has no import cycle', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('only workers and clients import workflows/: not db/, domain/, api/ or activities/', () => {
    // The API's Temporal clients start the workflows by their functions (and signal them by their
    // definitions): the only clients of workflows/ outside the workers.
    const clientImports = ['api/build-starter.ts → workflows/image-build.ts', 'api/push-starter.ts → workflows/push.ts'];
    expect(importsBetween(graph, ['db', 'domain', 'api', 'activities', 'observability', 'cli', 'console'], 'workflows').sort()).toEqual(clientImports);
    expect(readFileSync(path.join(ROOT, 'api/build-starter.ts'), 'utf8')).toMatch(/client\.workflow\.start\(ImageBuildWorkflow, /);
    expect(readFileSync(path.join(ROOT, 'api/push-starter.ts'), 'utf8')).toMatch(/client\.workflow\.start\(PushWorkflow, /);
  });

  it('db/ never imports workflows/, not even a type', () => {
    expect(importsBetween(graph, ['db'], 'workflows')).toEqual([]);
  });

  it('domain/ imports no other layer', () => {
    for (const layer of LAYERS.filter((l) => l !== 'domain')) expect(importsBetween(graph, ['domain'], layer)).toEqual([]);
  });

  it('db/ imports neither the API nor the activities', () => {
    expect(importsBetween(graph, ['db'], 'api')).toEqual([]);
    expect(importsBetween(graph, ['db'], 'activities')).toEqual([]);
  });
});

/** The import graph as madge resolves it (the tool `npm run check:graph` runs). */
function madgeGraph(): Map<string, string[]> {
  const cli = path.join(path.dirname(createRequire(import.meta.url).resolve('madge/package.json')), 'bin/cli.js');
  const args = ['--json', '--extensions', 'ts,tsx', '--ts-config', 'tsconfig.json', '--exclude', '^(node_modules|infra/tools|db/migrations)/', '.'];
  const out = execFileSync(process.execPath, [cli, ...args], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const parsed = JSON.parse(out) as Record<string, string[]>;
  return new Map(Object.entries(parsed).map(([file, deps]) => [path.join(ROOT, file), deps.map((d) => path.join(ROOT, d))]));
}

describe('import graph, as madge sees it', () => {
  it('has no cycle, and db/ and domain/ import no workflows/', { timeout: 180_000 }, () => {
    const graph = madgeGraph();
    // Sanity: madge read the project, type-only imports included.
    expect(graph.get(path.join(ROOT, 'workflows/image-build.ts'))).toContain(path.join(ROOT, 'activities/build-plan.ts'));
    expect(graph.get(path.join(ROOT, 'console/app.tsx'))).toContain(path.join(ROOT, 'api/client.ts'));
    expect(cycles(graph)).toEqual([]);
    expect(importsBetween(graph, ['db', 'domain'], 'workflows')).toEqual([]);
    // Everything this file's parser finds, madge finds too.
    const ours = importGraph();
    const missed = [...ours].flatMap(([file, deps]) => deps.filter((d) => !graph.get(file)?.includes(d)).map((d) => `${path.relative(ROOT, file)} → ${path.relative(ROOT, d)}`));
    expect(missed).toEqual([]);
  });
});
