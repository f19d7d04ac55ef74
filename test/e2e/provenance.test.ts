// Provenance on the real stack: a two-platform git build carries BuildKit's SLSA provenance for
// each platform image, and Kiln's multi-arch index keeps the attestation manifests the way
// BuildKit lays them out. Everything is read back through the registry's own API; skopeo (a
// standard client) copies the whole index and single platforms as before.
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../infra/process-run';
import { startGitServer, type GitServer } from '../support/git-server';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { fetchBlob, fetchManifest, type FetchedManifest } from '../support/registry';

let kiln: TestKiln;
let git: GitServer;
let scratch: string;

beforeAll(async () => {
  kiln = await startTestKiln();
  git = await startGitServer();
  scratch = await mkdtemp(path.join(tmpdir(), 'kiln-provenance-'));
});
afterAll(async () => {
  await kiln?.close();
  await git?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const ATTESTATION = 'attestation-manifest';
const SLSA_V02 = 'https://slsa.dev/provenance/v0.2';
const BUILDKIT_METADATA = 'https://mobyproject.org/buildkit@v1#metadata';

interface Statement {
  _type: string;
  predicateType: string;
  subject: { name: string; digest: { sha256: string } }[];
  predicate: any;
}

const isAttestation = (m: any) => m.annotations?.['vnd.docker.reference.type'] === ATTESTATION;

/** The index's images and, for each, the in-toto statement of its attestation, read from the registry. */
async function readAttestations(repo: string, index: FetchedManifest) {
  const images = index.json.manifests.filter((m: any) => !isAttestation(m));
  const attestations = index.json.manifests.filter(isAttestation);
  const statements = new Map<string, { manifestDigest: string; statement: Statement }>();
  for (const entry of attestations) {
    expect(entry.platform).toEqual({ architecture: 'unknown', os: 'unknown' });
    const manifest = (await fetchManifest(kiln.registry, repo, entry.digest))!;
    expect(manifest.digest).toBe(entry.digest);
    const [layer] = manifest.json.layers;
    expect(layer.mediaType).toBe('application/vnd.in-toto+json');
    expect(layer.annotations['in-toto.io/predicate-type']).toBe(SLSA_V02);
    const statement = JSON.parse((await fetchBlob(kiln.registry, repo, layer.digest)).toString('utf8')) as Statement;
    statements.set(entry.annotations['vnd.docker.reference.digest'], { manifestDigest: entry.digest, statement });
  }
  return { images, attestations, statements };
}

async function skopeo(args: string[]) {
  const r = await run('skopeo', args, { timeoutMs: 180_000 });
  expect(r.code, r.stderr).toBe(0);
  return r;
}

describe('SLSA provenance attestations', () => {
  it('a two-platform git build: each image has its attestation in the index, subject = the platform manifest, source = the commit', async () => {
    await git.createRepo('prov');
    const commit = await git.commit('prov', {
      branch: 'main',
      files: { 'app/Dockerfile': `FROM ${kiln.registry}/base/busybox\nARG NOTE=none\nCOPY hello.txt /hello.txt\nRUN echo "$NOTE $(uname -m)" > /arch\n`, 'app/hello.txt': 'provenance\n' },
    });
    const repoRes = await kiln.api('/api/v1/repositories', { json: { namespace: 'prov', name: 'app', source: { provider: 'git', url: git.url('prov') } } });
    expect(repoRes.status).toBe(201);
    const repoId = (await repoRes.json()).id;
    const ruleRes = await kiln.api(`/api/v1/repositories/${repoId}/rules`, {
      json: { type: 'branch', match: 'main', contextDir: 'app', platforms: ['linux/amd64', 'linux/arm64'], buildArgs: { NOTE: 'min-mode-arg' }, tags: [{ template: 'v1' }] },
    });
    const rule = await ruleRes.json();
    expect(ruleRes.status, JSON.stringify(rule)).toBe(201);
    expect(rule.provenance).toBe('min');

    const started = await kiln.api(`/api/v1/rules/${rule.id}/builds`, { json: { ref: 'main' } });
    expect(started.status).toBe(202);
    const build = await waitForBuild(kiln, (await started.json()).buildId, 300_000);
    expect(build.error).toBeUndefined();
    expect(build.status).toBe('succeeded');
    expect(build.provenance).toBe('min');
    expect(build.source.commit).toBe(commit);

    const index = (await fetchManifest(kiln.registry, 'prov/app', 'v1'))!;
    expect(index.digest).toBe(build.manifestDigest);
    const { images, attestations, statements } = await readAttestations('prov/app', index);
    // The platforms, then one attestation per platform image, as BuildKit lays them out.
    expect(images.map((m: any) => `${m.platform.os}/${m.platform.architecture}`)).toEqual(['linux/amd64', 'linux/arm64']);
    expect(attestations).toHaveLength(2);
    expect(index.json.manifests.slice(0, 2)).toEqual(images);

    for (const p of build.platforms) {
      const entry = images.find((m: any) => `${m.platform.os}/${m.platform.architecture}` === p.platform);
      expect(entry.digest).toBe(p.digest);
      const att = statements.get(p.digest);
      expect(att, `an attestation refers to ${p.platform} ${p.digest}`).toBeDefined();
      expect(att!.manifestDigest).toBe(p.attestationDigest);
      const { statement } = att!;
      expect(statement._type).toBe('https://in-toto.io/Statement/v0.1');
      expect(statement.predicateType).toBe(SLSA_V02);
      // The subject is exactly the platform manifest the index points at.
      expect(statement.subject.map((s) => `sha256:${s.digest.sha256}`)).toEqual([p.digest]);
      // The source: the repository and the pinned commit (Kiln checks out; BuildKit records them as vcs).
      expect(statement.predicate.metadata[BUILDKIT_METADATA].vcs).toMatchObject({ source: git.url('prov'), revision: commit });
      // The materials: the base image, by digest.
      const base = statement.predicate.materials.find((m: any) => m.uri.includes('base/busybox'));
      expect(base?.digest.sha256).toMatch(/^[0-9a-f]{64}$/);
      // mode=min: build args are not recorded.
      expect(JSON.stringify(statement.predicate)).not.toContain('min-mode-arg');
      expect(statement.predicate.invocation.parameters.args ?? {}).not.toHaveProperty('build-arg:NOTE');
    }

    // A standard client copies the whole index (attestations included) and one platform alone.
    const all = path.join(scratch, 'all');
    await skopeo(['copy', '--all', '--src-tls-verify=false', `docker://${kiln.registry}/prov/app:v1`, `oci:${all}:v1`]);
    const layoutIndex = JSON.parse(await readFile(path.join(all, 'index.json'), 'utf8'));
    const copied = JSON.parse(await readFile(path.join(all, 'blobs', 'sha256', layoutIndex.manifests[0].digest.slice(7)), 'utf8'));
    expect(copied.manifests).toEqual(index.json.manifests);
    for (const a of attestations) expect(await readdir(path.join(all, 'blobs', 'sha256'))).toContain(a.digest.slice(7));

    const arm = path.join(scratch, 'arm64');
    await skopeo(['copy', '--override-os', 'linux', '--override-arch', 'arm64', '--src-tls-verify=false', `docker://${kiln.registry}/prov/app:v1`, `dir:${arm}`]);
    const armManifest = await readFile(path.join(arm, 'manifest.json'));
    const armEntry = images.find((m: any) => m.platform.architecture === 'arm64');
    expect(`sha256:${(await import('node:crypto')).createHash('sha256').update(armManifest).digest('hex')}`).toBe(armEntry.digest);
  });

  it('mode=max (an inline build, accelerated): records the build args; the eStargz index carries the eStargz images\' own attestations', async () => {
    const res = await kiln.api('/api/v1/builds', {
      json: {
        repository: 'prov/max',
        dockerfile: `FROM ${kiln.registry}/base/busybox\nARG NOTE\nRUN echo "$NOTE" > /note\n`,
        platforms: ['linux/amd64', 'linux/arm64'],
        buildArgs: { NOTE: 'max-mode-arg' },
        tags: ['v1'],
        provenance: 'max',
        accelerated: true,
      },
    });
    expect(res.status).toBe(202);
    const build = await waitForBuild(kiln, (await res.json()).buildId, 300_000);
    expect(build.error).toBeUndefined();
    expect(build.provenance).toBe('max');

    const index = (await fetchManifest(kiln.registry, 'prov/max', 'v1'))!;
    const { statements } = await readAttestations('prov/max', index);
    expect(statements.size).toBe(2);
    for (const p of build.platforms) {
      const { statement } = statements.get(p.digest)!;
      expect(statement.predicate.invocation.parameters.args).toMatchObject({ 'build-arg:NOTE': 'max-mode-arg' });
    }

    const accelerated = (await fetchManifest(kiln.registry, 'prov/max', 'v1_accelerated'))!;
    const acc = await readAttestations('prov/max', accelerated);
    expect(acc.images.map((m: any) => m.digest).sort()).toEqual(build.platforms.map((p: any) => p.acceleratedDigest).sort());
    for (const img of acc.images) {
      expect(acc.statements.get(img.digest)!.statement.subject.map((s) => `sha256:${s.digest.sha256}`)).toEqual([img.digest]);
    }
  });
});
