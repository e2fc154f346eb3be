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
  const agent = new RealtimeAgent({
    name: 'Assistant',
    instructions: 'You are a helpful assistant. Answer in one short sentence. '
    + 'Call get_weather only when the user asks about the weather.',
    tools: [getWeather],
  });
  const transport = new OpenAIRealtimeWebRTC({ baseUrl: callsUrl });
  const session = new RealtimeSession(agent, { transport });
  session.on('transport_event', (e) => window.events.push(e));
  session.on('error', (e) => window.errors.push(String(e?.error?.message ?? e?.error ?? e)));
  await session.connect({ apiKey: ephemeralKey });
  window.session = session;
  window.transport = transport;
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
