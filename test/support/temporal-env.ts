// A Temporal dev server of the test's own (the pinned CLI, Kiln's search attributes) for workflow
// tests that run their workers against stubbed activities.
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { KILN_SEARCH_ATTRIBUTES } from '../../domain/temporal';
import { toolPaths } from '../../infra/tools';
import { installQuietRuntime } from '../../infra/workers';

export async function startLocalTemporalEnv(): Promise<TestWorkflowEnvironment> {
  installQuietRuntime('ERROR'); // expected failures would otherwise log stack traces
  return TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: toolPaths().temporal }, searchAttributes: [...KILN_SEARCH_ATTRIBUTES] },
  });
}
