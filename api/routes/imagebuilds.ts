// POST /imagebuilds and GET /imagebuilds/{id}: the PAI CreateImageBuild / GetImageBuild shape
// over Kiln's inline builds. A PAI build is an ordinary Kiln build (GET /builds/{id} shows it).
import { createHmac, randomUUID } from 'node:crypto';
import { createRoute } from '@hono/zod-openapi';
import { encryptRegistryAuths, type RegistryAuths } from '../../activities/registry-auth';
import { getBuild, type BuildWithDetails } from '../../db/queries/builds';
import type { PaiRequestRecord } from '../../db/schema';
import type { BuildStatus } from '../../domain/builds';
import type { AppDeps } from '../types';
import { requireNamespace } from '../auth';
import { ApiError, pickErrors } from '../errors';
import {
  canonicalBuildType,
  isUserPassword,
  PaiCreateImageBuild,
  PaiCreateImageBuildQuery,
  PaiImageBuild,
  PaiImageBuildCreated,
  type PaiCreateImageBuildInput,
  type PAI_STATUSES,
} from '../imagebuild-schemas';
import { inlineBuilds } from '../inline-builds';
import { IdParams, OCI_TAG_RE, REPOSITORY_PATH_RE, RepositoryPath, splitRepositoryPath } from '../schemas';
import { canonicalJson, createRouter, isUuid, jsonContent, sha256Hex } from '../util';
import { temporalWorkflowUrl } from '../views';


const create = createRoute({
  method: 'post',
  path: '/',
  tags: ['imagebuilds (PAI)'],
  summary: 'Build an image (PAI CreateImageBuild)',
  description:
    'Builds `BuildConfig.Dockerfile` for linux/amd64 (either BuildType: PAI\'s console writes a PackageInstallation ' +
    'as FROM the base image plus the install steps) and pushes it to `namespace/repository:tag` of `Image.Uri` in ' +
    'Kiln\'s registry, creating the repository on demand, with a SLSA provenance attestation (mode=min). ' +
    '`Image.Labels` become image labels; `OverwriteImageTag: false` (top level or in TargetRegistry) refuses a tag that ' +
    'exists (409); `RegistryAuths` (in BuildConfig or at the top level) are used to pull private base images and are ' +
    'stored encrypted, never returned or logged. `Image.Name`, `Image.Description`, `ImageBuildJobName`, `WorkspaceId`, ' +
    '`RegionId`, `Accessibility`, `Resource`, `UserVpc` and `TargetRegistry.Type`/`InstanceId` are stored and shown by ' +
    'GET /imagebuilds/{id}; the build itself runs on Kiln\'s build workers. The idempotency token is `ClientToken`, in ' +
    'the query (as PAI clients send it) or the body.',
  request: { query: PaiCreateImageBuildQuery, body: { required: true, content: jsonContent(PaiCreateImageBuild) } },
  responses: {
    200: { description: 'Accepted; the build runs asynchronously', content: jsonContent(PaiImageBuildCreated) },
    ...pickErrors(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
  },
});

const get = createRoute({
  method: 'get',
  path: '/{id}',
  tags: ['imagebuilds (PAI)'],
  summary: 'Get an image build (PAI GetImageBuild)',
  request: { params: IdParams },
  responses: { 200: { description: 'The image build', content: jsonContent(PaiImageBuild) }, ...pickErrors(401, 403, 404) },
});

const invalidUri = (message: string) =>
  new ApiError('validation_failed', 'The request is not valid', [{ in: 'json', path: ['Image', 'Uri'], message }]);

/**
 * `[registry/]namespace/repository[:tag]` → its parts. A Kiln repository is always namespace/name,
 * so a third, leading component is the registry: Kiln's own, or the one PAI would push to (an ACR
 * instance's domain), which is recorded while the image goes to the same path in Kiln's registry.
 */
export function parseImageUri(uri: string): { namespace: string; name: string; tag: string; registry: string | null } {
  if (uri.includes('@')) throw invalidUri('must name a tag, not a digest');
  const parts = uri.split('/');
  let registry: string | null = null;
  if (parts.length === 3) registry = parts.shift()!;
  const last = parts.pop() ?? '';
  const colon = last.indexOf(':');
  const name = colon < 0 ? last : last.slice(0, colon);
  const tag = colon < 0 ? 'latest' : last.slice(colon + 1);
  const path = [...parts, name].join('/');
  if (!REPOSITORY_PATH_RE.test(path)) throw invalidUri('must be [registry/]namespace/repository[:tag], in lowercase');
  // The document's pattern admits longer names than a repository may have: such a one cannot exist.
  if (!RepositoryPath.safeParse(path).success) throw new ApiError('not_found', `Repository ${path} does not exist and cannot be created`);
  if (!OCI_TAG_RE.test(tag)) throw invalidUri(`"${tag}" is not a valid tag`);
  return { ...splitRepositoryPath(path), tag, registry };
}

const PAI_STATUS: Record<BuildStatus, (typeof PAI_STATUSES)[number]> = {
  queued: 'Queuing',
  running: 'Running',
  succeeded: 'Succeeded',
  failed: 'Failed',
  timed_out: 'Failed',
  canceled: 'Stopped',
};

export function imageBuildRoutes(deps: AppDeps) {
  const { db, config } = deps;
  const inline = inlineBuilds(deps);

  function view(b: BuildWithDetails) {
    const pai = b.paiRequest;
    return {
      RequestId: randomUUID(),
      ImageBuildId: b.id,
      ImageBuildJobId: b.workflowId,
      Status: PAI_STATUS[b.status],
      KilnStatus: b.status,
      ReasonCode: b.errorCode,
      ReasonMessage: b.errorMessage,
      BuildType: pai ? canonicalBuildType(pai.BuildType) : null,
      ImageBuildJobName: pai?.ImageBuildJobName ?? null,
      WorkspaceId: pai?.WorkspaceId ?? null,
      RegionId: pai?.RegionId ?? null,
      Accessibility: (pai?.Accessibility as 'PUBLIC' | 'PRIVATE' | undefined) ?? null,
      Resource: (pai?.Resource as PaiCreateImageBuildInput['Resource']) ?? null,
      UserVpc: (pai?.UserVpc as PaiCreateImageBuildInput['UserVpc']) ?? null,
      TargetRegistry: pai?.TargetRegistry ? { Type: pai.TargetRegistry.Type ?? null, InstanceId: pai.TargetRegistry.InstanceId ?? null } : null,
      Image: {
        Name: pai?.Image.Name ?? null,
        Description: pai?.Image.Description ?? null,
        Uri: `${config.registry}/${b.repository}:${b.tags[0] ?? 'latest'}`,
        RequestedUri: pai?.Image.Uri ?? null,
        Digest: b.manifestDigest,
      },
      GmtCreateTime: b.createdAt.toISOString(),
      GmtStartTime: b.startedAt?.toISOString() ?? null,
      GmtFinishTime: b.finishedAt?.toISOString() ?? null,
      TemporalUiUrl: temporalWorkflowUrl(config, b.workflowId),
    };
  }

  return createRouter()
    .openapi(create, async (c) => {
      const body = c.req.valid('json');
      const queryToken = c.req.valid('query').ClientToken;
      if (queryToken && body.ClientToken && queryToken !== body.ClientToken) {
        throw new ApiError('unprocessable', 'ClientToken differs between the query and the body');
      }
      const clientToken = body.ClientToken ?? queryToken;
      const { namespace, name, tag } = parseImageUri(body.Image.Uri);
      const overwrite = [body.OverwriteImageTag, body.TargetRegistry?.OverwriteImageTag].filter((v) => v !== undefined);
      if (new Set(overwrite).size > 1) {
        throw new ApiError('unprocessable', 'OverwriteImageTag and TargetRegistry.OverwriteImageTag disagree', [
          { in: 'json', path: ['OverwriteImageTag'], message: 'give it once, or the same value in both places' },
        ]);
      }
      if (body.RegistryAuths && body.BuildConfig.RegistryAuths) {
        throw new ApiError('unprocessable', 'RegistryAuths is given twice', [
          { in: 'json', path: ['RegistryAuths'], message: 'give it in BuildConfig or at the top level, not both' },
        ]);
      }
      const registryAuths = body.BuildConfig.RegistryAuths ?? body.RegistryAuths;
      const labelKeys = (body.Image.Labels ?? []).map((l) => l.Key);
      const repeated = labelKeys.filter((k, i) => labelKeys.indexOf(k) !== i);
      if (repeated.length) {
        throw new ApiError('unprocessable', 'Image.Labels keys must be unique', [
          { in: 'json', path: ['Image', 'Labels'], message: `repeated: ${[...new Set(repeated)].join(', ')}` },
        ]);
      }
      const notUserPassword = Object.entries(registryAuths ?? {}).filter(([, { Auth }]) => !isUserPassword(Auth));
      if (notUserPassword.length) {
        throw new ApiError(
          'unprocessable',
          'RegistryAuths entries must be base64 of "user:password"',
          notUserPassword.map(([host]) => ({
            in: 'json',
            path: [...(body.BuildConfig.RegistryAuths ? ['BuildConfig'] : []), 'RegistryAuths', host, 'Auth'],
            message: 'not base64 of "user:password"',
          })),
        );
      }
      const auths: RegistryAuths | null = registryAuths
        ? Object.fromEntries(Object.entries(registryAuths).map(([host, { Auth }]) => [host, { auth: Auth }]))
        : null;
      // The idempotency hash is stored: it covers the credentials only through a keyed hash.
      const requestHash = sha256Hex(
        canonicalJson({
          ...body,
          BuildConfig: { ...body.BuildConfig, RegistryAuths: undefined },
          ClientToken: clientToken,
          RegistryAuths: auths ? createHmac('sha256', config.secretKey).update(canonicalJson(auths)).digest('hex') : undefined,
        }),
      );
      // What the request says about itself, kept as sent (never the credentials).
      const paiRequest: PaiRequestRecord = {
        BuildType: canonicalBuildType(body.BuildConfig.BuildType),
        Image: { Name: body.Image.Name, Description: body.Image.Description, Uri: body.Image.Uri },
        ImageBuildJobName: body.ImageBuildJobName,
        WorkspaceId: body.WorkspaceId,
        RegionId: body.RegionId,
        Accessibility: body.Accessibility,
        Resource: body.Resource,
        UserVpc: body.UserVpc ?? body.Resource?.UserVpc,
        TargetRegistry: body.TargetRegistry ? { Type: body.TargetRegistry.Type, InstanceId: body.TargetRegistry.InstanceId } : undefined,
      };
      const accepted = await inline.submit(c, {
        namespace,
        name,
        dockerfile: body.BuildConfig.Dockerfile,
        // PAI builds images for x86 machines; multi-arch builds are POST /builds.
        platforms: ['linux/amd64'],
        buildArgs: {},
        labels: Object.fromEntries((body.Image.Labels ?? []).map((l) => [l.Key, l.Value])),
        target: null,
        tags: [tag],
        timeoutMinutes: 60,
        clientToken,
        requestHash,
        newRepository: {
          visibility: body.Accessibility === 'PUBLIC' ? 'public' : body.Accessibility === 'PRIVATE' ? 'private' : undefined,
          description: body.Image.Description,
        },
        refuseExistingTags: overwrite[0] === false,
        registryAuthsEnc: auths ? encryptRegistryAuths(config.secretKey, auths) : null,
        paiRequest,
      });
      return c.json({ RequestId: randomUUID(), ImageBuildId: accepted.buildId, ImageBuildJobId: accepted.workflowId }, 200);
    })
    .openapi(get, async (c) => {
      const id = c.req.valid('param').id;
      const build = isUuid(id) ? await getBuild(db, id) : undefined;
      if (!build) throw new ApiError('not_found', `Image build ${id} not found`);
      requireNamespace(c, splitRepositoryPath(build.repository).namespace);
      return c.json(view(build), 200);
    });
}
