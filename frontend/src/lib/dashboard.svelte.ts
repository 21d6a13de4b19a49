// All cluster state the views show, kept current by the event stream: an event
// either carries the new state (model load status, pull progress) or says what
// changed, and the matching resource is re-read once. On every (re)connect
// everything is re-read, because events sent while disconnected are lost.
import { apiRequest, fetchHealth, isObject, fetchReadiness, type Health, type Readiness } from './api';
import type { EventStream } from './events.svelte';
import {
  pullEventTypes,
  pullFinished,
  toCluster,
  toInstance,
  toInstances,
  toModels,
  toNodes,
  toPlan,
  toPullEvent,
  type ClusterInfo,
  type Instance,
  type ModelInfo,
  type NodeInfo,
  type Plan,
  type Pull,
} from './model';
import { fromPaths, Resource } from './resource.svelte';

export interface ModelState {
  status: string;
  error?: string;
}

export class Dashboard {
  health = new Resource<Health>(async () => ({ data: await fetchHealth(), source: '/healthz' }));
  readiness = new Resource<{ status: number; readiness: Readiness }>(async () => ({
    data: await fetchReadiness(),
    source: '/readyz',
  }));
  nodes = new Resource<NodeInfo[]>(fromPaths(['/api/v1/nodes'], toNodes));
  cluster = new Resource<ClusterInfo>(fromPaths(['/api/v1/cluster'], toCluster));
  instances = new Resource<Instance[]>(fromPaths(['/api/v1/instances'], toInstances));
  /** The cluster's model store when the node has it, else the OpenAI list of what this node serves. */
  models = new Resource<ModelInfo[]>(
    fromPaths(['/api/v1/models', '/v1/models'], (body) => {
      // The store lists running pulls beside the models: a reloaded page shows them at once.
      if (isObject(body) && Array.isArray(body.pulls)) for (const p of body.pulls) this.pullProgress(p);
      return toModels(body);
    }),
  );
  /** Load state per model id, from `model` events. */
  modelStates = $state<Record<string, ModelState>>({});
  pulls = $state<Record<string, Pull>>({});
  shuttingDown = $state(false);

  /** Re-reads everything (after a (re)connect or a new API key). */
  refreshAll(): void {
    for (const r of [this.health, this.readiness, this.nodes, this.cluster, this.instances, this.models]) void r.load();
  }

  /** Cancels pending re-reads. */
  dispose(): void {
    for (const r of [this.health, this.readiness, this.nodes, this.cluster, this.instances, this.models]) r.cancel();
  }

  /** Wires the event stream to the resources; returns the unsubscribe function. */
  attach(stream: EventStream): () => void {
    const offs = [
      stream.onOpen((reconnect) => {
        this.shuttingDown = false;
        // Events sent while the stream was down are lost: read everything again.
        if (reconnect) this.refreshAll();
      }),
      stream.on('*', (data, type) => this.handle(type, data)),
    ];
    return () => offs.forEach((off) => off());
  }

  /** Applies one event. Exposed for tests. */
  handle(type: string, data: unknown): void {
    const t = type.toLowerCase();
    if (t === 'hello') return;
    if (t === 'shutdown') {
      this.shuttingDown = true;
      return;
    }
    if (pullEventTypes.includes(t)) {
      this.pullProgress(data);
      return;
    }
    if (t === 'model') {
      if (isObject(data) && typeof data.id === 'string' && typeof data.status === 'string') {
        const error = typeof data.error === 'string' && data.error ? data.error : undefined;
        this.modelStates = { ...this.modelStates, [data.id]: { status: data.status, error } };
      }
      return;
    }
    if (t.startsWith('models') || t === 'model_deleted' || t === 'model_added') {
      this.models.invalidate();
      return;
    }
    if (t.startsWith('instance') || t.startsWith('placement')) {
      const inst = toInstance(isObject(data) && isObject(data.instance) ? data.instance : data);
      const list = this.instances.data;
      if (inst && list && inst.stages.length > 0 && !t.includes('delet') && !t.includes('remov')) {
        const i = list.findIndex((x) => x.id === inst.id);
        this.instances.set(i === -1 ? [...list, inst] : list.map((x) => (x.id === inst.id ? inst : x)));
      } else {
        this.instances.invalidate();
      }
      return;
    }
    if (t.startsWith('node') || t.startsWith('member') || t === 'leader' || t.startsWith('detect')) {
      this.nodes.invalidate();
      this.cluster.invalidate();
      return;
    }
    if (t.startsWith('cluster') || t.startsWith('link') || t.startsWith('probe')) {
      this.cluster.invalidate();
      return;
    }
  }

  private pullProgress(data: unknown): void {
    const p = toPullEvent(data);
    if (!p) return;
    const now = Date.now();
    const prev = this.pulls[p.key];
    let speed = p.speed;
    if (speed === undefined && prev && now > prev.updated && p.bytes >= prev.bytes) {
      // Measured between events, smoothed so one late event does not swing the ETA.
      const sample = ((p.bytes - prev.bytes) * 1000) / (now - prev.updated);
      speed = prev.speed === undefined ? sample : prev.speed * 0.7 + sample * 0.3;
    }
    this.pulls = { ...this.pulls, [p.key]: { ...p, speed: speed ?? prev?.speed, updated: now } };
    if (pullFinished(p.status) && !(prev && pullFinished(prev.status))) this.models.invalidate();
  }

  dismissPull(key: string): void {
    const next = { ...this.pulls };
    delete next[key];
    this.pulls = next;
  }

  async pullModel(source: string): Promise<void> {
    await apiRequest('POST', '/api/v1/models', { body: { source }, okStatuses: [200, 201, 202] });
    this.models.invalidate();
  }

  async deleteModel(id: string): Promise<void> {
    await apiRequest('DELETE', `/api/v1/models/${encodeURIComponent(id)}`, { okStatuses: [200, 202, 204] });
    await this.models.load();
  }

  async preview(req: PlacementRequest, signal?: AbortSignal): Promise<Plan> {
    // eslint-disable-next-line svelte/prefer-svelte-reactivity -- builds a URL once, not state
    const q = new URLSearchParams({ model: req.model });
    if (req.context) q.set('context', String(req.context));
    if (req.minNodes) q.set('min_nodes', String(req.minNodes));
    if (req.nodes && req.nodes.length > 0) q.set('nodes', req.nodes.join(','));
    if (req.tensorParallel && req.tensorParallel > 1) q.set('tensor_parallel', String(req.tensorParallel));
    const { body } = await apiRequest('GET', `/api/v1/placement?${q}`, { signal });
    const plan = toPlan(body);
    if (!plan) throw new Error('the placement preview has no stages');
    return plan;
  }

  async createInstance(req: PlacementRequest): Promise<void> {
    const body: Record<string, unknown> = { model: req.model };
    if (req.minNodes) body.min_nodes = req.minNodes;
    if (req.context) body.context = req.context;
    if (req.nodes && req.nodes.length > 0) body.nodes = req.nodes;
    if (req.tensorParallel && req.tensorParallel > 1) body.tensor_parallel = req.tensorParallel;
    await apiRequest('POST', '/api/v1/instances', { body, okStatuses: [200, 201, 202] });
    await this.instances.load();
  }

  async deleteInstance(id: string): Promise<void> {
    await apiRequest('DELETE', `/api/v1/instances/${encodeURIComponent(id)}`, { okStatuses: [200, 202, 204] });
    await this.instances.load();
  }

  /** Display name for a node id (stages and links name nodes by id). */
  nodeName(id: string): string {
    return this.nodes.data?.find((n) => n.id === id)?.name ?? id;
  }
}

export interface PlacementRequest {
  model: string;
  minNodes?: number;
  context?: number;
  nodes?: string[];
  /** Nodes per stage, each holding a share of every matrix (2-4; unset: one node a stage). */
  tensorParallel?: number;
}
