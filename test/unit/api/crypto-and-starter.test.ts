import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { BuildNotRunningError, createTemporalBuildStarter } from '../../../api/build-starter';
import { ImageBuildWorkflow } from '../../../workflows/image-build';
import { canonicalJson } from '../../../api/util';
import { decryptSecret, encryptSecret } from '../../../db/crypto';
import { KilnRepository, KilnStatus, KilnTrigger } from '../../../domain/temporal';

describe('db/crypto', () => {
  it('round-trips, never shows the plaintext, and differs every time', () => {
    const a = encryptSecret('key-1', 'ghp_token');
    const b = encryptSecret('key-1', 'ghp_token');
    expect(a).toMatch(/^v1:[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
    expect(a).not.toContain('ghp_token');
    expect(a).not.toBe(b);
    expect(decryptSecret('key-1', a)).toBe('ghp_token');
    expect(decryptSecret('key-1', encryptSecret('key-1', ''))).toBe('');
    expect(decryptSecret('key-1', encryptSecret('key-1', 'ünïcødé 🔑'))).toBe('ünïcødé 🔑');
  });

  it('refuses another key, tampering and unknown formats', () => {
    const enc = encryptSecret('key-1', 'secret');
    expect(() => decryptSecret('key-2', enc)).toThrow();
    const [v, iv, tag, ct] = enc.split(':');
    const flipped = Buffer.from(ct!, 'base64');
    flipped[0] = flipped[0]! ^ 1;
    expect(() => decryptSecret('key-1', [v, iv, tag, flipped.toString('base64')].join(':'))).toThrow();
    expect(() => decryptSecret('key-1', 'secret')).toThrow(/format/);
    expect(() => decryptSecret('key-1', `v2:${iv}:${tag}:${ct}`)).toThrow(/format/);
    expect(() => encryptSecret('', 'x')).toThrow();
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: undefined } })).toBe('{"a":{"d":[2,{"y":2,"z":1}]},"b":1}');
  });
});

function fakeClient() {
  const starts: [string, any][] = [];
  /** What start was called with: a workflow function or a name. */
  const startedWith: unknown[] = [];
  const cancels: string[] = [];
  let startError: Error | null = null;
  let cancelError: Error | null = null;
  const client = {
    workflow: {
      async start(workflow: string | ((...args: any[]) => unknown), opts: any) {
        startedWith.push(workflow);
        // As the Temporal client does: a workflow function is started by its name.
        starts.push([typeof workflow === 'string' ? workflow : workflow.name, opts]);
        if (startError) throw startError;
      },
      getHandle(id: string) {
        return {
          async cancel() {
            cancels.push(id);
            if (cancelError) throw cancelError;
          },
        };
      },
    },
  } as unknown as Client;
  return {
    client,
    starts,
    startedWith,
    cancels,
    failStart: (e: Error) => (startError = e),
    failCancel: (e: Error) => (cancelError = e),
  };
}

describe('createTemporalBuildStarter', () => {
  const req = { buildId: 'b-1', workflowId: 'build-b-1', timeoutMinutes: 60, repository: 'ns/web', trigger: 'api' as const };

  it('starts ImageBuildWorkflow on kiln-control with only the build id, no execution timeout (it may wait for a slot) and search attributes', async () => {
    const f = fakeClient();
    await createTemporalBuildStarter(f.client).start(req);
    expect(f.starts).toHaveLength(1);
    const [type, opts] = f.starts[0]!;
    expect(type).toBe('ImageBuildWorkflow');
    expect(f.startedWith[0]).toBe(ImageBuildWorkflow); // by its type, not a name string
    expect(opts).toMatchObject({
      taskQueue: 'kiln-control',
      workflowId: 'build-b-1',
      args: [{ buildId: 'b-1' }],
    });
    expect(opts.workflowExecutionTimeout).toBeUndefined();
    expect(opts.args).toEqual([{ buildId: 'b-1' }]);
    expect(opts.typedSearchAttributes).toEqual([
      { key: KilnRepository, value: 'ns/web' },
      { key: KilnTrigger, value: 'api' },
      { key: KilnStatus, value: 'queued' },
    ]);
  });

  it('takes another task queue', async () => {
    const f = fakeClient();
    await createTemporalBuildStarter(f.client, { taskQueue: 'q-test' }).start(req);
    expect(f.starts[0]![1].taskQueue).toBe('q-test');
  });

  it('treats an already started workflow as success and rethrows anything else', async () => {
    const f = fakeClient();
    const starter = createTemporalBuildStarter(f.client);
    f.failStart(new WorkflowExecutionAlreadyStartedError('already', 'build-b-1', 'ImageBuildWorkflow'));
    await expect(starter.start(req)).resolves.toBeUndefined();
    f.failStart(new Error('UNAVAILABLE: connection refused'));
    await expect(starter.start(req)).rejects.toThrow(/UNAVAILABLE/);
  });

  it('cancels through the workflow handle; an unknown workflow becomes BuildNotRunningError', async () => {
    const f = fakeClient();
    const starter = createTemporalBuildStarter(f.client);
    await starter.cancel('build-b-1');
    expect(f.cancels).toEqual(['build-b-1']);
    f.failCancel(new WorkflowNotFoundError('not found', 'build-b-1', undefined));
    await expect(starter.cancel('build-b-1')).rejects.toBeInstanceOf(BuildNotRunningError);
    f.failCancel(new Error('UNAVAILABLE'));
    await expect(starter.cancel('build-b-1')).rejects.toThrow('UNAVAILABLE');
  });
});
