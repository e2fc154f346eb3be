// The official Agents SDK (@openai/agents-realtime), stock, over its OpenAIRealtimeWebSocket transport
// from Node: a spoken turn (sendAudio of PCM from a WAV), an interrupt, and a tool defined with tool().
// Only the URL and the key point at openrealtime. Usage: node ws_agent.mjs WS_URL API_KEY WAV_24K
import { OpenAIRealtimeWebSocket, RealtimeAgent, RealtimeSession, tool } from '@openai/agents-realtime';
import { z } from 'zod';
import { readWav } from './wav.mjs';

const [url, apiKey, wavPath] = process.argv.slice(2);
const log = (...a) => console.error(new Date().toISOString(), ...a);
const events = [];
const errors = [];
const toolCalls = [];
let audioBytes = 0;

const getWeather = tool({
  name: 'get_weather',
  description: 'Get the current weather for a city.',
  parameters: z.object({ city: z.string() }),
  execute: async ({ city }) => {
    toolCalls.push(city);
    return JSON.stringify({ city, temp_c: 21, sky: 'sunny' });
  },
});

// The spoken turn and the interrupt run with a plain agent; before the tool turn the session switches to
// an agent with the tool (RealtimeSession.updateAgent → session.update). The local 1.5B model otherwise
// tends to call get_weather for any question about a city.
const agent = new RealtimeAgent({
  name: 'Assistant',
  instructions: 'You are a helpful assistant. Answer in one short sentence.',
});
const weatherAgent = new RealtimeAgent({
  name: 'Weather assistant',
  instructions: 'You are a helpful assistant. Answer in one short sentence. Use get_weather for weather questions.',
  tools: [getWeather],
});
const transport = new OpenAIRealtimeWebSocket({ url });
// Whisper base sometimes hears "capital of friends"; a transcription prompt (a vocabulary hint) steadies it.
const session = new RealtimeSession(agent, {
  transport,
  config: { audio: { input: { transcription: { model: 'gpt-4o-mini-transcribe',
    prompt: 'Questions about capital cities of countries.' } } } },
});
session.on('transport_event', (e) => {
  events.push(e);
  if (e.type !== 'response.output_audio.delta') log('event', e.type);
  if (e.type === 'error') errors.push(e.error ?? e);
});
session.on('error', (e) => errors.push(String(e?.error?.message ?? e?.error ?? e)));
session.on('audio', (e) => { audioBytes += e.data.byteLength; });

function waitFor(predicate, what, timeoutMs = 240000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      const hit = predicate();
      if (hit) return resolve(hit);
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${what}; events: ${events.map((e) => e.type).join(',')}`));
      setTimeout(tick, 25);
    };
    tick();
  });
}
const after = (n, type, pred = () => true) => () => events.slice(n).find((e) => e.type === type && pred(e));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const result = {};
try {
  await session.connect({ apiKey });
  const first = await waitFor(after(0, 'session.updated'), 'session.updated', 10000);
  result.transcription = first.session.audio?.input?.transcription ?? null;

  // 1. a spoken turn: PCM 24 kHz from the WAV, in 40 ms chunks, then silence for the VAD
  const { samples, rate } = readWav(wavPath);
  if (rate !== 24000) throw new Error(`WAV must be 24 kHz, got ${rate}`);
  const silence = new Int16Array(24000 * 2);
  let mark = events.length;
  for (const chunk of [new Int16Array(24000 * 0.3), samples, silence]) {
    for (let i = 0; i < chunk.length; i += 960) {
      const part = chunk.slice(i, i + 960);
      session.sendAudio(part.buffer);
      await sleep(2);
    }
  }
  const transcript = await waitFor(after(mark, 'conversation.item.input_audio_transcription.completed'), 'transcription');
  result.transcript = transcript.transcript;
  const done = await waitFor(after(mark, 'response.done', (e) => e.response.output?.some((o) => o.type === 'message')),
    'spoken answer');
  result.answer_status = done.response.status;
  result.answer = done.response.output.find((o) => o.type === 'message').content?.[0]?.transcript ?? null;
  result.answer_audio_bytes = audioBytes;

  // 2. an interrupt while the answer plays (the SDK sends response.cancel + conversation.item.truncate)
  mark = events.length;
  audioBytes = 0;
  session.sendMessage('Describe the city of Paris in five long sentences.');
  await waitFor(() => audioBytes > 24000 * 2 * 0.5 && audioBytes, 'half a second of answer audio');
  session.interrupt();
  const truncated = await waitFor(after(mark, 'conversation.item.truncated'), 'conversation.item.truncated', 30000);
  const cancelled = await waitFor(after(mark, 'response.done'), 'response.done after interrupt', 60000);
  result.interrupt = {
    audio_ms_received: Math.floor(events.slice(mark).filter((e) => e.type === 'response.output_audio.delta')
      .reduce((n, e) => n + Buffer.from(e.delta, 'base64').length, 0) / 48),
    truncated_audio_end_ms: truncated.audio_end_ms,
    response_status: cancelled.response.status,
    status_reason: cancelled.response.status_details?.reason ?? null,
    sent: events.slice(mark).map((e) => e.type).filter((t) => t.startsWith('conversation.item.truncated') || t === 'response.done'),
  };

  // 3. a tool call: the model calls get_weather, the SDK runs the tool() and asks for the final answer.
  // The local 1.5B model does not call tools reliably under "auto", so this turn's response.create says
  // tool_choice "required" (the follow-up response the SDK requests after the tool runs uses the session's "auto").
  mark = events.length;
  await session.updateAgent(weatherAgent);
  const updated = await waitFor(after(mark, 'session.updated', (e) => e.session.tools?.length), 'session.updated with tools', 10000);
  result.session_tools = updated.session.tools.map((t) => t.name);
  mark = events.length;
  transport.sendEvent({ type: 'conversation.item.create', item: { type: 'message', role: 'user',
    content: [{ type: 'input_text', text: 'What is the weather in Paris right now?' }] } });
  transport.sendEvent({ type: 'response.create', response: { tool_choice: 'required' } });
  await waitFor(after(mark, 'response.done', (e) => e.response.output?.some((o) => o.type === 'function_call')), 'function call');
  const final = await waitFor(after(mark, 'response.done', (e) => e.response.output?.some((o) => o.type === 'message')), 'answer after the tool');
  result.tool_calls = toolCalls;
  result.tool_answer = final.response.output.find((o) => o.type === 'message').content?.[0]?.transcript ?? null;
} catch (err) {
  result.failure = String(err?.stack ?? err);
} finally {
  result.errors = errors;
  result.event_types = [...new Set(events.map((e) => e.type))];
  session.close();
  console.log(JSON.stringify(result));
  process.exit(0);
}
