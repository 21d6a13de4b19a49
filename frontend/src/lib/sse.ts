// Server-Sent Events, parsed by hand: the browser's EventSource cannot send an
// Authorization header, and the chat stream is a POST, so both the event stream
// and chat completions read SSE from a fetch body with this parser.

export interface SSEMessage {
  /** The `event:` field; "message" when absent, as in the SSE spec. */
  event: string;
  data: string;
  id?: string;
  /** The `retry:` field in milliseconds, when the server sent one. */
  retry?: number;
}

/**
 * Incremental parser following the WHATWG event-stream rules: lines end in
 * LF, CR or CRLF (a CR at the end of a chunk may pair with an LF in the next),
 * `data:` lines join with LF, comments (`:`) are ignored, and an event is
 * dispatched at an empty line only when it carried data.
 */
export class SSEParser {
  private buf = '';
  private pendingCR = false;
  private event = '';
  private data: string[] = [];
  private id: string | undefined;
  private retry: number | undefined;

  /** Feeds decoded text and returns the events it completed. */
  push(chunk: string): SSEMessage[] {
    const out: SSEMessage[] = [];
    let text = chunk;
    if (this.pendingCR) {
      this.pendingCR = false;
      if (text.startsWith('\n')) text = text.slice(1);
    }
    this.buf += text;
    let start = 0;
    for (let i = 0; i < this.buf.length; i++) {
      const c = this.buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.buf.slice(start, i);
      if (c === 13) {
        if (i + 1 < this.buf.length) {
          if (this.buf.charCodeAt(i + 1) === 10) i++;
        } else {
          this.pendingCR = true;
        }
      }
      start = i + 1;
      const msg = this.line(line);
      if (msg) out.push(msg);
    }
    this.buf = this.buf.slice(start);
    return out;
  }

  /** Ends the stream: an event without its closing blank line is dropped, per spec. */
  end(): void {
    this.buf = '';
    this.reset();
  }

  private reset() {
    this.event = '';
    this.data = [];
    this.retry = undefined;
  }

  private line(line: string): SSEMessage | null {
    if (line === '') {
      if (this.data.length === 0) {
        this.reset();
        return null;
      }
      const msg: SSEMessage = { event: this.event || 'message', data: this.data.join('\n') };
      if (this.id !== undefined) msg.id = this.id;
      if (this.retry !== undefined) msg.retry = this.retry;
      this.reset();
      return msg;
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.event = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.id = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
    }
    return null;
  }
}

/**
 * Reads an SSE response body to its end, calling onMessage for each event.
 * Resolves when the body ends; rejects when reading fails (including abort).
 */
export async function readSSE(body: ReadableStream<Uint8Array>, onMessage: (m: SSEMessage) => void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SSEParser();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const m of parser.push(decoder.decode(value, { stream: true }))) onMessage(m);
    }
    for (const m of parser.push(decoder.decode())) onMessage(m);
    parser.end();
  } catch (err) {
    // A handler that throws, or an abort, must not leave the connection open.
    reader.cancel(err).catch(() => {});
    throw err;
  } finally {
    reader.releaseLock();
  }
}
