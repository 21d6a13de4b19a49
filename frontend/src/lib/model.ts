// The dashboard's view of cluster state, and tolerant readers that turn the
// node's JSON into it. The cluster, detection, link-probe and model-store
// endpoints are young; the readers accept the field names those issues name
// and a few obvious variants, and leave out what is absent instead of failing,
// so a node with less to say still gets a useful page.
import { isObject } from './api';

type Obj = Record<string, unknown>;

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function first<T>(...vals: (T | undefined)[]): T | undefined {
  for (const v of vals) if (v !== undefined) return v;
  return undefined;
}

function obj(v: unknown): Obj | undefined {
  return isObject(v) ? v : undefined;
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function strings(v: unknown): string[] {
  if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter(Boolean);
  return arr(v).flatMap((x) => (typeof x === 'string' ? [x] : isObject(x) && typeof x.id === 'string' ? [x.id] : []));
}

/** The list inside a body: the body itself, or its `key` / `data` / `items` array. */
export function listOf(body: unknown, key: string): unknown[] {
  if (Array.isArray(body)) return body;
  if (!isObject(body)) return [];
  for (const k of [key, 'data', 'items']) if (Array.isArray(body[k])) return body[k] as unknown[];
  return [];
}

export interface Accelerator {
  vendor: string;
  name: string;
  memoryTotal?: number;
  memoryFree?: number;
  utilization?: number;
  temperature?: number;
  driver?: string;
}

export interface NetInterface {
  name: string;
  kind: string;
  state: string;
  speedMbps?: number;
  mtu?: number;
  addresses: string[];
  master?: string;
}

export interface Bond {
  name: string;
  mode: string;
  speedMbps?: number;
  activeMember?: string;
  members: { name: string; state: string; speedMbps?: number; active: boolean }[];
}

export interface RdmaDevice {
  name: string;
  ports: { port: number; state: string; linkLayer: string; netdev?: string }[];
}

export interface Network {
  interfaces: NetInterface[];
  bonds: Bond[];
  rdma: RdmaDevice[];
  thunderbolt: { name: string; detail: string }[];
}

export interface NodeInfo {
  id: string;
  name: string;
  roles: string[];
  /** alive | suspect | failed | left, or whatever the node reports. */
  status: string;
  leader: boolean;
  address?: string;
  version?: string;
  memoryTotal?: number;
  memoryAvailable?: number;
  cpuModel?: string;
  cores?: number;
  threads?: number;
  /** CPU load in percent of all cores. */
  cpuLoad?: number;
  accelerators: Accelerator[];
  /** A one-line accelerator summary, when the node gives no detail. */
  acceleratorSummary?: string;
  backend?: string;
  /** The node answering these requests. */
  self: boolean;
  /** Memory the node offers to models, and how much of it placed stages hold. */
  memoryOffered?: number;
  memoryReserved?: number;
  network?: Network;
  warnings: string[];
  /** Models this node holds on disk, when reported. */
  models: string[];
  /** Measured weight streaming speed, GB/s. */
  speedGBps?: number;
}

function accelerator(v: unknown): Accelerator | null {
  const a = obj(v);
  if (!a) return null;
  return {
    vendor: str(a.vendor) ?? '',
    name: str(a.name) ?? str(a.model) ?? 'accelerator',
    memoryTotal: first(num(a.memory_total_bytes), num(a.memory_total), num(a.vram_total_bytes)),
    memoryFree: first(num(a.memory_free_bytes), num(a.memory_free), num(a.vram_free_bytes)),
    utilization: first(num(a.utilization_percent), num(a.utilization)),
    temperature: num(a.temperature_c),
    driver: str(a.driver),
  };
}

function network(v: unknown): Network | undefined {
  const n = obj(v);
  if (!n) return undefined;
  return {
    interfaces: arr(n.interfaces).flatMap((x) => {
      const i = obj(x);
      if (!i || !str(i.name)) return [];
      return [
        {
          name: str(i.name)!,
          kind: str(i.kind) ?? '',
          state: str(i.state) ?? '',
          speedMbps: num(i.speed_mbps),
          mtu: num(i.mtu),
          addresses: strings(i.addresses),
          master: str(i.master),
        },
      ];
    }),
    bonds: arr(n.bonds).flatMap((x) => {
      const b = obj(x);
      if (!b || !str(b.name)) return [];
      return [
        {
          name: str(b.name)!,
          mode: str(b.mode) ?? '',
          speedMbps: num(b.speed_mbps),
          activeMember: str(b.active_member),
          members: arr(b.members).flatMap((y) => {
            const m = obj(y);
            if (!m || !str(m.name)) return [];
            return [{ name: str(m.name)!, state: str(m.state) ?? '', speedMbps: num(m.speed_mbps), active: m.active === true }];
          }),
        },
      ];
    }),
    rdma: arr(n.rdma_devices ?? n.rdma).flatMap((x) => {
      const r = obj(x);
      if (!r || !str(r.name)) return [];
      return [
        {
          name: str(r.name)!,
          ports: arr(r.ports).flatMap((y) => {
            const p = obj(y);
            if (!p) return [];
            return [
              {
                port: num(p.port) ?? 1,
                state: str(p.state) ?? '',
                linkLayer: str(p.link_layer) ?? '',
                netdev: str(p.netdev) ?? str(p.net_device) ?? strings(p.netdevs)[0],
              },
            ];
          }),
        },
      ];
    }),
    thunderbolt: arr(n.thunderbolt).flatMap((x) => {
      const t = obj(x);
      if (!t) return [];
      const name = str(t.name) ?? str(t.netdev) ?? str(t.interface) ?? 'thunderbolt';
      const detail = [str(t.type), str(t.remote_name) ?? str(t.peer), str(t.state)].filter(Boolean).join(' · ');
      return [{ name, detail }];
    }),
  };
}

/** One entry of GET /api/v1/nodes. Detection figures may sit on the node or in a nested report. */
export function toNode(v: unknown): NodeInfo | null {
  const n = obj(v);
  if (!n) return null;
  const id = str(n.id) ?? str(n.name);
  if (!id) return null;
  const hw = obj(n.hardware) ?? obj(n.detect) ?? obj(n.detection) ?? obj(n.system) ?? {};
  const mem = obj(n.memory) ?? obj(hw.memory) ?? {};
  const cpu = obj(n.cpu) ?? obj(hw.cpu) ?? {};
  const tags = obj(n.tags) ?? {};
  const tagNum = (k: string) => {
    const t = str(tags[k]);
    return t !== undefined && /^\d+(\.\d+)?$/.test(t) ? Number(t) : undefined;
  };
  return {
    id,
    name: str(n.name) ?? id,
    roles: strings(n.roles ?? tags.roles),
    status: str(n.status) ?? 'alive',
    leader: n.leader === true || n.is_leader === true,
    address: str(n.api_addr) ?? str(n.addr) ?? str(n.address),
    version: str(n.version),
    memoryTotal: first(num(mem.total), num(mem.total_bytes), num(n.memory_total_bytes), num(n.memory_total), tagNum('mem_total')),
    memoryAvailable: first(num(mem.available), num(mem.available_bytes), num(n.memory_available_bytes), num(n.memory_available), tagNum('mem_avail')),
    memoryOffered: first(num(mem.offered), num(mem.offered_bytes)),
    memoryReserved: first(num(mem.reserved), num(mem.reserved_bytes)),
    cpuModel: str(cpu.model),
    cores: first(num(cpu.physical_cores), num(n.cpus), num(n.cores)),
    threads: first(num(cpu.logical_cores), num(n.threads)),
    cpuLoad: first(num(n.cpu_load_percent), num(cpu.load_percent), num(n.cpu_percent), num(n.cpu_load)),
    accelerators: arr(n.accelerators ?? hw.accelerators).flatMap((a) => accelerator(a) ?? []),
    acceleratorSummary: str(n.accelerators),
    self: n.self === true,
    backend: str(n.backend) ?? str(hw.selected_backend),
    network: network(n.network ?? hw.network),
    warnings: strings(n.warnings ?? hw.warnings),
    models: strings(n.models),
    speedGBps: first(num(n.speed_gbs), num(n.speed_gbps), num(n.measured_gbps)),
  };
}

/** Nodes in a stable order (by name), so cards do not jump when the list is re-read. */
export function toNodes(body: unknown): NodeInfo[] {
  return listOf(body, 'nodes')
    .flatMap((n) => toNode(n) ?? [])
    .sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

export interface Link {
  from: string;
  to: string;
  latencyMs?: number;
  bandwidthBps?: number;
  transport?: string;
  paths?: number;
}

function link(v: unknown): Link | null {
  const l = obj(v);
  if (!l) return null;
  const from = str(l.from) ?? str(l.src) ?? str(l.source) ?? str(l.a) ?? str(l.node);
  const to = str(l.to) ?? str(l.dst) ?? str(l.target) ?? str(l.b) ?? str(l.peer);
  if (!from || !to) return null;
  const us = first(num(l.rtt_us), num(l.latency_us));
  const ms = first(num(l.rtt_ms), num(l.latency_ms));
  const mbps = first(num(l.bandwidth_mbps), num(l.mbps));
  const bytesPerS = first(num(l.bandwidth_bytes_per_second), num(l.bytes_per_second));
  return {
    from,
    to,
    latencyMs: ms ?? (us !== undefined ? us / 1000 : undefined),
    bandwidthBps: first(
      num(l.bandwidth_bps),
      mbps !== undefined ? mbps * 1e6 : undefined,
      bytesPerS !== undefined ? bytesPerS * 8 : undefined,
    ),
    transport: str(l.transport) ?? str(l.protocol),
    paths: Array.isArray(l.paths) ? l.paths.length : num(l.paths),
  };
}

export interface ClusterInfo {
  id?: string;
  name?: string;
  leader?: string;
  links: Link[];
  /** Anything else the node said, shown as key/value facts. */
  facts: [string, string][];
}

/** A peer of the answering node as /api/v1/cluster reports it: transport in use and probe figures. */
function transportLink(self: string, v: unknown): Link | null {
  const l = obj(v);
  const to = str(l?.node);
  if (!l || !to) return null;
  const probe = obj(l.probe);
  const rttNs = num(probe?.rtt_ns);
  const bytesPerS = num(probe?.bandwidth_bytes_per_second);
  return {
    from: self,
    to,
    latencyMs: rttNs !== undefined && rttNs > 0 ? rttNs / 1e6 : undefined,
    bandwidthBps: bytesPerS !== undefined && bytesPerS > 0 ? bytesPerS * 8 : undefined,
    transport: str(l.transport),
  };
}

export function toCluster(body: unknown): ClusterInfo {
  const c = obj(body) ?? {};
  const self = obj(c.self);
  const selfId = str(self?.id);
  const links = [
    ...arr(c.links ?? c.probes ?? c.paths).flatMap((l) => link(l) ?? []),
    ...(selfId ? arr(c.transport).flatMap((l) => transportLink(selfId, l) ?? []) : []),
  ];
  const facts: [string, string][] = [];
  for (const [k, v] of Object.entries(c)) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') facts.push([k, String(v)]);
  }
  const raft = obj(c.raft);
  if (raft && str(raft.state)) facts.push(['raft', `${raft.state}${num(raft.term) !== undefined ? ` (term ${raft.term})` : ''}`]);
  const leader = obj(c.leader);
  return {
    id: str(c.id) ?? str(c.cluster_id),
    name: str(c.name),
    leader: str(c.leader) ?? str(leader?.name) ?? str(leader?.id) ?? str(c.leader_id),
    links,
    facts,
  };
}

export interface Stage {
  node: string;
  nodeName?: string;
  start: number;
  end: number;
  memoryBytes?: number;
  weightBytes?: number;
  kvBytes?: number;
  computeMs?: number;
  linkMs?: number;
  status?: string;
  /** Load or fetch progress of this stage, 0..1. */
  progress?: number;
  /** The other nodes of a tensor-parallel stage, each holding a share of every matrix. */
  shards?: { node: string; nodeName?: string }[];
  /** Time per token the shards spend swapping their parts (included in computeMs). */
  swapMs?: number;
}

function shardsOf(v: unknown): Stage['shards'] {
  const out = arr(v).flatMap((x) => {
    const o = obj(x);
    const node = o ? (str(o.node) ?? str(o.node_id)) : undefined;
    return o && node ? [{ node, nodeName: str(o.node_name) ?? str(o.name) }] : [];
  });
  return out.length > 0 ? out : undefined;
}

function fraction(s: Obj): number | undefined {
  const p = first(num(s.progress), num(s.load_progress));
  if (p !== undefined) return p > 1 ? p / 100 : p;
  const done = first(num(s.loaded_bytes), num(s.fetched_bytes), num(s.bytes));
  const total = first(num(s.total_bytes), num(s.size));
  return done !== undefined && total ? done / total : undefined;
}

function stage(v: unknown): Stage | null {
  const s = obj(v);
  if (!s) return null;
  const node = str(s.node) ?? str(s.node_id);
  if (!node) return null;
  const layers = arr(s.layers);
  const start = first(num(layers[0]), num(s.start), num(s.first_layer));
  const end = first(num(layers[1]), num(s.end));
  if (start === undefined || end === undefined) return null;
  return {
    node,
    nodeName: str(s.node_name) ?? str(s.name),
    start,
    end,
    memoryBytes: num(s.memory_bytes),
    weightBytes: num(s.weight_bytes),
    kvBytes: num(s.kv_bytes),
    computeMs: num(s.compute_ms),
    linkMs: num(s.link_ms),
    status: str(s.status),
    progress: fraction(s),
    shards: shardsOf(s.shards),
    swapMs: num(s.swap_ms),
  };
}

export interface Instance {
  id: string;
  model: string;
  status: string;
  reason?: string;
  context?: number;
  minNodes?: number;
  stages: Stage[];
  predictedTokenMs?: number;
  /** Nodes per stage when the stages are tensor-parallel groups. */
  tensorParallel?: number;
}

export function toInstance(v: unknown): Instance | null {
  const i = obj(v);
  if (!i) return null;
  const id = str(i.id);
  if (!id) return null;
  return {
    id,
    model: str(i.model) ?? '',
    status: str(i.status) ?? 'unknown',
    reason: str(i.reason) ?? str(i.error),
    context: num(i.context),
    minNodes: num(i.min_nodes),
    stages: arr(i.stages).flatMap((s) => stage(s) ?? []),
    predictedTokenMs: first(num(i.predicted_token_ms), num(i.token_ms)),
    tensorParallel: num(i.tensor_parallel),
  };
}

export function toInstances(body: unknown): Instance[] {
  return listOf(body, 'instances').flatMap((i) => toInstance(i) ?? []);
}

export interface Plan {
  stages: Stage[];
  context?: number;
  /** Predicted time per token of one sequence. */
  tokenMs?: number;
  /** Slowest stage with its hop: time per token of a full pipeline. */
  bottleneckMs?: number;
  memoryBytes?: number;
}

export function toPlan(body: unknown): Plan | null {
  const b = obj(body);
  if (!b) return null;
  const p = obj(b.plan) ?? obj(b.placement) ?? b;
  // The preview may name the context it planned for beside the plan.
  const context = first(num(p.context), num(b.context));
  const stages = arr(p.stages).flatMap((s) => stage(s) ?? []);
  if (stages.length === 0) return null;
  return {
    stages,
    context,
    tokenMs: first(num(p.token_ms), num(p.predicted_token_ms)),
    bottleneckMs: num(p.bottleneck_ms),
    memoryBytes: num(p.memory_bytes),
  };
}

export interface ModelInfo {
  id: string;
  size?: number;
  quantization?: string;
  arch?: string;
  contextLength?: number;
  /** Nodes holding the model, when the node reports it (cluster-wide store). */
  nodes: string[];
  /** In a read-only models directory: it cannot be deleted from here. */
  readOnly: boolean;
  /** A stage-only file holding some layers, e.g. "layers 0–7". */
  stage?: string;
}

export function toModel(v: unknown): ModelInfo | null {
  const m = obj(v);
  if (!m) return null;
  const id = str(m.id) ?? str(m.name);
  if (!id) return null;
  const holders = arr(m.nodes ?? m.holders ?? m.locations).flatMap((h) => {
    if (typeof h === 'string') return [h];
    const o = obj(h);
    const name = o ? (str(o.node_name) ?? str(o.name) ?? str(o.node) ?? str(o.id)) : undefined;
    return name ? [name] : [];
  });
  return {
    id,
    size: first(num(m.size), num(m.size_bytes), num(m.bytes)),
    quantization: str(m.quantization) ?? str(m.type),
    arch: str(m.arch) ?? str(m.architecture),
    contextLength: first(num(m.context_length), num(m.n_ctx)),
    nodes: holders,
    readOnly: m.read_only === true,
    stage: stageText(m.stage),
  };
}

function stageText(v: unknown): string | undefined {
  const s = obj(v);
  if (!s) return undefined;
  const a = first(num(s.first), num(s.start));
  const b = first(num(s.last), num(s.end));
  return a !== undefined && b !== undefined ? `layers ${a}–${b}` : undefined;
}

export function toModels(body: unknown): ModelInfo[] {
  return listOf(body, 'models').flatMap((m) => toModel(m) ?? []);
}

/** Progress of one model pull (one file on one node), from /api/v1/events. */
export interface Pull {
  key: string;
  model: string;
  node?: string;
  status: string;
  bytes: number;
  total?: number;
  /** Bytes per second, from the node or measured here between events. */
  speed?: number;
  /** Seconds left, when the node estimated it. */
  eta?: number;
  /** Where the bytes come from: hub, url, peer. */
  from?: string;
  error?: string;
  updated: number;
}

/** Event types that carry pull progress; the model store issue leaves the name open. */
export const pullEventTypes = ['model.pull', 'pull', 'download', 'model_pull', 'pull_progress'];

export function toPullEvent(v: unknown): Omit<Pull, 'updated'> | null {
  const p = obj(v);
  if (!p) return null;
  const model = str(p.model) ?? str(p.id) ?? str(p.source) ?? str(p.name) ?? str(p.file);
  if (!model) return null;
  const node = str(p.node_name) ?? str(p.node);
  const eta = first(num(p.eta_seconds), num(p.eta));
  const total = first(num(p.total_bytes), num(p.total), num(p.size));
  const bytes = first(num(p.bytes), num(p.downloaded_bytes), num(p.completed_bytes), num(p.received_bytes), num(p.completed), num(p.done)) ?? 0;
  let status = str(p.status) ?? str(p.state) ?? 'running';
  if (total !== undefined && bytes >= total && status === 'running') status = 'verifying';
  const speed = first(num(p.bytes_per_sec), num(p.bytes_per_second), num(p.speed), num(p.rate));
  return {
    // The store's own key tells apart two pulls of one model (a stage fetch and a whole file).
    key: `${str(p.key) ?? model}@${node ?? ''}`,
    model,
    node,
    status,
    bytes,
    total: total !== undefined && total > 0 ? total : undefined,
    speed: speed !== undefined && speed > 0 ? speed : undefined,
    eta: eta !== undefined && eta > 0 ? eta : undefined,
    from: str(p.from),
    error: str(p.error),
  };
}

/** Whether a pull's status is final. */
export function pullFinished(status: string): boolean {
  return ['done', 'complete', 'completed', 'finished', 'failed', 'error', 'cancelled', 'canceled'].includes(status);
}
