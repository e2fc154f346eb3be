// A second, independent WebRTC stack (werift, pure TypeScript) completes offer/answer with
// POST /v1/realtime/calls and exchanges events on `oai-events`. Usage: node werift_call.mjs CALLS_URL API_KEY
import { RTCPeerConnection } from 'werift';

const [callsUrl, apiKey] = process.argv.slice(2);
const result = { events: [] };
const pc = new RTCPeerConnection({ iceServers: [] });
const timeout = (ms, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));

try {
  pc.addTransceiver('audio', { direction: 'sendrecv' });
  const channel = pc.createDataChannel('oai-events');
  const received = [];
  let wake = () => {};
  channel.onmessage = (ev) => {
    const event = JSON.parse(typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data).toString());
    received.push(event);
    result.events.push(event.type);
    wake();
  };
  const opened = new Promise((resolve) => { channel.onopen = () => resolve(); });
  const next = async (type) => {
    for (;;) {
      const i = received.findIndex((e) => e.type === type);
      if (i >= 0) return received.splice(i, 1)[0];
      await new Promise((r) => { wake = r; });
    }
  };

  await pc.setLocalDescription(await pc.createOffer());
  await Promise.race([
    new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
    }),
    timeout(5000, 'ICE gathering'),
  ]);
  const t0 = Date.now();
  const response = await fetch(callsUrl, {
    method: 'POST',
    headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  result.status = response.status;
  result.content_type = response.headers.get('content-type');
  result.location = response.headers.get('location');
  const answer = await response.text();
  if (response.status !== 201) throw new Error(`POST ${callsUrl}: ${response.status} ${answer}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  await Promise.race([opened, timeout(15000, 'data channel open')]);
  result.open_ms = Date.now() - t0;
  const created = await Promise.race([next('session.created'), timeout(10000, 'session.created')]);
  result.session_id = created.session.id;
  channel.send(JSON.stringify({ type: 'session.update', event_id: 'evt_werift',
    session: { type: 'realtime', instructions: 'Hello from werift.' } }));
  const updated = await Promise.race([next('session.updated'), timeout(10000, 'session.updated')]);
  result.updated_instructions = updated.session.instructions;
  channel.send(JSON.stringify({ type: 'no.such.event', event_id: 'evt_bad' }));
  const error = await Promise.race([next('error'), timeout(10000, 'error')]);
  result.error = error.error;
  result.connection_state = pc.connectionState;
} catch (err) {
  result.failure = String(err?.stack ?? err);
} finally {
  console.log(JSON.stringify(result));
  await Promise.race([pc.close(), new Promise((r) => setTimeout(r, 2000))]);
  process.exit(0);
}
