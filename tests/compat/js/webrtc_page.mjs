// Browser page for tests/compat/test_agents_realtime_webrtc.py: the official Agents SDK, stock, over its
// OpenAIRealtimeWebRTC transport (microphone = Chromium's fake device playing a WAV). Only `baseUrl` and
// the ephemeral key point at openrealtime. Bundled with esbuild into an IIFE; driven from Playwright.
import { OpenAIRealtimeWebRTC, RealtimeAgent, RealtimeSession, tool } from '@openai/agents-realtime';
import { z } from 'zod';

window.events = [];
window.errors = [];
window.toolCalls = [];

window.startAgent = async (callsUrl, ephemeralKey) => {
  const getWeather = tool({
    name: 'get_weather',
    description: 'Get the current weather for a city.',
    parameters: z.object({ city: z.string() }),
    execute: async ({ city }) => {
      window.toolCalls.push(city);
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
  const transport = new OpenAIRealtimeWebRTC({ baseUrl: callsUrl });
  // Whisper base sometimes hears "capital of friends"; a transcription prompt (a vocabulary hint) steadies it.
  const session = new RealtimeSession(agent, {
    transport,
    config: { audio: { input: { transcription: { model: 'gpt-4o-mini-transcribe',
      prompt: 'Questions about capital cities of countries.' } } } },
  });
  session.on('transport_event', (e) => window.events.push(e));
  session.on('error', (e) => window.errors.push(String(e?.error?.message ?? e?.error ?? e)));
  await session.connect({ apiKey: ephemeralKey });
  window.session = session;
  window.transport = transport;
  window.useWeatherAgent = () => session.updateAgent(weatherAgent);
  return { callId: transport.callId, status: transport.status };
};

window.inboundAudio = async () => {
  const pc = window.transport?.connectionState?.peerConnection;
  if (!pc) return null;
  const stats = await pc.getStats();
  for (const report of stats.values()) {
    if (report.type === 'inbound-rtp' && report.kind === 'audio') {
      return { packetsReceived: report.packetsReceived, totalAudioEnergy: report.totalAudioEnergy ?? 0 };
    }
  }
  return null;
};
