import { finishBuild } from '../db/queries/builds';
import type { Build } from '../db/schema';
import type { AppDeps } from './types';
import { errorMessage } from './util';

/**
 * Starts a build's workflow. When the engine cannot be reached the build is marked failed at once,
 * so none hangs queued; returns the failure message then, else null.
 */
export async function startBuildOrFail(deps: Pick<AppDeps, 'db' | 'builds'>, build: Build, repository: string): Promise<string | null> {
  try {
    await deps.builds.start({
      buildId: build.id,
      workflowId: build.workflowId,
      timeoutMinutes: build.timeoutMinutes,
      repository,
      trigger: build.trigger,
    });
    return null;
  } catch (err) {
    const message = `The build engine could not be reached: ${errorMessage(err)}`;
    await finishBuild(deps.db, build.id, { status: 'failed', errorCode: 'engine_unavailable', errorMessage: message });
    return message;
  }
}
