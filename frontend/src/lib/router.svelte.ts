// Hash routes (#/models): the node serves index.html at / and the page needs
// no server-side routes, and a reload keeps the view.
export const routes = [
  { id: 'cluster', label: 'Cluster' },
  { id: 'nodes', label: 'Nodes' },
  { id: 'models', label: 'Models' },
  { id: 'instances', label: 'Instances' },
  { id: 'chat', label: 'Chat' },
] as const;

export type RouteId = (typeof routes)[number]['id'];

export function parseRoute(hash: string): RouteId {
  const id = hash.replace(/^#\/?/, '').split(/[/?]/)[0] ?? '';
  return (routes.find((r) => r.id === id)?.id ?? 'cluster') as RouteId;
}

class Router {
  current = $state<RouteId>(parseRoute(globalThis.location?.hash ?? ''));

  constructor() {
    globalThis.addEventListener?.('hashchange', () => {
      this.current = parseRoute(location.hash);
    });
  }

  go(id: RouteId): void {
    if (location.hash !== `#/${id}`) location.hash = `#/${id}`;
    this.current = id;
  }
}

export const router = new Router();
