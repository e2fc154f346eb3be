"""Packet loss on a real aiortc call into the echo server.

A shim on the server's DTLS transport drops inbound RTP deterministically (before SRTP-decrypted
packets reach the TWCC recorder and the receivers, i.e. like the network would):

* audio: every 10th Opus packet. The client's encoder sends LBRR (our FecOpusEncoder is
  process-wide), so the server recovers most lost frames from the next packet and conceals the
  rest; the decoded stream keeps exactly the sender's timeline (no gaps, no stall);
* video: every 10th packet, once. aiortc's receiver NACKs it, the client retransmits (no RTX:
  same SSRC and sequence number) and frames keep decoding.
"""

import asyncio
import fractions
import struct
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from openrealtime.client.rtc import RealtimeRtcClient
from openrealtime.media import rtp_patches
from openrealtime.media.sdp_policy import install_codec_policy


def speechlike_48k(seconds: float) -> bytes:
    t = np.arange(int(48000 * seconds)) / 48000
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 48000
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 3.5 * t)
    return (9000 * voice * env / 2).astype("<i2").tobytes()


class DropShim:
    """Replaces ``transport._handle_rtp_data`` on one transport instance."""

    def __init__(self, transport, payload_types: set[int], every: int, phase: int, once: bool = False):
        self.payload_types = payload_types
        self.every, self.phase, self.once = every, phase, once
        self.seen: dict[int, int] = {}
        self.dropped: list[int] = []
        self.first_ts: int | None = None
        self.last_ts = 0
        self.first_seq: int | None = None
        self.last_seq = 0
        self._next = transport._handle_rtp_data
        transport._handle_rtp_data = self

    async def __call__(self, data: bytes, arrival_time_ms: int) -> None:
        if data[1] & 0x7F in self.payload_types:
            seq, ts = struct.unpack_from("!HI", data, 2)
            count = self.seen.get(seq, 0)
            self.seen[seq] = count + 1
            if self.first_seq is None:
                self.first_seq, self.first_ts = seq, ts
            self.last_seq, self.last_ts = seq, ts
            if seq % self.every == self.phase and not (self.once and count):
                self.dropped.append(seq)
                return
        await self._next(data, arrival_time_ms)


def negotiated_pts(sdp: str, kind: str, codec: str) -> set[int]:
    section = sdp.split(f"m={kind}", 1)[1].split("\nm=", 1)[0]
    return {int(line.split(":", 1)[1].split()[0]) for line in section.splitlines()
            if line.startswith("a=rtpmap:") and codec.lower() in line.lower()}


async def test_ten_percent_audio_loss_is_concealed_with_fec(echo_server):
    install_codec_policy()  # the client (same process) then offers transport-cc and encodes with FEC
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
    resp = await client.connect()
    assert resp.status_code == 201
    call = echo_server.state.calls.get(client.call_id)
    transport = call.pc.getTransceivers()[0].receiver.transport
    shim = DropShim(transport, negotiated_pts(resp.text, "audio", "opus"), every=10, phase=3)
    await client.next_event("session.created")
    client.mic.play(speechlike_48k(4.0))
    await asyncio.sleep(4.0)
    inbound = call.inbound
    opus = inbound.opus
    samples = opus.samples  # decoder output, read together with the shim's last timestamp
    last_ts, first_ts = shim.last_ts, shim.first_ts
    await asyncio.sleep(0.1)
    consumed = inbound.samples
    await client.close()

    print("dropped", len(shim.dropped), "opus", opus, "TWCC", rtp_patches.peek_twcc_state(transport).counters())
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
    install_codec_policy()
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
