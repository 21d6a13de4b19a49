import { describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import App from './App.svelte';

type Route = { status: number; body: unknown } | Error;

function stubApi(routes: Record<string, Route>) {
  const fetchMock = vi.fn(async (input: RequestInfo | URL) => {
    const route = routes[String(input)];
    if (!route) return new Response('not found', { status: 404 });
    if (route instanceof Error) throw route;
    return new Response(JSON.stringify(route.body), {
      status: route.status,
      headers: { 'Content-Type': 'application/json' },
    });
  });
  vi.stubGlobal('fetch', fetchMock);
  return fetchMock;
}

const healthz = { status: 200, body: { status: 'ok', node: 'edge-7', version: '1.2.3', commit: 'deadbeef' } };

describe('App', () => {
  it('shows node name, version and per-role readiness', async () => {
    stubApi({
      '/healthz': healthz,
      '/readyz': {
        status: 200,
        body: {
          ready: true,
          roles: {
            api: { ready: true, detail: 'listening on :52415' },
            worker: { ready: true, detail: '1 model loaded' },
            master: { ready: true, detail: 'leader' },
          },
        },
      },
    });
    render(App);

    expect(await screen.findByTestId('node-name')).toHaveProperty('textContent', 'edge-7');
    expect(screen.getByTestId('node-version').textContent).toBe('1.2.3');
    expect(screen.getByRole('heading', { level: 1 }).textContent).toBe('exo');
    const api = screen.getByTestId('role-api');
    expect(within(api).getByText('Ready')).toBeTruthy();
    expect(within(api).getByText('listening on :52415')).toBeTruthy();
    expect(screen.queryByRole('alert')).toBeNull();
  });

  it('shows a 503 readiness body instead of an error', async () => {
    stubApi({
      '/healthz': healthz,
      '/readyz': {
        status: 503,
        body: {
          ready: false,
          roles: {
            api: { ready: true, detail: 'ok' },
            worker: { ready: false, detail: 'loading weights' },
            master: { ready: true },
          },
        },
      },
    });
    render(App);

    const overall = await screen.findByTestId('overall-readiness');
    expect(overall.textContent).toContain('Not ready');
    expect(overall.textContent).toContain('HTTP 503');
    const worker = screen.getByTestId('role-worker');
    expect(within(worker).getByText('Not ready')).toBeTruthy();
    expect(within(worker).getByText('loading weights')).toBeTruthy();
    expect(within(screen.getByTestId('role-master')).getByText('Ready')).toBeTruthy();
    expect(screen.queryByRole('alert')).toBeNull();
  });

  it('shows fetch errors and recovers on Refresh', async () => {
    const fetchMock = stubApi({
      '/healthz': new TypeError('Failed to fetch'),
      '/readyz': { status: 500, body: { error: 'internal' } },
    });
    render(App);

    const alerts = await screen.findAllByRole('alert');
    expect(alerts.map((a) => a.textContent).join(' ')).toMatch(/Failed to fetch[\s\S]*HTTP 500/);

    stubApi({ '/healthz': healthz, '/readyz': { status: 200, body: { ready: true, roles: {} } } });
    await fireEvent.click(screen.getByRole('button', { name: /refresh/i }));

    expect((await screen.findByTestId('node-name')).textContent).toBe('edge-7');
    expect(screen.queryByRole('alert')).toBeNull();
    expect(fetchMock).toHaveBeenCalledTimes(2);
  });
});
