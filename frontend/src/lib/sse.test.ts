import { describe, expect, it } from 'vitest';
import { readSSE, SSEParser, type SSEMessage } from './sse';
import { sseResponse } from '../test-utils';

describe('SSEParser', () => {
  it('parses typed events with JSON data as exo sends them', () => {
    const p = new SSEParser();
    const got = p.push('event: model\ndata: {"id":"m","status":"loaded"}\n\nevent: hello\ndata: {}\n\n');
    expect(got).toEqual([
      { event: 'model', data: '{"id":"m","status":"loaded"}' },
      { event: 'hello', data: '{}' },
    ]);
  });

  it('joins data lines, defaults the type, keeps id and retry, ignores comments', () => {
    const p = new SSEParser();
    expect(p.push(': keep-alive\n\n')).toEqual([]);
    expect(p.push('id: 7\nretry: 2500\ndata: a\ndata:b\ndata\n\n')).toEqual([{ event: 'message', data: 'a\nb\n', id: '7', retry: 2500 }]);
  });

  it('handles CRLF and CR line ends, also when a CRLF is split across chunks', () => {
    const p = new SSEParser();
    expect(p.push('data: one\r')).toEqual([]);
    expect(p.push('\n\r\ndata: two\r\r')).toEqual([
      { event: 'message', data: 'one' },
      { event: 'message', data: 'two' },
    ]);
  });

  it('waits for the blank line: a partial event spans chunks', () => {
    const p = new SSEParser();
    expect(p.push('event: instance.created\nda')).toEqual([]);
    expect(p.push('ta: {"id":"i1"}\n')).toEqual([]);
    expect(p.push('\n')).toEqual([{ event: 'instance.created', data: '{"id":"i1"}' }]);
  });

  it('does not dispatch an event without data, and resets the type after each event', () => {
    const p = new SSEParser();
    expect(p.push('event: lonely\n\ndata: x\n\n')).toEqual([{ event: 'message', data: 'x' }]);
  });

  it('readSSE decodes UTF-8 split inside a character', async () => {
    const bytes = new TextEncoder().encode('data: héllo ✓\n\n');
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const b of bytes) c.enqueue(new Uint8Array([b]));
        c.close();
      },
    });
    const got: SSEMessage[] = [];
    await readSSE(body, (m) => got.push(m));
    expect(got).toEqual([{ event: 'message', data: 'héllo ✓' }]);
  });

  it('readSSE drops an unfinished event at the end of the stream', async () => {
    const got: SSEMessage[] = [];
    await readSSE(sseResponse(['data: done\n\n', 'data: cut']).body!, (m) => got.push(m));
    expect(got.map((m) => m.data)).toEqual(['done']);
  });
});
