// Streaming chat completions (POST /v1/chat/completions with stream: true),
// measured the way users judge a model: time to first token and decode speed.
import { ApiError, authHeaders, errorMessage, isObject, reportUnauthorized, serverMessage } from './api';
import { readSSE } from './sse';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Sampling parameters; unset ones are left to the server's defaults. */
export interface ChatParams {
  model: string;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  max_tokens?: number;
  seed?: number;
  repeat_penalty?: number;
}

export interface ChatStats {
  /** Time from sending the request to the first content, ms. */
  ttftMs: number | null;
  /** Tokens received: the server's count when it sent usage, else content chunks. */
  tokens: number;
  /** Decode speed, tokens per second (see tokenRate). */
  tokensPerSecond: number | null;
  /** True when tokensPerSecond is only a lower bound (tokens over the whole request). */
  rateIsLowerBound: boolean;
  elapsedMs: number;
  finishReason: string | null;
  promptTokens: number | null;
}

export interface StreamChatOptions {
  signal?: AbortSignal;
  /** Called for each piece of content with the text so far and the stats so far. */
  onDelta?: (text: string, stats: ChatStats) => void;
  fetch?: typeof fetch;
  now?: () => number;
}

export interface ChatResult {
  text: string;
  stats: ChatStats;
}

/**
 * Below this span between the first and the last token, arrival times say more
 * about how the browser batched its reads than about the model.
 */
export const minDecodeSpanMs = 200;

/**
 * Decode speed from the arrival of the first and the last of `tokens` tokens.
 * A fast model can deliver everything within a few milliseconds of browser
 * time; then the honest figure is the lower bound over the whole request.
 */
export function tokenRate(
  tokens: number,
  startedAt: number,
  firstAt: number | null,
  lastAt: number | null,
): { rate: number | null; lowerBound: boolean } {
  if (tokens < 2 || firstAt === null || lastAt === null) return { rate: null, lowerBound: false };
  if (lastAt - firstAt >= minDecodeSpanMs) return { rate: ((tokens - 1) * 1000) / (lastAt - firstAt), lowerBound: false };
  if (lastAt <= startedAt) return { rate: null, lowerBound: false };
  return { rate: (tokens * 1000) / (lastAt - startedAt), lowerBound: true };
}

/** Only the fields the server knows: it refuses unknown fields, by design. */
export function chatRequestBody(messages: ChatMessage[], params: ChatParams): Record<string, unknown> {
  const body: Record<string, unknown> = {
    model: params.model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
  };
  for (const k of ['temperature', 'top_p', 'top_k', 'max_tokens', 'seed', 'repeat_penalty'] as const) {
    const v = params[k];
    if (v !== undefined && Number.isFinite(v)) body[k] = v;
  }
  return body;
}

/**
 * Streams one reply. Resolves with the whole text when the server finishes;
 * rejects with an AbortError when `signal` aborts (the server stops generating
 * when the connection drops), or with an Error carrying the server's message.
 */
export async function streamChat(messages: ChatMessage[], params: ChatParams, opts: StreamChatOptions = {}): Promise<ChatResult> {
  const now = opts.now ?? (() => performance.now());
  const doFetch = opts.fetch ?? globalThis.fetch;
  const started = now();
  let res: Response;
  try {
    res = await doFetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...authHeaders() },
      body: JSON.stringify(chatRequestBody(messages, params)),
      cache: 'no-store',
      signal: opts.signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(`chat request failed (${errorMessage(err)})`, 0, { cause: err });
  }
  if (!res.ok) {
    if (res.status === 401) reportUnauthorized();
    const detail = await serverMessage(res);
    throw new ApiError(detail ? `HTTP ${res.status}: ${detail}` : `HTTP ${res.status}`, res.status, { detail });
  }
  if (!res.body) throw new ApiError('the chat response has no body', res.status);

  let text = '';
  let chunks = 0;
  let firstAt: number | null = null;
  let lastAt: number | null = null;
  let usageTokens: number | null = null;
  let promptTokens: number | null = null;
  let finishReason: string | null = null;
  let serverError: string | null = null;
  const stats = (): ChatStats => {
    const tokens = usageTokens ?? chunks;
    const { rate, lowerBound } = tokenRate(tokens, started, firstAt, lastAt);
    return {
      ttftMs: firstAt === null ? null : firstAt - started,
      tokens,
      tokensPerSecond: rate,
      rateIsLowerBound: lowerBound,
      elapsedMs: now() - started,
      finishReason,
      promptTokens,
    };
  };

  await readSSE(res.body, (m) => {
    if (m.data === '[DONE]' || serverError) return;
    let chunk: unknown;
    try {
      chunk = JSON.parse(m.data);
    } catch {
      return;
    }
    if (!isObject(chunk)) return;
    if (isObject(chunk.error)) {
      serverError = typeof chunk.error.message === 'string' ? chunk.error.message : 'the server reported an error';
      return;
    }
    if (isObject(chunk.usage)) {
      if (typeof chunk.usage.completion_tokens === 'number') usageTokens = chunk.usage.completion_tokens;
      if (typeof chunk.usage.prompt_tokens === 'number') promptTokens = chunk.usage.prompt_tokens;
    }
    const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : undefined;
    if (!isObject(choice)) return;
    if (typeof choice.finish_reason === 'string') finishReason = choice.finish_reason;
    const delta = isObject(choice.delta) ? choice.delta : null;
    const content = delta && typeof delta.content === 'string' ? delta.content : '';
    if (content === '') return;
    const t = now();
    if (firstAt === null) firstAt = t;
    lastAt = t;
    chunks++;
    text += content;
    opts.onDelta?.(text, stats());
  });
  if (serverError) throw new ApiError(serverError, 200, { detail: serverError });
  return { text, stats: stats() };
}
