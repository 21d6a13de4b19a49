import { afterEach, describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import type { ChatStats, streamChat } from '../chat';
import { ChatSession } from '../chatsession.svelte';
import { Dashboard } from '../dashboard.svelte';
import ChatView from './ChatView.svelte';
import InstancesView from './InstancesView.svelte';
import ModelsView from './ModelsView.svelte';
import NodesView from './NodesView.svelte';
import { stubFetch } from '../../test-utils';

const stats = (tokens: number, extra: Partial<ChatStats> = {}): ChatStats => ({
  ttftMs: 42,
  tokens,
  tokensPerSecond: 12.5,
  rateIsLowerBound: false,
  elapsedMs: 300,
  finishReason: null,
  promptTokens: 4,
  ...extra,
});

function dashWithModels(source = '/v1/models') {
  const d = new Dashboard();
  d.models.set([
    { id: 'stories260K-F32', size: 1054560, quantization: 'F32', arch: 'llama', contextLength: 512, nodes: [], readOnly: true },
    { id: 'other', nodes: ['alpha', 'beta'], readOnly: false },
  ]);
  d.models.source = source;
  return d;
}

describe('ChatView', () => {
  it('streams a reply as safe markdown, shows TTFT and tokens/s, and stops on Escape', async () => {
    let finish: (v: { text: string; stats: ChatStats }) => void = () => {};
    let abortSeen = false;
    const stream = vi.fn<typeof streamChat>(
      (_m, _p, o) =>
        new Promise((resolve, reject) => {
          finish = resolve;
          o?.onDelta?.('**bold** <img src=x onerror="window.pwned=1">', stats(3));
          o?.signal?.addEventListener('abort', () => {
            abortSeen = true;
            reject(new DOMException('aborted', 'AbortError'));
          });
        }),
    );
    const session = new ChatSession(stream);
    render(ChatView, { props: { dash: dashWithModels(), session } });
    expect((screen.getByTestId('chat-model') as HTMLSelectElement).value).toBe('stories260K-F32');

    const input = screen.getByTestId('chat-input');
    await fireEvent.input(input, { target: { value: 'Hello' } });
    await fireEvent.keyDown(input, { key: 'Enter' });
    const reply = await screen.findByTestId('turn-assistant');
    expect(within(reply).getByText('bold').tagName).toBe('STRONG');
    expect(reply.querySelector('img')).toBeNull();
    expect(reply.textContent).toContain('<img src=x onerror="window.pwned=1">');
    expect(screen.getByTestId('ttft').textContent).toBe('42.0 ms');
    expect(screen.getByTestId('tps').textContent).toBe('12.5 tok/s');
    expect(screen.getByTestId('chat-stop')).toBeTruthy();

    await fireEvent.keyDown(input, { key: 'Escape' });
    expect(abortSeen).toBe(true);
    expect(await screen.findByTestId('chat-stopped')).toBeTruthy();
    expect(screen.getByTestId('chat-send')).toBeTruthy();
    finish({ text: 'late', stats: stats(9) });
    expect(reply.textContent).not.toContain('late');
  });

  it('sends the chosen parameters and marks a lower-bound rate', async () => {
    const stream = vi.fn<typeof streamChat>(async () => ({ text: 'done', stats: stats(64, { rateIsLowerBound: true, tokensPerSecond: 900, finishReason: 'length' }) }));
    const session = new ChatSession(stream);
    render(ChatView, { props: { dash: dashWithModels(), session } });
    await fireEvent.input(screen.getByLabelText('Temperature'), { target: { value: '0' } });
    await fireEvent.input(screen.getByTestId('chat-max-tokens'), { target: { value: '64' } });
    await fireEvent.input(screen.getByLabelText('Seed'), { target: { value: '7' } });
    await fireEvent.input(screen.getByTestId('chat-input'), { target: { value: 'Go' } });
    await fireEvent.click(screen.getByTestId('chat-send'));
    await screen.findByText('done');
    expect(stream.mock.calls[0]![1]).toEqual({ model: 'stories260K-F32', temperature: 0, max_tokens: 64, seed: 7 });
    expect(screen.getByTestId('tps').textContent).toBe('≥ 900 tok/s');
    expect(screen.getByTestId('chat-stats').textContent).toContain('length');
  });
});

describe('ModelsView', () => {
  afterEach(() => vi.useRealTimers());

  it('lists models read-only from /v1/models, and says when pulls are not available', async () => {
    stubFetch({});
    const d = dashWithModels('/v1/models');
    d.modelStates = { 'stories260K-F32': { status: 'loaded' } };
    render(ModelsView, { props: { dash: d } });
    const row = screen.getByText('stories260K-F32').closest('tr')!;
    expect(within(row).getByText('loaded')).toBeTruthy();
    expect(within(row).getByText('1.01 MiB')).toBeTruthy();
    expect(screen.queryByRole('button', { name: /Delete/ })).toBeNull();
    expect(within(screen.getByText('other').closest('tr')!).getByText('alpha, beta')).toBeTruthy();

    await fireEvent.input(screen.getByLabelText('Source'), { target: { value: 'org/repo:model.gguf' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Pull' }));
    expect(await screen.findByText(/Pulling models is not available on this node/)).toBeTruthy();
    expect(screen.queryByRole('alert')).toBeNull();
  });

  it('starts a pull, shows its progress with speed and ETA, and deletes in two presses', async () => {
    const fetch = stubFetch({
      'POST /api/v1/models': { status: 202, body: { accepted: true } },
      'DELETE /api/v1/models/other': { status: 204 },
      'GET /api/v1/models': { status: 200, body: { models: [] } },
    });
    const d = dashWithModels('/api/v1/models');
    render(ModelsView, { props: { dash: d } });
    await fireEvent.input(screen.getByLabelText('Source'), { target: { value: 'org/repo:model.gguf' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Pull' }));
    await vi.waitFor(() => expect(fetch).toHaveBeenCalledWith('/api/v1/models', expect.objectContaining({ method: 'POST' })));
    const post = fetch.mock.calls.find((c) => (c[1] as RequestInit).method === 'POST')!;
    expect(JSON.parse((post[1] as RequestInit).body as string)).toEqual({ source: 'org/repo:model.gguf' });

    d.handle('pull', { model: 'org/repo:model.gguf', node: 'alpha', bytes: 256 << 20, total: 1 << 30, bytes_per_second: 64 << 20 });
    const bar = await screen.findByRole('progressbar');
    expect(bar.getAttribute('aria-valuenow')).toBe('25');
    expect(screen.getByTestId('pull').textContent).toMatch(/256 MiB of 1.00 GiB · 64.0 MiB\/s · 12 s left/);

    expect(screen.queryByRole('button', { name: 'Delete model stories260K-F32' })).toBeNull();
    expect(within(screen.getByText('stories260K-F32').closest('tr')!).getByText('read-only')).toBeTruthy();
    const del = screen.getByRole('button', { name: 'Delete model other' });
    await fireEvent.click(del);
    expect(fetch.mock.calls.some((c) => (c[1] as RequestInit | undefined)?.method === 'DELETE')).toBe(false);
    await fireEvent.click(screen.getByRole('button', { name: 'Really delete?: Delete model other' }));
    await vi.waitFor(() => expect(fetch.mock.calls.some((c) => c[0] === '/api/v1/models/other')).toBe(true));
    d.dispose();
  });
});

describe('InstancesView', () => {
  it('previews a placement before creating the instance', async () => {
    const fetch = stubFetch({
      '/api/v1/placement?model=stories260K-F32&min_nodes=2': {
        status: 200,
        body: {
          model: 'stories260K-F32',
          context: 512,
          plan: {
            stages: [
              { node: 'a', name: 'alpha', start: 0, end: 3, memory_bytes: 600000, weight_bytes: 500000, kv_bytes: 100000, compute_ms: 2, link_ms: 0.1 },
              { node: 'b', name: 'beta', start: 3, end: 5, memory_bytes: 500000, compute_ms: 1.5, link_ms: 0.1 },
            ],
            token_ms: 4,
            bottleneck_ms: 2.1,
            memory_bytes: 1100000,
          },
        },
      },
      'POST /api/v1/instances': { status: 201, body: { id: 'i1' } },
      'GET /api/v1/instances': {
        status: 200,
        body: { instances: [{ id: 'i1', model: 'stories260K-F32', status: 'placed', stages: [{ node: 'a', layers: [0, 3] }, { node: 'b', layers: [3, 5] }] }] },
      },
    });
    const d = dashWithModels('/api/v1/models');
    d.instances.set([]);
    d.nodes.set([
      { id: 'a', name: 'alpha', roles: ['worker'], status: 'alive', leader: true, accelerators: [], warnings: [], models: [], self: true },
      { id: 'b', name: 'beta', roles: ['worker'], status: 'alive', leader: false, accelerators: [], warnings: [], models: [], self: false },
    ]);
    render(InstancesView, { props: { dash: d } });
    await fireEvent.input(screen.getByLabelText('Minimum nodes'), { target: { value: '2' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Preview placement' }));
    const preview = await screen.findByTestId('placement-preview');
    expect(within(preview).getByRole('img', { name: /alpha layers 0 to 2; beta layers 3 to 4/ })).toBeTruthy();
    expect(preview.textContent).toMatch(/Predicted: 250 tok\/s per sequence · up to 476 tok\/s with the pipeline full/);
    expect(fetch.mock.calls.some((c) => (c[1] as RequestInit | undefined)?.method === 'POST')).toBe(false);

    await fireEvent.click(within(preview).getByRole('button', { name: 'Create instance' }));
    const item = await screen.findByTestId('instance');
    expect(item.textContent).toContain('placed');
    const post = fetch.mock.calls.find((c) => (c[1] as RequestInit | undefined)?.method === 'POST')!;
    expect(JSON.parse((post[1] as RequestInit).body as string)).toEqual({ model: 'stories260K-F32', min_nodes: 2 });
    await vi.waitFor(() => expect(screen.queryByTestId('placement-preview')).toBeNull());
  });

  it('asks for tensor-parallel stages and shows each group', async () => {
    const fetch = stubFetch({
      '/api/v1/placement?model=stories260K-F32&tensor_parallel=2': {
        status: 200,
        body: {
          plan: {
            stages: [{ node: 'a', name: 'alpha', start: 0, end: 5, memory_bytes: 600000, compute_ms: 2.5, swap_ms: 0.5, shards: [{ node: 'b', name: 'beta' }] }],
            token_ms: 2.5,
          },
        },
      },
      'POST /api/v1/instances': { status: 201, body: { id: 'i1' } },
      'GET /api/v1/instances': { status: 200, body: { instances: [] } },
    });
    const d = dashWithModels('/api/v1/models');
    d.instances.set([]);
    render(InstancesView, { props: { dash: d } });
    await fireEvent.input(screen.getByLabelText('Nodes per stage'), { target: { value: '2' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Preview placement' }));
    const preview = await screen.findByTestId('placement-preview');
    expect(within(preview).getByRole('img', { name: /alpha \+ beta layers 0 to 4/ })).toBeTruthy();
    expect(preview.textContent).toMatch(/split over 2 nodes/);
    expect(preview.textContent).toMatch(/swaps/);
    await fireEvent.click(within(preview).getByRole('button', { name: 'Create instance' }));
    await vi.waitFor(() => expect(fetch.mock.calls.some((c) => (c[1] as RequestInit | undefined)?.method === 'POST')).toBe(true));
    const post = fetch.mock.calls.find((c) => (c[1] as RequestInit | undefined)?.method === 'POST')!;
    expect(JSON.parse((post[1] as RequestInit).body as string)).toEqual({ model: 'stories260K-F32', tensor_parallel: 2 });
  });

  it('shows why a placement does not fit', async () => {
    stubFetch({
      '/api/v1/placement?model=stories260K-F32': { status: 409, body: { error: { message: 'short by 123 bytes', code: 'insufficient_memory' } } },
    });
    const d = dashWithModels('/api/v1/models');
    d.instances.set([]);
    render(InstancesView, { props: { dash: d } });
    await fireEvent.click(screen.getByRole('button', { name: 'Preview placement' }));
    expect((await screen.findByRole('alert')).textContent).toMatch(/HTTP 409.*short by 123 bytes/);
  });
});

describe('NodesView', () => {
  it('shows hardware and network detail per node', async () => {
    const d = new Dashboard();
    d.nodes.set([
      {
        id: 'a', name: 'alpha', roles: ['worker'], status: 'alive', leader: false, self: false, models: [], warnings: ['bond0: member ens2 is down'],
        accelerators: [{ vendor: 'nvidia', name: 'L4', memoryTotal: 24 * 2 ** 30, utilization: 40 }],
        network: {
          interfaces: [{ name: 'bond0', kind: 'bond', state: 'up', speedMbps: 50000, mtu: 9000, addresses: ['10.0.0.2/24'] }],
          bonds: [{ name: 'bond0', mode: '802.3ad', members: [{ name: 'ens1', state: 'up', speedMbps: 25000, active: true }, { name: 'ens2', state: 'down', active: false }] }],
          rdma: [{ name: 'mlx5_0', ports: [{ port: 1, state: 'ACTIVE', linkLayer: 'Ethernet', netdev: 'ens1' }] }],
          thunderbolt: [],
        },
      },
    ]);
    render(NodesView, { props: { dash: d } });
    const row = screen.getByTestId('nodes-table').querySelector('tbody tr')!;
    expect(row.textContent).toContain('L4 · 24.0 GiB · 40 %');
    expect(row.textContent).toContain('1 up · 1 bond · RDMA');
    expect(screen.getByText('bond0: member ens2 is down')).toBeTruthy();
    expect(screen.getByText(/ens2: down/).className).toContain('bad');
    expect(screen.getByText(/mlx5_0 port 1: ACTIVE · Ethernet · ens1/)).toBeTruthy();
    expect(screen.getByText('50 Gbit/s')).toBeTruthy();
  });
});
