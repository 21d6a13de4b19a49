import { afterEach, describe, expect, it, vi } from 'vitest';
import { Dashboard } from './dashboard.svelte';
import { stubFetch } from '../test-utils';

const models = { object: 'list', data: [{ id: 'stories260K-F32', size: 1054560, quantization: 'F32', arch: 'llama', context_length: 512 }] };

describe('Dashboard', () => {
  afterEach(() => vi.useRealTimers());

  it('marks absent cluster endpoints unavailable and falls back to /v1/models', async () => {
    stubFetch({ '/healthz': { status: 200, body: { status: 'ok', node: 'solo', version: '1' } }, '/v1/models': { status: 200, body: models } });
    const d = new Dashboard();
    await Promise.all([d.nodes.load(), d.cluster.load(), d.instances.load(), d.models.load(), d.health.load()]);
    expect(d.nodes.status).toBe('unavailable');
    expect(d.cluster.status).toBe('unavailable');
    expect(d.instances.status).toBe('unavailable');
    expect(d.nodes.error).toBe('');
    expect(d.models.status).toBe('ok');
    expect(d.models.source).toBe('/v1/models');
    expect(d.models.data!.map((m) => m.id)).toEqual(['stories260K-F32']);
    expect(d.health.data!.node).toBe('solo');
  });

  it('keeps the last data and shows the error when a re-read fails', async () => {
    const fetch = stubFetch({ '/api/v1/nodes': { status: 200, body: { nodes: [{ id: 'a', name: 'a' }] } } });
    const d = new Dashboard();
    await d.nodes.load();
    fetch.mockImplementation(async () => new Response('boom', { status: 500 }));
    await d.nodes.load();
    expect(d.nodes.status).toBe('ok');
    expect(d.nodes.data!.map((n) => n.name)).toEqual(['a']);
    expect(d.nodes.error).toMatch(/HTTP 500: boom/);
  });

  it('applies model load events', () => {
    const d = new Dashboard();
    d.handle('model', { id: 'm', status: 'loading' });
    d.handle('model', { id: 'm', status: 'failed', error: 'out of memory' });
    expect(d.modelStates).toEqual({ m: { status: 'failed', error: 'out of memory' } });
  });

  it('inserts a created instance from its event and re-reads after a delete', async () => {
    vi.useFakeTimers();
    const fetch = stubFetch({ '/api/v1/instances': { status: 200, body: { instances: [] } } });
    const d = new Dashboard();
    await d.instances.load();
    d.handle('instance.created', { id: 'i1', model: 'm', status: 'placed', stages: [{ node: 'n1', layers: [0, 8] }] });
    expect(d.instances.data!.map((i) => i.id)).toEqual(['i1']);
    expect(fetch).toHaveBeenCalledTimes(1);
    d.handle('instance.deleted', { id: 'i1' });
    d.handle('instance.deleted', { id: 'i1' });
    await vi.advanceTimersByTimeAsync(200);
    expect(fetch).toHaveBeenCalledTimes(2); // one read for the burst
    expect(d.instances.data).toEqual([]);
  });

  it('re-reads nodes and cluster when membership changes', async () => {
    vi.useFakeTimers();
    const fetch = stubFetch({
      '/api/v1/nodes': { status: 200, body: { nodes: [] } },
      '/api/v1/cluster': { status: 200, body: { phase: 'ready' } },
    });
    const d = new Dashboard();
    d.handle('node.failed', { id: 'n3' });
    d.handle('member', {});
    await vi.advanceTimersByTimeAsync(200);
    expect(fetch.mock.calls.map((c) => c[0]).sort()).toEqual(['/api/v1/cluster', '/api/v1/nodes']);
  });

  it('tracks pull progress with a measured speed, and re-reads models when it ends', async () => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
    const fetch = stubFetch({ '/api/v1/models': { status: 200, body: { models: [] } } });
    const d = new Dashboard();
    d.handle('pull', { model: 'org/m', node: 'alpha', bytes: 0, total: 1000 });
    vi.setSystemTime(1000);
    d.handle('pull', { model: 'org/m', node: 'alpha', bytes: 100, total: 1000 });
    expect(d.pulls['org/m@alpha']).toMatchObject({ bytes: 100, total: 1000, speed: 100, status: 'running' });
    vi.setSystemTime(2000);
    d.handle('download', { model: 'org/m', node: 'alpha', bytes: 300, total: 1000 });
    expect(d.pulls['org/m@alpha']!.speed).toBeCloseTo(100 * 0.7 + 200 * 0.3);
    expect(fetch).not.toHaveBeenCalled();
    d.handle('pull', { model: 'org/m', node: 'alpha', bytes: 1000, total: 1000, status: 'done' });
    await vi.advanceTimersByTimeAsync(200);
    expect(fetch).toHaveBeenCalledWith('/api/v1/models', expect.anything());
    d.dismissPull('org/m@alpha');
    expect(d.pulls).toEqual({});
  });

  it('asks the placement preview with the request as query and sends creates as JSON', async () => {
    const fetch = stubFetch({
      '/api/v1/placement?model=m&context=1024&min_nodes=2&nodes=a%2Cb': {
        status: 200,
        body: { plan: { stages: [{ node: 'a', start: 0, end: 4 }, { node: 'b', start: 4, end: 8 }], token_ms: 10 } },
      },
      'POST /api/v1/instances': { status: 201, body: { id: 'i9' } },
      'GET /api/v1/instances': { status: 200, body: { instances: [] } },
      'DELETE /api/v1/instances/i%2F9': { status: 200, body: { deleted: 'i/9' } },
    });
    const d = new Dashboard();
    const plan = await d.preview({ model: 'm', context: 1024, minNodes: 2, nodes: ['a', 'b'] });
    expect(plan.stages.map((s) => [s.node, s.start, s.end])).toEqual([['a', 0, 4], ['b', 4, 8]]);
    await d.createInstance({ model: 'm', minNodes: 2, context: 1024, nodes: [] });
    const post = fetch.mock.calls.find((c) => (c[1] as RequestInit | undefined)?.method === 'POST')!;
    expect(JSON.parse((post[1] as RequestInit).body as string)).toEqual({ model: 'm', min_nodes: 2, context: 1024 });
    await d.deleteInstance('i/9');
    expect(fetch.mock.calls.some((c) => c[0] === '/api/v1/instances/i%2F9')).toBe(true);
  });

  it('surfaces a placement refusal with the server message', async () => {
    stubFetch({
      '/api/v1/placement?model=big': {
        status: 409,
        body: { error: { message: 'model big needs 80000000000 bytes but the 3 eligible node(s) offer 24000000000 bytes: short by 56000000000 bytes', type: 'invalid_request_error' } },
      },
    });
    await expect(new Dashboard().preview({ model: 'big' })).rejects.toThrow(/HTTP 409.*short by 56000000000 bytes/);
  });
});
