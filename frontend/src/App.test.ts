import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import App from './App.svelte';
import { Dashboard } from './lib/dashboard.svelte';
import { EventStream } from './lib/events.svelte';
import { ChatSession } from './lib/chatsession.svelte';
import { auth } from './lib/auth.svelte';
import { router } from './lib/router.svelte';
import { authOf, jsonResponse, sseResponse, stubFetch, type Route } from './test-utils';

const healthz: Route = { status: 200, body: { status: 'ok', node: 'edge-7', version: '1.2.3', commit: 'deadbeef' } };
const readyz: Route = {
  status: 200,
  body: { ready: true, roles: { api: { ready: true, detail: 'listening on :52415' }, worker: { ready: true, detail: '1 model loaded' } } },
};
const models: Route = { status: 200, body: { object: 'list', data: [{ id: 'stories260K-F32', size: 1054560, quantization: 'F32', arch: 'llama', context_length: 512 }] } };
const liveEvents: Route = () => sseResponse(['event: hello\ndata: {"node":"edge-7"}\n\n'], { hold: true });

function renderApp() {
  const stream = new EventStream();
  const result = render(App, { props: { dash: new Dashboard(), stream, session: new ChatSession() } });
  return { ...result, stream };
}

describe('App', () => {
  beforeEach(() => {
    sessionStorage.clear();
    auth.setKey('');
    router.go('cluster');
  });
  afterEach(() => sessionStorage.clear());

  it('shows the node, its readiness, and a calm notice where cluster endpoints are absent', async () => {
    stubFetch({ '/healthz': healthz, '/readyz': readyz, '/v1/models': models, '/api/v1/events': liveEvents });
    const { stream } = renderApp();

    expect(await screen.findByTestId('node-name')).toHaveProperty('textContent', 'edge-7');
    expect(screen.getByTestId('header-node').textContent).toContain('edge-7 · v1.2.3');
    expect(within(screen.getByTestId('role-api')).getByText('Ready')).toBeTruthy();
    await screen.findByText(/Cluster membership is not available on this node/);
    await screen.findByText(/Model instances is not available on this node/);
    expect(screen.queryByRole('alert')).toBeNull();
    // The lone node is still drawn.
    expect(screen.getAllByTestId('node-card').map((c) => c.dataset.node)).toEqual(['edge-7']);
    await screen.findByText('Live');
    stream.stop();
  });

  it('lists nodes, leader and links when the cluster answers', async () => {
    stubFetch({
      '/healthz': healthz,
      '/readyz': readyz,
      '/api/v1/events': liveEvents,
      '/api/v1/nodes': {
        status: 200,
        body: {
          nodes: [
            { id: 'a', name: 'alpha', roles: ['master'], status: 'alive', leader: true, memory: { total: 8e9, available: 2e9 } },
            { id: 'b', name: 'beta', roles: ['worker'], status: 'alive' },
            { id: 'c', name: 'gamma', roles: ['worker'], status: 'failed' },
          ],
        },
      },
      '/api/v1/cluster': { status: 200, body: { phase: 'ready', links: [{ from: 'a', to: 'b', rtt_ms: 0.4, bandwidth_mbps: 10000, transport: 'quic' }] } },
      '/api/v1/instances': { status: 200, body: { instances: [{ id: 'i1', model: 'llama', status: 'placed', stages: [{ node: 'a', layers: [0, 6] }, { node: 'b', layers: [6, 16] }] }] } },
      '/api/v1/models': { status: 200, body: { models: [] } },
    });
    const { stream } = renderApp();
    await screen.findByText('alpha', { selector: 'h3' });
    expect(screen.getAllByTestId('node-card').map((c) => c.dataset.node)).toEqual(['alpha', 'beta', 'gamma']);
    expect(screen.getByText('leader', { selector: '.badge' })).toBeTruthy();
    const desc = document.getElementById('topo-desc')!.textContent!;
    expect(desc).toMatch(/3 nodes; 1 measured link; alpha to beta: 0\.40 ms · 10\.0 Gbit\/s · quic/);
    expect(screen.getByRole('img', { name: /Stages of llama: alpha layers 0 to 5; beta layers 6 to 15/ })).toBeTruthy();
    expect(screen.getByText('5.59 GiB of 7.45 GiB')).toBeTruthy();
    stream.stop();
  });

  it('asks for an API key on 401 and starts over with it', async () => {
    const key = 'sekret';
    const guarded = (body: Route): Route => (init) => {
      const h = (init?.headers ?? {}) as Record<string, string>;
      if (h.Authorization !== `Bearer ${key}`) return jsonResponse({ error: { message: 'missing or invalid API key' } }, 401);
      if (typeof body === 'function') return body(init);
      return jsonResponse((body as { body: unknown }).body, (body as { status: number }).status);
    };
    const fetch = stubFetch({
      '/healthz': healthz,
      '/readyz': readyz,
      '/v1/models': guarded(models),
      '/api/v1/events': guarded(liveEvents),
    });
    router.go('models');
    const { stream } = renderApp();
    expect(await screen.findByText(/This node requires an API key/)).toBeTruthy();
    await screen.findByText('Needs API key');

    await fireEvent.input(screen.getByLabelText('Key'), { target: { value: ' wrong ' } });
    await fireEvent.submit(screen.getByRole('button', { name: 'Use key' }).closest('form')!);
    expect(await screen.findByText(/The node refused the API key/)).toBeTruthy();
    expect(sessionStorage.getItem('exo.apiKey')).toBe('wrong');

    await fireEvent.input(screen.getByLabelText('Key'), { target: { value: key } });
    await fireEvent.submit(screen.getByRole('button', { name: 'Use key' }).closest('form')!);
    expect(await screen.findByText('stories260K-F32')).toBeTruthy();
    await screen.findByText('Live');
    expect(screen.queryByText(/requires an API key/)).toBeNull();
    const last = fetch.mock.calls.filter((c) => c[0] === '/v1/models').at(-1)!;
    expect(authOf(last)).toBe(`Bearer ${key}`);
    expect(localStorage.getItem('exo.apiKey')).toBeNull();
    stream.stop();
  });

  it('switches views from the keyboard and moves focus into the view', async () => {
    stubFetch({ '/healthz': healthz, '/readyz': readyz, '/v1/models': models, '/api/v1/events': liveEvents });
    const { stream } = renderApp();
    await screen.findByTestId('node-name');
    await fireEvent.keyDown(window, { key: '5', altKey: true });
    expect(await screen.findByTestId('chat-input')).toBeTruthy();
    expect(screen.getByRole('link', { name: 'Chat' }).getAttribute('aria-current')).toBe('page');
    await new Promise((r) => setTimeout(r, 0));
    expect(document.activeElement?.id).toBe('main');
    await fireEvent.keyDown(window, { key: '3', altKey: true });
    expect(await screen.findByTestId('models-table')).toBeTruthy();
    stream.stop();
  });
});
