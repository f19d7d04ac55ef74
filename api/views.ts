import { effectiveQuotas, type NamespaceQuotas } from '../domain/quotas';
import { isBuildErrorCode } from '../domain/errors';
import type { BuildWithDetails } from '../db/queries/builds';
import type { RepositoryWithNamespace } from '../db/queries/repositories';
import type { BuildStep, ImageTag, Namespace } from '../db/schema';
import type { BuildStepViewBody, BuildViewBody, SourceProvider } from './schemas';

const isoOrNull = (d: Date | null) => (d ? d.toISOString() : null);

export function namespaceView(n: Namespace, defaults?: NamespaceQuotas) {
  return { ...n, ...effectiveQuotas(n, defaults), createdAt: n.createdAt.toISOString() };
}

/** Providers that can call us back; a plain git URL has no webhook. */
export function webhookUrl(publicUrl: string, provider: SourceProvider): string | null {
  if (provider === 'git') return null;
  return `${publicUrl.replace(/\/+$/, '')}/webhooks/${provider}`;
}

export function repositoryView(r: RepositoryWithNamespace, publicUrl: string) {
  return {
    id: r.id,
    namespace: r.namespace,
    name: r.name,
    path: `${r.namespace}/${r.name}`,
    visibility: r.visibility,
    immutableTags: r.immutableTags,
    acceleratedImages: r.acceleratedImages,
    summary: r.summary,
    description: r.description,
    source:
      r.sourceProvider && r.sourceUrl
        ? {
            provider: r.sourceProvider,
            url: r.sourceUrl,
            hasToken: r.sourceTokenEnc !== null,
            webhookUrl: webhookUrl(publicUrl, r.sourceProvider),
          }
        : null,
    buildSettings: { autoBuild: r.autoBuild, noCache: r.noCache },
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}

export function imageTagView(t: ImageTag) {
  return {
    tag: t.tag,
    digest: t.digest,
    creationMethod: t.creationMethod,
    buildId: t.buildId,
    createdAt: t.createdAt.toISOString(),
    updatedAt: t.updatedAt.toISOString(),
  };
}

export interface TemporalLink {
  temporalUiUrl: string | null;
  temporalNamespace: string;
}

export function temporalWorkflowUrl(link: TemporalLink, workflowId: string): string | null {
  if (!link.temporalUiUrl) return null;
  const base = link.temporalUiUrl.replace(/\/+$/, '');
  return `${base}/namespaces/${encodeURIComponent(link.temporalNamespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

export function stepView(s: BuildStep): BuildStepViewBody {
  const ms = s.startedAt && s.completedAt ? Date.parse(s.completedAt) - Date.parse(s.startedAt) : Number.NaN;
  return {
    name: s.name,
    cached: s.cached,
    startedAt: s.startedAt,
    completedAt: s.completedAt,
    durationMs: Number.isFinite(ms) ? Math.max(0, Math.round(ms)) : null,
    ...(s.error ? { error: s.error } : {}),
    logBytes: s.logBytes ?? 0,
    logLines: s.logLines ?? 0,
  };
}

export function buildView(b: BuildWithDetails, link: TemporalLink, queuePosition: number | null = null): BuildViewBody {
  return {
    id: b.id,
    status: b.status,
    phase: b.phase,
    trigger: b.trigger,
    creationMethod: b.creationMethod,
    repository: b.repository,
    ruleId: b.ruleId,
    ...(b.sourceUrl ? { source: { url: b.sourceUrl, ref: b.sourceRef, commit: b.sourceCommit } } : {}),
    ...(b.contextDigest
      ? { context: { digest: b.contextDigest, size: b.contextSize ?? 0, contextDir: b.contextDir, dockerfile: b.dockerfilePath } }
      : {}),
    platforms: b.platformStates.map((p) => ({
      platform: p.platform,
      status: p.status,
      digest: p.digest,
      acceleratedDigest: p.acceleratedDigest,
      attestationDigest: p.attestationDigest,
      cacheHits: p.cacheHits,
      startedAt: isoOrNull(p.startedAt),
      finishedAt: isoOrNull(p.finishedAt),
      steps: p.steps.map(stepView),
      baseImages: p.baseImages,
      progress: {
        completedSteps: p.steps.filter((st) => st.completedAt || st.cached).length,
        totalSteps: p.steps.length,
      },
    })),
    manifestDigest: b.manifestDigest,
    tags: b.tags,
    pushedTags: b.pushedTags,
    ...(b.accelerated ? { accelerated: { tags: b.acceleratedTags, digest: b.acceleratedDigest } } : {}),
    provenance: b.provenance,
    ...(b.errorCode || b.errorMessage
      ? { error: { code: isBuildErrorCode(b.errorCode) ? b.errorCode : ('unknown' as const), message: b.errorMessage ?? '' } }
      : {}),
    logIncomplete: b.logIncomplete,
    queuePosition,
    workflowId: b.workflowId,
    temporalUiUrl: temporalWorkflowUrl(link, b.workflowId),
    createdAt: b.createdAt.toISOString(),
    startedAt: isoOrNull(b.startedAt),
    finishedAt: isoOrNull(b.finishedAt),
  };
}
