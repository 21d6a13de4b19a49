import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { API_KEY_STORAGE_KEY, ApiError, fetchHealth, fetchReadiness, sortedRoles } from './api';

function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

const health = { status: 'ok', node: 'node-a', version: '0.1.0', commit: 'abc123' };
const notReady = {
  ready: false,
  roles: {
    master: { ready: false, detail: 'no quorum' },
    api: { ready: true, detail: 'listening' },
    worker: { ready: true },
  },
};

describe('api', () => {
  let fetchMock: ReturnType<typeof vi.fn>;

  beforeEach(() => {
    fetchMock = vi.fn();
    vi.stubGlobal('fetch', fetchMock);
    sessionStorage.clear();
  });

  afterEach(() => {
    sessionStorage.clear();
  });

  it('fetchHealth returns the parsed body and sends no Authorization without a key', async () => {
    fetchMock.mockResolvedValue(jsonResponse(health));
    await expect(fetchHealth()).resolves.toEqual(health);
    const [url, init] = fetchMock.mock.calls[0] as [string, RequestInit];
    expect(url).toBe('/healthz');
    expect(init.headers).not.toHaveProperty('Authorization');
  });

  it('adds a bearer key from sessionStorage', async () => {
    sessionStorage.setItem(API_KEY_STORAGE_KEY, ' secret-key ');
    fetchMock.mockResolvedValue(jsonResponse(health));
    await fetchHealth();
    const [, init] = fetchMock.mock.calls[0] as [string, RequestInit];
    expect(init.headers).toMatchObject({ Authorization: 'Bearer secret-key' });
  });

  it('fetchReadiness treats a 503 JSON body as data', async () => {
    fetchMock.mockResolvedValue(jsonResponse(notReady, 503));
    await expect(fetchReadiness()).resolves.toEqual({ status: 503, readiness: notReady });
    expect(fetchMock.mock.calls[0]?.[0]).toBe('/readyz');
  });

  it('fetchReadiness rejects other error statuses with ApiError', async () => {
    fetchMock.mockResolvedValue(new Response('boom', { status: 500 }));
    const err = await fetchReadiness().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(500);
    expect((err as ApiError).message).toContain('HTTP 500');
  });

  it('fetchHealth rejects a 503 (only /readyz answers with 503)', async () => {
    fetchMock.mockResolvedValue(jsonResponse(health, 503));
    await expect(fetchHealth()).rejects.toMatchObject({ name: 'ApiError', status: 503 });
  });

  it('wraps network failures in ApiError with status 0', async () => {
    fetchMock.mockRejectedValue(new TypeError('Failed to fetch'));
    await expect(fetchHealth()).rejects.toMatchObject({
      name: 'ApiError',
      status: 0,
      message: expect.stringContaining('Failed to fetch'),
    });
  });

  it('rejects non-JSON and wrongly shaped bodies', async () => {
    fetchMock.mockResolvedValueOnce(new Response('<html>', { status: 200 }));
    await expect(fetchHealth()).rejects.toThrow(/not JSON/);
    fetchMock.mockResolvedValueOnce(jsonResponse({ ready: 'yes', roles: {} }));
    await expect(fetchReadiness()).rejects.toThrow(/unexpected response shape/);
  });

  it('sortedRoles puts api, worker, master first', () => {
    expect(sortedRoles({ ...notReady.roles, extra: { ready: true } }).map(([n]) => n)).toEqual([
      'api',
      'worker',
      'master',
      'extra',
    ]);
  });
});
