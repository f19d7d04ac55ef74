// Activity log lines name their build: the interceptor adds buildId from the workflow id.
import { describe, expect, it } from 'vitest';
import { buildIdLogAttributes } from '../../infra/workers';

function attributesFor(workflowId: string | undefined): Record<string, unknown> {
  const ctx = { info: { workflowExecution: workflowId ? { workflowId, runId: 'r' } : undefined } } as never;
  const { outbound } = buildIdLogAttributes(ctx);
  return outbound!.getLogAttributes!({ workflowId, activityType: 'startBuild' }, (input) => input);
}

describe('activity log attributes', () => {
  it('adds the build id of a build-<id> workflow to what Temporal already attaches', () => {
    expect(attributesFor('build-0b9d2f1e-1111-4222-8333-444455556666')).toEqual({
      workflowId: 'build-0b9d2f1e-1111-4222-8333-444455556666',
      activityType: 'startBuild',
      buildId: '0b9d2f1e-1111-4222-8333-444455556666',
    });
  });

  it('adds nothing for other workflows or a standalone activity', () => {
    expect(attributesFor('other-1')).toEqual({ workflowId: 'other-1', activityType: 'startBuild' });
    expect(attributesFor(undefined)).toEqual({ workflowId: undefined, activityType: 'startBuild' });
  });
});
