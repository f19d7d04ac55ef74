// Uploaded local contexts on the build worker's side: fetch the blob from the build's own
// repository in Kiln's registry, unpack it into the build's work dir, and locate the context dir
// and Dockerfile with the same checks as a git checkout (nothing may leave the upload). And the
// retention sweep that removes contexts no build has used for a while.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CancelledFailure } from '@temporalio/activity';
import { userFault } from '../domain/errors';
import * as tar from 'tar';
import type { Db } from '../db/client';
import { deleteBuildContext, expiredBuildContexts } from '../db/queries/contexts';
import type { PlatformBuildRequest } from './build-plan';
import type { BuildContext } from './build';
import { resolveBuildContext } from './git';
import { RegistryError, type RegistryClient } from './registry';

export function createContextAccess(deps: { registry: RegistryClient }) {
  return {
    /** Unpacks the build's uploaded context into `workDir/context-src` and locates what to build. */
    async fetchContext(req: PlatformBuildRequest, workDir: string, signal: AbortSignal): Promise<BuildContext> {
      if (req.source.kind !== 'context') throw new Error('fetchContext needs an uploaded context');
      const { digest, contextDir, dockerfilePath } = req.source;
      let blob: ReadableStream<Uint8Array>;
      try {
        blob = await deps.registry.openBlob(req.repository, digest, signal);
      } catch (err) {
        if (err instanceof RegistryError && err.status === 404) {
          throw userFault('context_not_found', `The uploaded context ${digest} is no longer in the registry (expired?); upload it again`);
        }
        throw err;
      }
      const dir = path.join(workDir, 'context-src');
      await mkdir(dir);
      let unpackError: Error | undefined;
      try {
        // node-tar refuses absolute paths, `..` and writing through symlinks (preservePaths off);
        // gzip is detected from the bytes. strict: a damaged archive is an error, not a warning.
        await pipeline(
          Readable.fromWeb(blob as never, { signal }),
          tar.x({
            cwd: dir,
            strict: true,
            preserveOwner: false,
            // Informational notes (e.g. a leading / stripped from a link) are not faults.
            onwarn: (code, message) => {
              if (code !== 'TAR_ENTRY_INFO') unpackError ??= new Error(message);
            },
          }),
        );
      } catch (err) {
        if (signal.aborted) throw new CancelledFailure('build canceled');
        unpackError = err as Error;
      }
      if (unpackError) {
        throw userFault('invalid_source', `The uploaded context is not a valid tar archive: ${unpackError.message}`);
      }
      return resolveBuildContext(dir, contextDir, dockerfilePath);
    },
  };
}

/**
 * Removes contexts unused for `retentionMs` that no unfinished build needs: first the record (so
 * no new build can name it), then the blob. Safe to run from several processes at once.
 */
export async function sweepBuildContexts(deps: { db: Db; registry: RegistryClient }, retentionMs: number, now = new Date()): Promise<number> {
  const before = new Date(now.getTime() - retentionMs);
  let removed = 0;
  for (const row of await expiredBuildContexts(deps.db, before)) {
    if (!(await deleteBuildContext(deps.db, row, before))) continue;
    await deps.registry.deleteBlob(row.repository, row.digest);
    removed++;
  }
  return removed;
}

/** Runs the sweep every `everyMs` until stopped; failures are logged and retried next round. */
export function scheduleContextSweep(deps: { db: Db; registry: RegistryClient }, retentionMs: number, everyMs: number): () => void {
  const timer = setInterval(() => {
    sweepBuildContexts(deps, retentionMs).catch((err) => console.error('[contexts] retention sweep failed:', err));
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
