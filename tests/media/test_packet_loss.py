"""Packet loss on a real aiortc call into the echo server.

A shim under the server's DTLS transport drops inbound SRTP deterministically (before
decryption, so the TWCC recorder and the receivers see it as network loss):

* audio: every 10th Opus packet. The client is built from the server's aiortc objects
  (``aiortc_patches.server_objects``), so its encoder sends LBRR and it reads our transport-cc
  feedback; the server recovers most lost frames from the next packet and conceals the rest; the
  decoded stream keeps exactly the sender's timeline (no gaps, no stall);
* video: every 10th packet, once, from a stock aiortc client. The server's receiver NACKs it, the
  client retransmits (no RTX: same SSRC and sequence number) and frames keep decoding.
"""

import asyncio
import fractions
import struct
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tests.support import speechlike
from openrealtime.client.rtc import RealtimeRtcClient
from openrealtime.media.aiortc_patches import server_objects
from openrealtime.media.aiortc_patches.dtls_transport import peek_twcc_state
from openrealtime.media.aiortc_patches.rtp_receiver import video_buffer


def speechlike_48k(seconds: float) -> bytes:
    return speechlike(seconds, noise=0.0).tobytes()


class DropShim:
    """Drops inbound SRTP datagrams of one DTLS transport by their cleartext RTP header, before
    decryption, like the network would (dropping after SRTP would make the retransmission of a
    NACKed packet a replay that libsrtp rejects). RTCP, DTLS and STUN pass untouched."""

    def __init__(self, dtls_transport, payload_types: set[int], every: int, phase: int, once: bool = False,
                 limit: int | None = None):
        self.payload_types = payload_types
        self.every, self.phase, self.once, self.limit = every, phase, once, limit
        self.seen: dict[int, int] = {}
        self.dropped: list[int] = []
        self.first_ts: int | None = None
        self.last_ts = 0
        self.stopped = False  # the link goes down for this payload: nothing more passes or counts
        ice = dtls_transport.transport
        self._recv = ice._recv
        ice._recv = self.recv

    async def recv(self) -> bytes:
        while True:
            data = await self._recv()
            if len(data) < 12 or not 128 <= data[0] < 192 or 192 <= data[1] <= 223:
                return data  # not RTP (DTLS, RTCP)
            if data[1] & 0x7F not in self.payload_types:
                return data
            if self.stopped:
                continue
            seq, ts = struct.unpack_from("!HI", data, 2)
            count = self.seen.get(seq, 0)
            self.seen[seq] = count + 1
            if self.first_ts is None:
                self.first_ts = ts
            self.last_ts = ts
            if seq % self.every == self.phase and not (self.once and count) \
                    and (self.limit is None or len(self.dropped) < self.limit):
                self.dropped.append(seq)
                continue
            return data


def negotiated_pts(sdp: str, kind: str, codec: str) -> set[int]:
    section = sdp.split(f"m={kind}", 1)[1].split("\nm=", 1)[0]
    return {int(line.split(":", 1)[1].split()[0]) for line in section.splitlines()
            if line.startswith("a=rtpmap:") and codec.lower() in line.lower()}


async def test_ten_percent_audio_loss_is_concealed_with_fec(echo_server):
    with server_objects():  # the client then offers transport-cc and encodes with FEC, as the server does
        client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
        resp = await client.connect()
    assert resp.status_code == 201
    call = echo_server.state.calls.get(client.call_id)
    transport = call.pc.getTransceivers()[0].receiver.transport
    shim = DropShim(transport, negotiated_pts(resp.text, "audio", "opus"), every=10, phase=3)
    await client.next_event("session.created")
    client.mic.play(speechlike_48k(4.0))
    await asyncio.sleep(4.0)
    # cut the stream, then let everything that passed be decoded (held packets, in-flight tasks):
    # a reading taken mid-stream could be a frame or two behind on a busy machine
    shim.stopped = True
    await asyncio.sleep(0.5)
    inbound = call.inbound
    opus = inbound.opus
    samples = opus.samples
    last_ts, first_ts = shim.last_ts, shim.first_ts
    consumed = inbound.samples
    client_twcc = peek_twcc_state(client.pc.getTransceivers()[0].sender.transport).counters()
    await client.close()

    print("dropped", len(shim.dropped), "opus", opus, "client TWCC", client_twcc)
    assert client_twcc["reported_lost"] >= len(shim.dropped) - 3, "our feedback reports the losses"
    assert len(shim.dropped) >= 15
    assert opus.lost_packets >= len(shim.dropped) - 1  # the very last one may still be waiting
    assert opus.fec_frames >= 0.5 * opus.lost_packets > 0, "most lost frames come back from LBRR"
    assert opus.fec_frames + opus.plc_frames >= opus.lost_packets
    assert opus.late == 0 and opus.errors == 0
    # sample-continuous: the decoded stream covers the sender's RTP timeline exactly
    # (24 kHz out of a 48 kHz RTP clock; the first packet's 20 ms plus every timestamp step)
    span = ((last_ts - first_ts) & 0xFFFFFFFF) // 2 + 480
    assert abs(samples - span) <= 2 * 480, (samples, span)
    assert abs(consumed - samples) <= 10 * 480, "InboundAudio got all of it (24 kHz passthrough)"


class SmallVideoTrack(MediaStreamTrack):
    """320x240 moving gradient at 15 fps (cheap to encode)."""

    kind = "video"

    def __init__(self):
        super().__init__()
        self._n = 0
        self._start = None
        yy, xx = np.mgrid[0:240, 0:320]
        self._base = (xx + yy).astype(np.int32)

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        delay = self._start + self._n / 15 - now
        if delay > 0:
            await asyncio.sleep(delay)
        img = np.stack([(self._base + 4 * self._n) % 256] * 3, axis=-1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = self._n * 6000, fractions.Fraction(1, 90000)
        self._n += 1
        return frame


async def test_lost_video_packets_are_nacked_and_retransmitted(echo_server):
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"}, video=True)
    video_tx = next(t for t in client.pc.getTransceivers() if t.kind == "video")
    video_tx.sender.replaceTrack(SmallVideoTrack())
    resp = await client.connect()
    assert resp.status_code == 201
    video_section = resp.text.split("m=video", 1)[1].split("m=application", 1)[0]
    assert " nack\r\n" in video_section and " nack pli\r\n" in video_section
    call = echo_server.state.calls.get(client.call_id)
    server_rx = next(t.receiver for t in call.pc.getTransceivers() if t.kind == "video")
    shim = DropShim(server_rx.transport, negotiated_pts(resp.text, "video", "h264"), every=10, phase=4, once=True)
    nacks: list[list[int]] = []
    send_nack = server_rx._send_rtcp_nack

    async def counting_nack(media_ssrc, lost):
        nacks.append(list(lost))
        await send_nack(media_ssrc, lost)

    server_rx._send_rtcp_nack = counting_nack

    async def decoded():
        return call.video is not None and call.video.stats.frames_decoded >= 30

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await decoded() and loop.time() < deadline:
        await asyncio.sleep(0.2)
    frames = call.video.stats.frames_decoded if call.video else 0
    await client.close()

    retransmitted = [seq for seq in shim.dropped if shim.seen.get(seq, 0) >= 2]
    print(f"video: dropped {len(shim.dropped)}, NACKs {len(nacks)}, retransmitted {len(retransmitted)}, "
          f"frames decoded {frames}")
    assert frames >= 30
    assert shim.dropped and nacks, "aiortc NACKs lost video packets"
    assert set(shim.dropped) & {seq for n in nacks for seq in n}
    assert len(retransmitted) >= len(shim.dropped) // 2, "the sender answered the NACKs"


async def test_unrecovered_video_loss_does_not_freeze(echo_server, monkeypatch):
    """The sender ignores our NACKs (as Chrome sometimes does): aiortc's own jitter buffer would
    hold every later frame behind the hole for 512 packets; ours gives up after 0.35 s, sends a
    PLI, and decoding resumes with the keyframe."""
    import aiortc.rtcrtpsender

    async def ignore_nack(self, sequence_number):
        return None

    monkeypatch.setattr(aiortc.rtcrtpsender.RTCRtpSender, "_retransmit", ignore_nack)
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"}, video=True)
    next(t for t in client.pc.getTransceivers() if t.kind == "video").sender.replaceTrack(SmallVideoTrack())
    resp = await client.connect()
    call = echo_server.state.calls.get(client.call_id)
    receiver = next(t.receiver for t in call.pc.getTransceivers() if t.kind == "video")
    jitter = video_buffer(receiver)
    shim = DropShim(receiver.transport, negotiated_pts(resp.text, "video", "h264"), every=30, phase=11, limit=3)
    loop = asyncio.get_running_loop()
    deadline, decoded_after = loop.time() + 30, None
    while loop.time() < deadline:
        await asyncio.sleep(0.2)
        decoded = call.video.stats.frames_decoded if call.video else 0
        if len(shim.dropped) == 3 and decoded_after is None:
            decoded_after = decoded
        if decoded_after is not None and decoded >= decoded_after + 15:
            break
    await client.close()
    print(f"dropped {shim.dropped}, skips {jitter.skips}, decoded {decoded} (at last drop {decoded_after})")
    assert len(shim.dropped) == 3 and not any(shim.seen[s] > 1 for s in shim.dropped), "never retransmitted"
    assert jitter.skips >= 1
    assert decoded >= decoded_after + 15, "decoding resumed"


# ---- the video jitter buffer gives up on a hole -------------------------------------------------------
def _video_packets(frames: int, per_frame: int, seq0: int = 65500):
    from aiortc.rtp import RtpPacket

    out = []
    for f in range(frames):
        for k in range(per_frame):
            p = RtpPacket(payload_type=102, sequence_number=(seq0 + f * per_frame + k) & 0xFFFF,
                          timestamp=f * 3000, marker=int(k == per_frame - 1), payload=b"x")
            p._data = bytes([f])
            out.append(p)
    return out


def test_video_jitter_buffer_skips_an_unrecovered_hole(monkeypatch):
    from aiortc.rtcrtpreceiver import NackGenerator

    from openrealtime.media import video_jitter
    from openrealtime.media.video_jitter import VideoJitterBuffer

    clock = [100.0]
    monkeypatch.setattr(video_jitter.time, "monotonic", lambda: clock[0])
    nack = NackGenerator()
    buf = VideoJitterBuffer(nack, max_wait_s=0.3)
    packets = _video_packets(8, 3)
    lost = packets[7]  # middle packet of frame 2 (sequence numbers wrap inside the run)
    out, plis = [], 0
    for p in packets:
        if p is lost:
            continue
        clock[0] += 0.05
        nack.add(p)
        pli, frame = buf.add(p)
        plis += pli
        if frame is not None:
            out.append(frame.data[0])
    # aiortc alone would still be waiting for `lost` (512 packets); we give up after 0.3 s
    assert buf.skips == 1 and plis == 1
    assert out[:2] == [0, 1] and 2 not in out, "the broken frame is dropped, not decoded"
    assert out[-1] == 6 and out == sorted(out), out
    # no hole: never skips, however long a frame takes
    nack2 = NackGenerator()
    buf2 = VideoJitterBuffer(nack2, max_wait_s=0.3)
    for p in _video_packets(3, 4):
        clock[0] += 1.0
        nack2.add(p)
        buf2.add(p)
    assert buf2.skips == 0
