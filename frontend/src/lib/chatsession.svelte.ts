// One conversation in the chat playground. It outlives the chat view, so that
// switching to another tab and back keeps the conversation (and a running reply).
import { errorMessage } from './api';
import { streamChat, type ChatMessage, type ChatParams, type ChatStats } from './chat';

export interface Turn {
  role: 'user' | 'assistant';
  content: string;
  model?: string;
  stats?: ChatStats;
  /** The user stopped this reply. */
  stopped?: boolean;
  error?: string;
  streaming?: boolean;
}

export interface Settings {
  model: string;
  system: string;
  temperature: number | null;
  topP: number | null;
  maxTokens: number | null;
  seed: number | null;
}

export class ChatSession {
  turns = $state<Turn[]>([]);
  settings = $state<Settings>({ model: '', system: '', temperature: 0.7, topP: null, maxTokens: 256, seed: null });
  running = $state(false);

  private ctrl: AbortController | null = null;
  private readonly stream: typeof streamChat;

  constructor(stream: typeof streamChat = streamChat) {
    this.stream = stream;
  }

  params(): ChatParams {
    const s = this.settings;
    const p: ChatParams = { model: s.model };
    if (s.temperature !== null) p.temperature = s.temperature;
    if (s.topP !== null) p.top_p = s.topP;
    if (s.maxTokens !== null) p.max_tokens = s.maxTokens;
    if (s.seed !== null) p.seed = s.seed;
    return p;
  }

  /** The conversation as the model sees it: failed replies are left out. */
  messages(): ChatMessage[] {
    const out: ChatMessage[] = [];
    if (this.settings.system.trim()) out.push({ role: 'system', content: this.settings.system });
    for (const t of this.turns) {
      if (t.error || t.streaming) continue;
      if (t.role === 'assistant' && t.content === '') continue;
      out.push({ role: t.role, content: t.content });
    }
    return out;
  }

  async send(text: string): Promise<void> {
    if (this.running || !text.trim() || !this.settings.model) return;
    this.turns.push({ role: 'user', content: text });
    const messages = this.messages();
    this.turns.push({ role: 'assistant', content: '', model: this.settings.model, streaming: true });
    const reply = this.turns[this.turns.length - 1]!;
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    this.running = true;
    try {
      const res = await this.stream(messages, this.params(), {
        signal: ctrl.signal,
        onDelta: (t, stats) => {
          reply.content = t;
          reply.stats = stats;
        },
      });
      reply.content = res.text;
      reply.stats = res.stats;
    } catch (err) {
      if (ctrl.signal.aborted) reply.stopped = true;
      else reply.error = errorMessage(err);
    } finally {
      reply.streaming = false;
      this.running = false;
      this.ctrl = null;
    }
  }

  /** Stops the running reply: the request is aborted, and the node stops generating. */
  stop(): void {
    this.ctrl?.abort();
  }

  clear(): void {
    this.stop();
    this.turns = [];
  }
}
