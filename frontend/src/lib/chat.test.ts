import { afterEach, describe, expect, it, vi } from 'vitest';
import { setUnauthorizedHandler } from './api';
import { chatRequestBody, streamChat, tokenRate } from './chat';
import { jsonResponse, sseResponse } from '../test-utils';

const chunk = (content: string | null, finish: string | null = null) =>
  `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }] })}\n\n`;

describe('tokenRate', () => {
  it('measures decode speed between the first and last token', () => {
    expect(tokenRate(11, 0, 100, 1100)).toEqual({ rate: 10, lowerBound: false });
  });
  it('falls back to a lower bound over the request when the tokens came in one burst', () => {
    expect(tokenRate(100, 0, 900, 1000)).toEqual({ rate: 100, lowerBound: true });
  });
  it('has no rate for fewer than two tokens', () => {
    expect(tokenRate(1, 0, 5, 5).rate).toBeNull();
    expect(tokenRate(0, 0, null, null).rate).toBeNull();
  });
});

describe('streamChat', () => {
  afterEach(() => setUnauthorizedHandler(null));

  it('sends only fields the server accepts', () => {
    const body = chatRequestBody([{ role: 'user', content: 'hi' }], { model: 'm', temperature: 0, max_tokens: 5, top_p: Number.NaN });
    expect(body).toEqual({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0,
      max_tokens: 5,
    });
  });

  it('streams content, times the first token and counts tokens from usage', async () => {
    let t = 0;
    const now = () => t;
    const fetch = vi.fn(async () =>
      sseResponse([
        `data: ${JSON.stringify({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] })}\n\n`,
        chunk('Once'),
        chunk(' upon'),
        chunk(' a time'),
        chunk(null, 'length'),
        `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 7, completion_tokens: 4, total_tokens: 11 } })}\n\n`,
        'data: [DONE]\n\n',
      ]),
    );
    const seen: string[] = [];
    const res = await streamChat([{ role: 'user', content: 'Tell me' }], { model: 'stories' }, {
      fetch,
      now,
      onDelta: (text) => {
        seen.push(text);
        t += 100;
      },
    });
    expect(seen).toEqual(['Once', 'Once upon', 'Once upon a time']);
    expect(res.text).toBe('Once upon a time');
    expect(res.stats.ttftMs).toBe(0);
    expect(res.stats.tokens).toBe(4);
    expect(res.stats.promptTokens).toBe(7);
    expect(res.stats.finishReason).toBe('length');
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/v1/chat/completions');
    expect(init.method).toBe('POST');
    expect(JSON.parse(init.body as string)).toMatchObject({ model: 'stories', stream: true });
  });

  it('turns an error event in the stream into a rejection with its message', async () => {
    const fetch = vi.fn(async () => sseResponse([chunk('x'), `data: {"error":{"message":"stage 2 died","type":"server_error"}}\n\n`]));
    await expect(streamChat([], { model: 'm' }, { fetch })).rejects.toThrow('stage 2 died');
  });

  it('reports the server message of a refused request, and 401 to the key prompt', async () => {
    const onUnauthorized = vi.fn();
    setUnauthorizedHandler(onUnauthorized);
    const fetch = vi.fn(async () => jsonResponse({ error: { message: 'missing or invalid API key' } }, 401));
    await expect(streamChat([], { model: 'm' }, { fetch })).rejects.toThrow('HTTP 401: missing or invalid API key');
    expect(onUnauthorized).toHaveBeenCalled();
    fetch.mockImplementation(async () => jsonResponse({ error: { message: 'model "x" not found' } }, 404));
    await expect(streamChat([], { model: 'x' }, { fetch })).rejects.toThrow('HTTP 404: model "x" not found');
  });

  it('stops when aborted mid-stream', async () => {
    const ctrl = new AbortController();
    const enc = new TextEncoder();
    let push: (s: string) => void = () => {};
    const fetch = vi.fn(async (_u: RequestInfo | URL, init?: RequestInit) => {
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          push = (s) => c.enqueue(enc.encode(s));
          init?.signal?.addEventListener('abort', () => c.error(new DOMException('aborted', 'AbortError')));
        },
      });
      return new Response(body, { status: 200 });
    });
    const texts: string[] = [];
    const p = streamChat([], { model: 'm' }, { fetch, signal: ctrl.signal, onDelta: (t) => texts.push(t) });
    await vi.waitFor(() => expect(fetch).toHaveBeenCalled());
    push(chunk('one'));
    await vi.waitFor(() => expect(texts).toEqual(['one']));
    ctrl.abort();
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(texts).toEqual(['one']);
  });
});
