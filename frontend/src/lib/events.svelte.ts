// The dashboard's one live connection: GET /api/v1/events, read as Server-Sent
// Events. It is not the browser's EventSource because EventSource cannot send
// the Authorization header an API key needs, and hides the HTTP status that
// tells "needs a key" (401) from "this node has no event stream" (404). It
// keeps EventSource's behaviour otherwise: one connection, reconnect after a
// drop, with exponential backoff and jitter instead of a fixed delay.
import { authHeaders, reportUnauthorized } from './api';
import { readSSE, type SSEMessage } from './sse';

export type StreamState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'unauthorized' | 'unavailable' | 'stopped';

export type EventHandler = (data: unknown, type: string) => void;

/**
 * Delay before reconnect attempt `attempt` (0-based): base·2^attempt capped at
 * max, of which a random half is waited ("equal jitter"), so that a restarted
 * node is not hit by every open dashboard at the same instant.
 */
export function backoffDelay(attempt: number, base = 1000, max = 30000, random: () => number = Math.random): number {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export interface EventStreamOptions {
  url?: string;
  fetch?: typeof fetch;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  random?: () => number;
  now?: () => number;
  /** A connection that lived this long counts as healthy: the backoff starts over. */
  stableMs?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export class EventStream {
  state = $state<StreamState>('idle');
  /** Failed or short-lived connections in a row. */
  failures = $state(0);
  lastError = $state('');
  /** When the next reconnect is due (ms since epoch by `now`), while waiting for one. */
  retryAt = $state<number | null>(null);
  /** Events received since the page loaded. */
  received = $state(0);

  private readonly url: string;
  private readonly doFetch: typeof fetch;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly stableMs: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private ctrl: AbortController | null = null;
  private timer: unknown = null;
  private running = false;
  // Subscriptions are plumbing, not state the UI renders.
  // eslint-disable-next-line svelte/prefer-svelte-reactivity
  private readonly handlers = new Map<string, Set<EventHandler>>();
  // eslint-disable-next-line svelte/prefer-svelte-reactivity
  private readonly openHandlers = new Set<(reconnect: boolean) => void>();
  /** Whether a connection was open before, since start(). */
  private opened = false;

  constructor(opts: EventStreamOptions = {}) {
    this.url = opts.url ?? '/api/v1/events';
    this.doFetch = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.setTimer = opts.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this.clearTimer = opts.clearTimeout ?? ((h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>));
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.stableMs = opts.stableMs ?? 10000;
    this.baseDelayMs = opts.baseDelayMs ?? 1000;
    this.maxDelayMs = opts.maxDelayMs ?? 30000;
  }

  /** Subscribes to one event type, or to all with "*". Returns the unsubscribe function. */
  on(type: string, fn: EventHandler): () => void {
    let set = this.handlers.get(type);
    if (!set) {
      // eslint-disable-next-line svelte/prefer-svelte-reactivity
      set = new Set();
      this.handlers.set(type, set);
    }
    set.add(fn);
    return () => set.delete(fn);
  }

  /**
   * Called on every successful (re)connect. Events sent while disconnected are
   * lost (the server keeps no backlog), so subscribers re-read full state here.
   */
  onOpen(fn: (reconnect: boolean) => void): () => void {
    this.openHandlers.add(fn);
    return () => this.openHandlers.delete(fn);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.opened = false;
    this.connect();
  }

  stop(): void {
    this.running = false;
    this.cancelTimer();
    this.ctrl?.abort();
    this.ctrl = null;
    this.state = 'stopped';
  }

  /** Reconnects now with a fresh backoff (after the API key changed, or on the user's request). */
  restart(): void {
    this.stop();
    this.failures = 0;
    this.start();
  }

  private cancelTimer() {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = null;
    this.retryAt = null;
  }

  private async connect(): Promise<void> {
    this.cancelTimer();
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    this.state = this.failures === 0 && this.state !== 'reconnecting' ? 'connecting' : 'reconnecting';
    let openedAt: number | null = null;
    try {
      const res = await this.doFetch(this.url, {
        headers: { Accept: 'text/event-stream', ...authHeaders() },
        cache: 'no-store',
        signal: ctrl.signal,
      });
      if (res.status === 401 || res.status === 403) {
        // Read the short error body to its end: cancelling it shows as an aborted request.
        await res.text().catch(() => '');
        this.state = 'unauthorized';
        this.lastError = `HTTP ${res.status}`;
        reportUnauthorized();
        // Retrying with the same key cannot help; restart() follows a new key.
        return;
      }
      if (res.status === 404 || res.status === 405 || res.status === 501) {
        await res.text().catch(() => '');
        this.state = 'unavailable';
        this.lastError = `HTTP ${res.status}`;
        return;
      }
      if (!res.ok || !res.body) {
        await res.text().catch(() => '');
        throw new Error(`HTTP ${res.status}`);
      }
      openedAt = this.now();
      this.state = 'open';
      this.lastError = '';
      const reconnect = this.opened;
      this.opened = true;
      for (const fn of this.openHandlers) fn(reconnect);
      await readSSE(res.body, (m) => this.dispatch(m));
      this.lastError = 'the node closed the event stream';
    } catch (err) {
      if (ctrl.signal.aborted) return;
      this.lastError = err instanceof Error ? err.message : String(err);
    }
    if (ctrl.signal.aborted || !this.running) return;
    if (openedAt !== null && this.now() - openedAt >= this.stableMs) this.failures = 0;
    this.scheduleReconnect();
  }

  private scheduleReconnect() {
    const delay = backoffDelay(this.failures, this.baseDelayMs, this.maxDelayMs, this.random);
    this.failures++;
    this.state = 'reconnecting';
    this.retryAt = this.now() + delay;
    this.timer = this.setTimer(() => {
      this.timer = null;
      if (this.running) this.connect();
    }, delay);
  }

  private dispatch(m: SSEMessage) {
    this.received++;
    let data: unknown = m.data;
    try {
      data = JSON.parse(m.data);
    } catch {
      // keep the raw string: a non-JSON event is still an event
    }
    for (const key of [m.event, '*']) {
      for (const fn of this.handlers.get(key) ?? []) {
        try {
          fn(data, m.event);
        } catch (err) {
          console.warn(`event handler for "${m.event}" failed`, err);
        }
      }
    }
  }
}
