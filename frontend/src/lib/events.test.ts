import { afterEach, describe, expect, it, vi } from 'vitest';
import { setUnauthorizedHandler } from './api';
import { backoffDelay, EventStream } from './events.svelte';
import { jsonResponse, sseResponse } from '../test-utils';

/** Timers the test fires by hand, so backoff is observable without waiting. */
function manualTimers() {
  const pending: { fn: () => void; ms: number }[] = [];
  return {
    pending,
    setTimeout: (fn: () => void, ms: number) => {
      const t = { fn, ms };
      pending.push(t);
      return t;
    },
    clearTimeout: (h: unknown) => {
      const i = pending.indexOf(h as (typeof pending)[number]);
      if (i !== -1) pending.splice(i, 1);
    },
    fire() {
      const t = pending.shift();
      if (!t) throw new Error('no timer pending');
      t.fn();
      return t.ms;
    },
  };
}

const flush = () => new Promise((r) => setTimeout(r, 0));

describe('backoffDelay', () => {
  it('doubles up to the cap, waiting between half and all of it', () => {
    expect(backoffDelay(0, 1000, 30000, () => 0)).toBe(500);
    expect(backoffDelay(0, 1000, 30000, () => 1)).toBe(1000);
    expect(backoffDelay(3, 1000, 30000, () => 1)).toBe(8000);
    expect(backoffDelay(10, 1000, 30000, () => 1)).toBe(30000);
    expect(backoffDelay(100, 1000, 30000, () => 0)).toBe(15000);
  });
});

describe('EventStream', () => {
  afterEach(() => setUnauthorizedHandler(null));

  it('dispatches typed events with parsed JSON, to type and "*" subscribers', async () => {
    const fetch = vi.fn(async () =>
      sseResponse(['event: hello\ndata: {"node":"a"}\n\n', 'event: model\ndata: {"id":"m","status":"loaded"}\n\n', 'event: raw\ndata: not json\n\n'], { hold: true }),
    );
    const s = new EventStream({ fetch });
    const models: unknown[] = [];
    const all: string[] = [];
    s.on('model', (d) => models.push(d));
    s.on('*', (_d, type) => all.push(type));
    const opened: boolean[] = [];
    s.onOpen((re) => opened.push(re));
    s.start();
    await vi.waitFor(() => expect(all).toEqual(['hello', 'model', 'raw']));
    expect(models).toEqual([{ id: 'm', status: 'loaded' }]);
    expect(s.state).toBe('open');
    expect(opened).toEqual([false]);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect((fetch.mock.calls[0] as unknown[])[0]).toBe('/api/v1/events');
    s.stop();
    expect(s.state).toBe('stopped');
  });

  it('reconnects with growing delays after drops, and re-reads state on reconnect', async () => {
    const timers = manualTimers();
    let calls = 0;
    const fetch = vi.fn(async () => {
      calls++;
      if (calls === 1) return sseResponse(['event: hello\ndata: {}\n\n']); // opens, then the node closes it
      if (calls < 4) throw new TypeError('Failed to fetch');
      return sseResponse(['event: hello\ndata: {}\n\n'], { hold: true });
    });
    const s = new EventStream({ fetch, ...timers, random: () => 1 });
    const opened: boolean[] = [];
    s.onOpen((re) => opened.push(re));
    s.start();
    await vi.waitFor(() => expect(timers.pending.length).toBe(1));
    expect(s.state).toBe('reconnecting');
    expect(s.lastError).toMatch(/closed/);
    expect(timers.fire()).toBe(1000);
    await vi.waitFor(() => expect(timers.pending.length).toBe(1));
    expect(s.lastError).toMatch(/Failed to fetch/);
    expect(timers.fire()).toBe(2000);
    await vi.waitFor(() => expect(timers.pending.length).toBe(1));
    expect(timers.fire()).toBe(4000);
    await vi.waitFor(() => expect(s.state).toBe('open'));
    expect(opened).toEqual([false, true]);
    expect(fetch).toHaveBeenCalledTimes(4);
    s.stop();
    expect(timers.pending).toEqual([]);
  });

  it('starts the backoff over after a connection that stayed up', async () => {
    const timers = manualTimers();
    let now = 0;
    const fetch = vi.fn(async () => sseResponse(['event: hello\ndata: {}\n\n']));
    const s = new EventStream({ fetch, ...timers, random: () => 1, now: () => now, stableMs: 10000 });
    s.failures = 3;
    s.start();
    await vi.waitFor(() => expect(timers.pending.length).toBe(1));
    expect(timers.pending[0]!.ms).toBe(8000); // short-lived: the backoff keeps growing
    s.stop();

    // The same, but the connection lives past stableMs before the node closes it.
    let close: () => void = () => {};
    const fetch2 = vi.fn(async () => {
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          close = () => c.close();
        },
      });
      return new Response(body, { status: 200 });
    });
    const s2 = new EventStream({ fetch: fetch2, ...timers, random: () => 1, now: () => now, stableMs: 10000 });
    s2.failures = 3;
    s2.start();
    await vi.waitFor(() => expect(s2.state).toBe('open'));
    now = 20000;
    close();
    await vi.waitFor(() => expect(timers.pending.length).toBe(1));
    expect(timers.pending[0]!.ms).toBe(1000);
    s2.stop();
  });

  it('stops on 401, asks for a key, and tries again only on restart', async () => {
    const timers = manualTimers();
    const onUnauthorized = vi.fn();
    setUnauthorizedHandler(onUnauthorized);
    const fetch = vi.fn(async () => jsonResponse({ error: { message: 'missing or invalid API key' } }, 401));
    const s = new EventStream({ fetch, ...timers });
    s.start();
    await vi.waitFor(() => expect(s.state).toBe('unauthorized'));
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
    expect(timers.pending).toEqual([]);
    fetch.mockImplementation(async () => sseResponse([], { hold: true }));
    s.restart();
    await vi.waitFor(() => expect(s.state).toBe('open'));
    expect(fetch).toHaveBeenCalledTimes(2);
    s.stop();
  });

  it('treats 404 as "no event stream on this node", without retrying', async () => {
    const timers = manualTimers();
    const fetch = vi.fn(async () => jsonResponse({ error: { message: 'no route' } }, 404));
    const s = new EventStream({ fetch, ...timers });
    s.start();
    await vi.waitFor(() => expect(s.state).toBe('unavailable'));
    await flush();
    expect(timers.pending).toEqual([]);
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('retries on a 5xx and sends the stored API key', async () => {
    sessionStorage.setItem('exo.apiKey', 'k1');
    const timers = manualTimers();
    const fetch = vi.fn(async () => jsonResponse({}, 503));
    const s = new EventStream({ fetch, ...timers });
    s.start();
    await vi.waitFor(() => expect(timers.pending.length).toBe(1));
    expect(s.lastError).toBe('HTTP 503');
    const init = (fetch.mock.calls[0] as unknown[])[1] as RequestInit;
    expect(init.headers).toMatchObject({ Authorization: 'Bearer k1', Accept: 'text/event-stream' });
    s.stop();
    sessionStorage.clear();
  });
});
