// Exercises an exo node through the official OpenAI Node client and prints what it saw as JSON,
// for appliance/e2e/openai_node_test.go to compare with `exo generate`.
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.env.EXO_BASE_URL, apiKey: 'unused', maxRetries: 0 });
const model = 'stories260K-F32';
const out = {};

const models = await client.models.list();
out.models = models.data.map((m) => m.id).sort();

const completion = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 48, temperature: 0 });
out.completion = { text: completion.choices[0].text, finish: completion.choices[0].finish_reason, usage: completion.usage };

const chatReq = { model, messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 24, temperature: 0 };
const chat = await client.chat.completions.create(chatReq);
out.chat = { text: chat.choices[0].message.content, object: chat.object, usage: chat.usage };

const stream = await client.chat.completions.create({ ...chatReq, stream: true, stream_options: { include_usage: true } });
let text = '';
let finish = null;
let usage = null;
let firstRole = null;
for await (const chunk of stream) {
  if (firstRole === null && chunk.choices.length > 0) firstRole = chunk.choices[0].delta.role ?? '';
  if (chunk.choices.length > 0) {
    text += chunk.choices[0].delta.content ?? '';
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  if (chunk.usage) usage = chunk.usage;
}
out.stream = { text, finish, usage, firstRole };

const stopped = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 48, temperature: 0, stop: ['Lily'] });
out.stop = { text: stopped.choices[0].text, finish: stopped.choices[0].finish_reason };

const seeded = async (seed) =>
  (await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 40, temperature: 1, seed })).choices[0].text;
out.seed = { a: await seeded(7), b: await seeded(7), c: await seeded(8) };

const lp = await client.chat.completions.create({ ...chatReq, max_tokens: 6, logprobs: true, top_logprobs: 2 });
out.logprobs = lp.choices[0].logprobs.content.map((t) => ({ token: t.token, logprob: t.logprob, top: t.top_logprobs.length }));

try {
  await client.chat.completions.create({ ...chatReq, model: 'no-such-model' });
  out.unknownModel = 'accepted';
} catch (err) {
  out.unknownModel = { status: err.status, code: err.code };
}

process.stdout.write(JSON.stringify(out));
