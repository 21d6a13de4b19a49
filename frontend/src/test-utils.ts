// Helpers for unit tests: a routed fetch stub and streamed SSE responses.
import { vi } from 'vitest';

export type Route = { status: number; body?: unknown; text?: string } | Error | ((init?: RequestInit) => Response | Promise<Response>);

export function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

/** A response whose body streams `chunks` and then ends (or stays open with `hold`). */
export function sseResponse(chunks: string[], opts: { hold?: boolean; status?: number } = {}): Response {
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(ctrl) {
      for (const c of chunks) ctrl.enqueue(enc.encode(c));
      if (!opts.hold) ctrl.close();
    },
  });
  return new Response(body, { status: opts.status ?? 200, headers: { 'Content-Type': 'text/event-stream' } });
}

/** Stubs the global fetch: routes by "METHOD path" or plain path; unknown paths answer 404. */
export function stubFetch(routes: Record<string, Route>) {
  const mock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    const method = (init?.method ?? 'GET').toUpperCase();
    const route = routes[`${method} ${url}`] ?? routes[url];
    if (!route) return jsonResponse({ error: { message: `no route for ${method} ${url}` } }, 404);
    if (route instanceof Error) throw route;
    if (typeof route === 'function') return route(init);
    if (route.text !== undefined) return new Response(route.text, { status: route.status });
    return jsonResponse(route.body, route.status);
  });
  vi.stubGlobal('fetch', mock);
  return mock;
}

/** The Authorization header a recorded fetch call sent, if any. */
export function authOf(call: unknown[]): string | undefined {
  const init = call[1] as RequestInit | undefined;
  return (init?.headers as Record<string, string> | undefined)?.Authorization;
}
