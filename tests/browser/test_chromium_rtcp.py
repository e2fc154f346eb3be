"""Chromium consumes our RTCP: transport-cc feedback drives its send-side BWE, its own feedback
covers the transport-wide sequence numbers we stamp, and lost video packets get NACKed and
retransmitted. (Fake camera + fake mic; the seed demo's constraints: 1080p at 1 fps.)"""

import asyncio


from openrealtime.media.aiortc_patches import dtls_transport
from openrealtime.media.aiortc_patches.rtp_receiver import video_buffer
from tests.browser.conftest import open_seed_page
from tests.media.test_packet_loss import DropShim, negotiated_pts

STATS = """async () => {
  const stats = await window.pc.getStats(); const out = {aob: null};
  stats.forEach((s) => {
    if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) out.aob = s.availableOutgoingBitrate;
    if (s.type === 'outbound-rtp' && s.kind === 'video') out.video = {
      w: s.frameWidth, target: s.targetBitrate, qlr: s.qualityLimitationReason, nack: s.nackCount,
      retx: s.retransmittedPacketsSent, pli: s.pliCount, packets: s.packetsSent};
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioIn = {
      packets: s.packetsReceived, energy: s.totalAudioEnergy || 0};
  }); return out; }"""

DETAIL_HINT = """() => {
  const orig = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (c) => {
    const s = await orig(c); s.getVideoTracks().forEach((t) => { t.contentHint = 'detail'; }); return s; };
}"""


async def start_video_call(page, server):
    await open_seed_page(page, server.url)
    await page.evaluate(DETAIL_HINT)  # 1080p from the first frame: the encoder wants bitrate
    call_id = await page.evaluate("([u, s]) => startCall(u, 'test', s, true)", [server.url, {"type": "realtime"}])
    call = server.state.calls.get(call_id)
    assert call is not None
    return call


def server_twcc(call):
    return dtls_transport.peek_twcc_state(call.pc.getTransceivers()[0].receiver.transport)


async def test_chrome_bwe_ramps_up_on_our_feedback(echo_server, browser_page):
    """Start estimate is 300 kbps; without feedback Chrome can only lower it (see the control
    below). Crossing 450 kbps proves it consumes our transport-cc packets."""
    page = browser_page
    call = await start_video_call(page, echo_server)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 45
    samples = []
    while loop.time() < deadline:
        await asyncio.sleep(1.0)
        st = await page.evaluate(STATS)
        samples.append(st["aob"])
        if st["aob"] and st["aob"] > 450_000:
            break
    tw = server_twcc(call)
    counters = tw.counters()
    print("availableOutgoingBitrate:", samples, "last:", st, "server TWCC:", counters)
    assert max(a or 0 for a in samples) > 450_000
    assert counters["rtp_recorded"] > 50 and counters["feedback_sent"] > 5 and counters["rtp_late"] == 0
    # Chrome's own feedback covers the transport-wide sequence numbers we stamp on our audio
    assert counters["stamped"] > 20 and counters["feedback_received"] > 5
    assert counters["reported_received"] > 0.9 * counters["stamped"] - 50
    assert st["audioIn"]["packets"] > 20, "Chrome receives our (FEC, mono 32 kbps) Opus"
    await page.evaluate("window.pc.close()")
    await asyncio.wait_for(call.closed.wait(), 40)


async def test_control_without_feedback_chrome_backs_off(echo_server, browser_page, monkeypatch):
    """The same call with transport-cc negotiated but no feedback sent (what advertising it
    without an implementation does): Chrome's estimate only decays from its 300 kbps start."""
    monkeypatch.setattr(dtls_transport, "SEND_FEEDBACK", False)
    page = browser_page
    call = await start_video_call(page, echo_server)
    samples = []
    for _ in range(12):
        await asyncio.sleep(1.0)
        samples.append((await page.evaluate(STATS))["aob"])
    print("availableOutgoingBitrate without feedback:", samples)
    assert server_twcc(call).counters()["feedback_sent"] == 0
    late = [a for a in samples[5:] if a]
    assert late and max(late) <= 330_000 and late[-1] < 300_000
    await page.evaluate("window.pc.close()")
    await asyncio.wait_for(call.closed.wait(), 40)


async def test_lost_video_packets_are_nacked(echo_server, browser_page):
    """Drop 4 inbound video packets (every 30th, once; before SRTP, like the network): aiortc
    NACKs them and Chrome gets the NACKs. Chrome retransmits some, not always all (same
    SSRC/sequence number, no RTX); a hole that stays open is given up on by the video jitter
    buffer (with a PLI) and frames keep flowing to the decoder instead of freezing for 512
    packets (aiortc's own buffer). Decoding them again depends on Chrome's keyframe, which it
    usually but not always sends promptly at 1 fps; tests/media/test_packet_loss.py pins the
    decode side with an aiortc sender."""
    page = browser_page
    await open_seed_page(page, echo_server.url)
    call_id = await page.evaluate("([u, s]) => startCall(u, 'test', s, true)", [echo_server.url, {"type": "realtime"}])
    call = echo_server.state.calls.get(call_id)
    answer = call.pc.localDescription.sdp
    shim = DropShim(call.pc.getTransceivers()[0].receiver.transport, negotiated_pts(answer, "video", "h264"),
                    every=30, phase=11, once=True, limit=4)
    receiver = next(t.receiver for t in call.pc.getTransceivers() if t.kind == "video")
    jitter = video_buffer(receiver)
    assert jitter is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    st, out_after = {}, None
    while loop.time() < deadline:
        await asyncio.sleep(1.0)
        st = await page.evaluate(STATS)
        if len(shim.dropped) == 4 and out_after is None:
            out_after = jitter.frames_out
        if out_after is not None and jitter.frames_out >= out_after + 3 and (st["video"].get("nack") or 0) > 0:
            break
    # decoding resumes at Chrome's next keyframe, which our PLIs ask for (it may take a few seconds, more on a
    # loaded machine: bounded on its own, not by what the loop above used of its deadline)
    decode_deadline = loop.time() + 45
    while call.video.stats.frames_decoded < 1 and loop.time() < decode_deadline:
        await asyncio.sleep(0.5)
    retransmitted = [s for s in shim.dropped if shim.seen[s] >= 2]
    print("dropped:", shim.dropped, "retransmitted:", retransmitted, "Chrome outbound video:", st.get("video"),
          "jitter skips:", jitter.skips, "server video:", call.video and call.video.counters())
    assert len(shim.dropped) == 4
    assert st["video"]["nack"] > 0, "Chrome received our NACKs"
    assert st["video"]["retx"] >= len(retransmitted)
    assert len(retransmitted) + jitter.skips > 0, "holes are filled or given up on"
    assert jitter.frames_out >= out_after + 3, "frames keep flowing after the losses"
    # Chrome answers our PLIs with a keyframe usually, not always in time (a clean-clone CI run saw none in
    # 100 s: keyframes=0, 26 PLIs sent); decoding after losses is pinned with an aiortc sender in
    # tests/media/test_packet_loss.py: what the server owes Chrome here is to ask for one
    stats = call.video.stats
    assert stats.frames_decoded >= 1 or stats.plis_sent > 0, stats
    await page.evaluate("window.pc.close()")
    await asyncio.wait_for(call.closed.wait(), 40)
