// Typed helpers for the exo node's HTTP API. Same-origin: the Go binary serves
// both this SPA and the API; `npm run dev` proxies the API paths (vite.config.ts).

/** sessionStorage key holding an optional bearer key for the API. */
export const API_KEY_STORAGE_KEY = 'exo.apiKey';

/** GET /healthz */
export interface Health {
  status: string;
  node: string;
  version: string;
  /** Build commit; may be absent or empty on dev builds. */
  commit?: string;
}

export interface RoleReadiness {
  ready: boolean;
  detail?: string;
}

/** GET /readyz (200 when ready, 503 when not; the body is JSON either way). */
export interface Readiness {
  ready: boolean;
  roles: Record<string, RoleReadiness>;
}

/** A request that reached no usable answer: network failure, bad status, or bad body. */
export class ApiError extends Error {
  /** HTTP status, or 0 when no response arrived. */
  readonly status: number;
  /** The server's own explanation, when it gave one. */
  readonly detail: string;

  constructor(message: string, status = 0, options?: { cause?: unknown; detail?: string }) {
    super(message, options);
    this.name = 'ApiError';
    this.status = status;
    this.detail = options?.detail ?? '';
  }
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Injected for tests; defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** The stored API key, or null. Storage can throw (privacy modes, sandboxed frames). */
export function getApiKey(): string | null {
  try {
    const key = globalThis.sessionStorage?.getItem(API_KEY_STORAGE_KEY)?.trim();
    return key ? key : null;
  } catch {
    return null;
  }
}

export function authHeaders(): Record<string, string> {
  const key = getApiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** Called with every 401, so the app can ask for an API key (see auth.svelte.ts). */
let onUnauthorized: (() => void) | null = null;

export function setUnauthorizedHandler(fn: (() => void) | null): void {
  onUnauthorized = fn;
}

/** Tells the app that the node refused our key (or that it wants one). */
export function reportUnauthorized(): void {
  onUnauthorized?.();
}

export interface ApiRequestOptions extends RequestOptions {
  /** JSON request body. */
  body?: unknown;
  /** Statuses that count as answers; anything else throws ApiError. */
  okStatuses?: readonly number[];
}

/**
 * One JSON request to the node. Errors carry the server's own message when it
 * sent the OpenAI error shape (`{"error":{"message":…}}`), so the UI can show
 * what went wrong instead of a bare status.
 */
export async function apiRequest(
  method: string,
  path: string,
  opts: ApiRequestOptions = {},
): Promise<{ status: number; body: unknown }> {
  const doFetch = opts.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = { Accept: 'application/json', ...authHeaders() };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response;
  try {
    res = await doFetch(path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      cache: 'no-store',
      signal: opts.signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(`${path}: request failed (${errorMessage(err)})`, 0, { cause: err });
  }
  const okStatuses = opts.okStatuses ?? [200];
  if (!okStatuses.includes(res.status)) {
    if (res.status === 401) reportUnauthorized();
    const detail = await serverMessage(res);
    const status = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
    throw new ApiError(`${path}: ${status}${detail ? `: ${detail}` : ''}`, res.status, { detail });
  }
  if (res.status === 204) return { status: res.status, body: null };
  const text = await res.text();
  if (text.trim() === '') return { status: res.status, body: null };
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch (err) {
    throw new ApiError(`${path}: response is not JSON`, res.status, { cause: err });
  }
}

/** The message of an OpenAI-shaped error body, or a short plain-text body. */
export async function serverMessage(res: Response): Promise<string> {
  let text: string;
  try {
    text = await res.text();
  } catch {
    return '';
  }
  try {
    const body: unknown = JSON.parse(text);
    if (isObject(body)) {
      const e = body.error;
      if (isObject(e) && typeof e.message === 'string') return e.message;
      if (typeof e === 'string') return e;
      if (typeof body.message === 'string') return body.message;
    }
  } catch {
    // not JSON: fall through to the text itself
  }
  text = text.trim();
  return text.length > 0 && text.length <= 300 && !text.startsWith('<') ? text : '';
}

/**
 * GET `path` and parse its JSON body. Statuses in `okStatuses` count as answers
 * (so /readyz's 503 is data, not an error); anything else throws ApiError.
 */
export async function getJSON(
  path: string,
  okStatuses: readonly number[] = [200],
  opts: RequestOptions = {},
): Promise<{ status: number; body: unknown }> {
  return apiRequest('GET', path, { ...opts, okStatuses });
}

/**
 * True when the node answered that it has no such endpoint: the feature is not
 * built into (or not enabled on) this node, which the UI shows as a state, not
 * an error.
 */
export function isNotAvailable(err: unknown): boolean {
  return err instanceof ApiError && (err.status === 404 || err.status === 405 || err.status === 501);
}

export function isUnauthorized(err: unknown): boolean {
  return err instanceof ApiError && (err.status === 401 || err.status === 403);
}

export async function fetchHealth(opts?: RequestOptions): Promise<Health> {
  const { status, body } = await getJSON('/healthz', [200], opts);
  if (!isHealth(body)) throw new ApiError('/healthz: unexpected response shape', status);
  return body;
}

/** Returns the readiness body for both 200 and 503, plus the HTTP status. */
export async function fetchReadiness(opts?: RequestOptions): Promise<{ status: number; readiness: Readiness }> {
  const { status, body } = await getJSON('/readyz', [200, 503], opts);
  if (!isReadiness(body)) throw new ApiError('/readyz: unexpected response shape', status);
  return { status, readiness: body };
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isHealth(v: unknown): v is Health {
  return (
    isObject(v) &&
    typeof v.status === 'string' &&
    typeof v.node === 'string' &&
    typeof v.version === 'string' &&
    (v.commit === undefined || typeof v.commit === 'string')
  );
}

function isReadiness(v: unknown): v is Readiness {
  if (!isObject(v) || typeof v.ready !== 'boolean' || !isObject(v.roles)) return false;
  return Object.values(v.roles).every(
    (r) => isObject(r) && typeof r.ready === 'boolean' && (r.detail === undefined || typeof r.detail === 'string'),
  );
}

/** Known roles first in a stable order, any others after, alphabetically. */
export function sortedRoles(roles: Record<string, RoleReadiness>): [string, RoleReadiness][] {
  const order = ['api', 'worker', 'master'];
  const rank = (name: string) => {
    const i = order.indexOf(name);
    return i === -1 ? order.length : i;
  };
  return Object.entries(roles).sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
}
