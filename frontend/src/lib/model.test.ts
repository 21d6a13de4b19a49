import { describe, expect, it } from 'vitest';
import { toCluster, toInstances, toModels, toNodes, toPlan, toPullEvent } from './model';

describe('readers of cluster JSON', () => {
  it('reads GET /api/v1/nodes as the cluster service writes it', () => {
    const nodes = toNodes({
      nodes: [
        {
          id: 'n1', name: 'alpha', roles: ['master', 'worker', 'api'], status: 'alive', leader: true, self: true,
          addr: '10.0.0.1:52416', memory: { total: 16e9, available: 12e9, offered: 10e9, reserved: 2e9 },
          cpus: 8, accelerators: '1x NVIDIA L4', speed_gbs: 21.5, models: ['m1'],
        },
        { id: 'n2', name: 'beta', roles: 'worker', status: 'suspect', leader: false },
        { nope: true },
      ],
    });
    expect(nodes).toHaveLength(2);
    expect(nodes[0]).toMatchObject({
      id: 'n1', name: 'alpha', leader: true, self: true, memoryTotal: 16e9, memoryAvailable: 12e9, memoryOffered: 10e9,
      memoryReserved: 2e9, cores: 8, acceleratorSummary: '1x NVIDIA L4', speedGBps: 21.5, models: ['m1'], address: '10.0.0.1:52416',
    });
    expect(nodes[1]).toMatchObject({ roles: ['worker'], status: 'suspect', accelerators: [], warnings: [] });
  });

  it('reads detection reports nested in a node (exo detect --json shape)', () => {
    const [n] = toNodes([
      {
        id: 'gpu1',
        hardware: {
          cpu: { model: 'EPYC', physical_cores: 32, logical_cores: 64 },
          memory: { total_bytes: 512e9, available_bytes: 400e9 },
          accelerators: [{ vendor: 'nvidia', name: 'H100', memory_total_bytes: 80e9, memory_free_bytes: 70e9, utilization_percent: 35 }],
          selected_backend: 'cuda',
          warnings: ['NVML missing'],
          network: {
            interfaces: [{ name: 'bond0', kind: 'bond', state: 'up', speed_mbps: 50000, mtu: 9000, addresses: ['10.1.0.2/24'] }],
            bonds: [{ name: 'bond0', mode: '802.3ad', members: [{ name: 'ens1', state: 'up', active: true }, { name: 'ens2', state: 'down' }] }],
            rdma_devices: [{ name: 'mlx5_0', ports: [{ port: 1, state: 'ACTIVE', link_layer: 'Ethernet', netdev: 'ens1' }] }],
            thunderbolt: [],
          },
        },
      },
    ]);
    expect(n).toMatchObject({ name: 'gpu1', cpuModel: 'EPYC', cores: 32, threads: 64, memoryTotal: 512e9, backend: 'cuda', warnings: ['NVML missing'] });
    expect(n!.accelerators).toEqual([{ vendor: 'nvidia', name: 'H100', memoryTotal: 80e9, memoryFree: 70e9, utilization: 35, temperature: undefined, driver: undefined }]);
    expect(n!.network!.bonds[0]!.members.map((m) => `${m.name}:${m.state}:${m.active}`)).toEqual(['ens1:up:true', 'ens2:down:false']);
    expect(n!.network!.rdma[0]!.ports[0]).toEqual({ port: 1, state: 'ACTIVE', linkLayer: 'Ethernet', netdev: 'ens1' });
  });

  it('reads the cluster status with its leader and link probes', () => {
    const c = toCluster({
      id: 'abcd', phase: 'ready', members: 3, alive: 3, leader: { id: 'n1', name: 'alpha' }, raft: { state: 'Leader', term: 4 },
      links: [
        { from: 'n1', to: 'n2', rtt_us: 250, bandwidth_mbps: 9400, transport: 'quic' },
        { from: 'n2', to: 'n3', latency_ms: 1.5, bandwidth_bps: 1e9 },
        { from: 'n3' },
      ],
    });
    expect(c.leader).toBe('alpha');
    expect(c.links).toEqual([
      { from: 'n1', to: 'n2', latencyMs: 0.25, bandwidthBps: 9.4e9, transport: 'quic', paths: undefined },
      { from: 'n2', to: 'n3', latencyMs: 1.5, bandwidthBps: 1e9, transport: undefined, paths: undefined },
    ]);
    expect(c.facts).toContainEqual(['phase', 'ready']);
    expect(c.facts).toContainEqual(['raft', 'Leader (term 4)']);
  });

  it('turns the answering node\'s transport peers into links', () => {
    const c = toCluster({
      self: { id: 'n1', name: 'alpha' },
      transport: [
        { node: 'n2', name: 'beta', transport: 'tcp', probe: { rtt_ns: 183000, bandwidth_bytes_per_second: 125e6 } },
        { node: 'n3', transport: 'quic' },
        { name: 'no-id' },
      ],
    });
    expect(c.links).toEqual([
      { from: 'n1', to: 'n2', latencyMs: 0.183, bandwidthBps: 1e9, transport: 'tcp' },
      { from: 'n1', to: 'n3', latencyMs: undefined, bandwidthBps: undefined, transport: 'quic' },
    ]);
  });

  it('reads instances with layer ranges and the placement preview', () => {
    const [inst] = toInstances({
      instances: [
        { id: 'i1', model: 'llama', status: 'placed', context: 4096, predicted_token_ms: 50,
          stages: [{ node: 'n1', node_name: 'alpha', layers: [0, 10], memory_bytes: 5e9 }, { node: 'n2', layers: [10, 16], progress: 0.5 }] },
      ],
    });
    expect(inst).toMatchObject({ id: 'i1', status: 'placed', predictedTokenMs: 50 });
    expect(inst!.stages.map((s) => [s.nodeName ?? s.node, s.start, s.end, s.progress])).toEqual([['alpha', 0, 10, undefined], ['n2', 10, 16, 0.5]]);

    const plan = toPlan({
      model: 'llama', context: 2048, min_nodes: 2,
      plan: { stages: [{ node: 'n1', name: 'alpha', start: 0, end: 8, weight_bytes: 1e9, kv_bytes: 1e8, memory_bytes: 1.2e9, compute_ms: 12, link_ms: 0.3 }],
        token_ms: 20, bottleneck_ms: 12.3, memory_bytes: 1.2e9 },
    });
    expect(plan).toEqual({
      stages: [{ node: 'n1', nodeName: 'alpha', start: 0, end: 8, memoryBytes: 1.2e9, weightBytes: 1e9, kvBytes: 1e8, computeMs: 12, linkMs: 0.3, status: undefined, progress: undefined }],
      context: 2048, tokenMs: 20, bottleneckMs: 12.3, memoryBytes: 1.2e9,
    });
    expect(toPlan({ plan: null })).toBeNull();

    // A tensor-parallel stage names its other nodes; the instance its group size.
    const [tp] = toInstances({ instances: [{ id: 'i2', model: 'm', status: 'placed', tensor_parallel: 2,
      stages: [{ node: 'n1', node_name: 'alpha', layers: [0, 16], shards: [{ node: 'n2', node_name: 'beta' }, { bogus: 1 }], swap_ms: 0.4 }] }] });
    expect(tp).toMatchObject({ tensorParallel: 2, stages: [{ node: 'n1', shards: [{ node: 'n2', nodeName: 'beta' }], swapMs: 0.4 }] });
    expect(toInstances({ instances: [{ id: 'i3', stages: [{ node: 'n1', layers: [0, 1], shards: [] }] }] })[0]!.stages[0]!.shards).toBeUndefined();
  });

  it('reads the OpenAI model list and a store list with holders', () => {
    expect(toModels({ object: 'list', data: [{ id: 'stories260K-F32', size: 1054560, quantization: 'F32', arch: 'llama', context_length: 512 }] })).toEqual([
      { id: 'stories260K-F32', size: 1054560, quantization: 'F32', arch: 'llama', contextLength: 512, nodes: [], readOnly: false, stage: undefined },
    ]);
    expect(toModels({ models: [{ id: 'm', nodes: ['alpha', { node_name: 'beta' }] }] })[0]!.nodes).toEqual(['alpha', 'beta']);
    expect(toModels({ models: [{ id: 's', read_only: true, stage: { first: 0, last: 7 } }] })[0]).toMatchObject({ readOnly: true, stage: 'layers 0–7' });
  });

  it('reads pull progress under several field names', () => {
    expect(toPullEvent({ model: 'org/repo:f.gguf', node: 'alpha', downloaded_bytes: 10, total_bytes: 100 })).toMatchObject({
      key: 'org/repo:f.gguf@alpha', bytes: 10, total: 100, status: 'running',
    });
    expect(toPullEvent({ id: 'm', bytes: 100, total: 100 })!.status).toBe('verifying');
    expect(toPullEvent({ id: 'm', bytes: 5, total: 100, status: 'failed', error: 'hash mismatch' })).toMatchObject({ status: 'failed', error: 'hash mismatch' });
    expect(toPullEvent({ bytes: 5 })).toBeNull();
    // The model store's own shape (store.Progress, event "model.pull").
    expect(
      toPullEvent({ key: 'hf:org/repo@main/f.gguf', source: 'org/repo:f.gguf', id: 'f', from: 'hub', state: 'downloading', total: 1000, done: 250, bytes_per_sec: 50, eta_seconds: 15 }),
    ).toEqual({ key: 'hf:org/repo@main/f.gguf@', model: 'f', node: undefined, status: 'downloading', bytes: 250, total: 1000, speed: 50, eta: 15, from: 'hub', error: undefined });
  });
});
