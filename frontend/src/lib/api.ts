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

  constructor(message: string, status = 0, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ApiError';
    this.status = status;
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

/**
 * GET `path` and parse its JSON body. Statuses in `okStatuses` count as answers
 * (so /readyz's 503 is data, not an error); anything else throws ApiError.
 */
export async function getJSON(
  path: string,
  okStatuses: readonly number[] = [200],
  opts: RequestOptions = {},
): Promise<{ status: number; body: unknown }> {
  const doFetch = opts.fetch ?? globalThis.fetch;
  let res: Response;
  try {
    res = await doFetch(path, {
      method: 'GET',
      headers: { Accept: 'application/json', ...authHeaders() },
      cache: 'no-store',
      signal: opts.signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(`${path}: request failed (${errorMessage(err)})`, 0, { cause: err });
  }
  if (!okStatuses.includes(res.status)) {
    throw new ApiError(`${path}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`, res.status);
  }
  try {
    return { status: res.status, body: await res.json() };
  } catch (err) {
    throw new ApiError(`${path}: response is not JSON`, res.status, { cause: err });
  }
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

function isObject(v: unknown): v is Record<string, unknown> {
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
