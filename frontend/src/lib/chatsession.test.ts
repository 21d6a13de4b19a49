import { describe, expect, it, vi } from 'vitest';
import type { ChatStats, streamChat } from './chat';
import { ChatSession } from './chatsession.svelte';

const stats = (tokens: number): ChatStats => ({ ttftMs: 5, tokens, tokensPerSecond: 10, rateIsLowerBound: false, elapsedMs: 50, finishReason: 'stop', promptTokens: 3 });

describe('ChatSession', () => {
  it('sends the conversation with the system prompt and keeps the reply with its stats', async () => {
    const stream = vi.fn<typeof streamChat>(async (_m, _p, o) => {
      o?.onDelta?.('Hel', stats(1));
      return { text: 'Hello', stats: stats(2) };
    });
    const s = new ChatSession(stream);
    s.settings.model = 'm';
    s.settings.system = 'Be brief.';
    s.settings.temperature = 0;
    await s.send('Hi');
    expect(stream.mock.calls[0]![0]).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ]);
    expect(stream.mock.calls[0]![1]).toEqual({ model: 'm', temperature: 0, max_tokens: 256 });
    expect(s.turns.map((t) => [t.role, t.content])).toEqual([['user', 'Hi'], ['assistant', 'Hello']]);
    expect(s.turns[1]!.stats!.tokens).toBe(2);
    expect(s.running).toBe(false);

    await s.send('More');
    expect(stream.mock.calls[1]![0].map((m) => m.content)).toEqual(['Be brief.', 'Hi', 'Hello', 'More']);
  });

  it('stop aborts the running reply and keeps what arrived', async () => {
    const stream = vi.fn<typeof streamChat>(
      (_m, _p, o) =>
        new Promise((_resolve, reject) => {
          o?.onDelta?.('partial', stats(1));
          o?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
        }),
    );
    const s = new ChatSession(stream);
    s.settings.model = 'm';
    const p = s.send('Go');
    expect(s.running).toBe(true);
    await s.send('ignored while running');
    expect(stream).toHaveBeenCalledTimes(1);
    s.stop();
    await p;
    expect(s.turns[1]).toMatchObject({ content: 'partial', stopped: true, streaming: false });
    expect(s.turns[1]!.error).toBeUndefined();
    expect(s.running).toBe(false);
  });

  it('keeps failed replies out of the next request', async () => {
    const stream = vi.fn<typeof streamChat>(async () => {
      throw new Error('HTTP 503: no memory');
    });
    const s = new ChatSession(stream);
    s.settings.model = 'm';
    await s.send('A');
    expect(s.turns[1]!.error).toBe('HTTP 503: no memory');
    stream.mockImplementation(async () => ({ text: 'ok', stats: stats(1) }));
    await s.send('B');
    expect(stream.mock.calls[1]![0].map((m) => m.content)).toEqual(['A', 'B']);
  });
});
