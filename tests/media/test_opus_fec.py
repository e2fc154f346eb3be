"""Opus in-band FEC: our encoder emits LBRR, our receive path recovers lost frames from it,
conceals the rest with PLC, tolerates reordering and stays sample-continuous."""

import asyncio
import fractions

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from tests.support import speechlike
from openrealtime.media.opus_fec import (
    FecOpusEncoder,
    OpusDecoder,
    OpusReceiveBuffer,
    configure_track,
    opus_library,
    track_stats,
)
from openrealtime.media import aiortc_patches

OPUS_PT = 111


def encode(pcm: np.ndarray) -> list[tuple[bytes, int]]:
    enc = FecOpusEncoder()
    out = []
    for i in range(0, pcm.size - 959, 960):
        f = av.AudioFrame.from_ndarray(pcm[i:i + 960].reshape(1, -1), format="s16", layout="mono")
        f.sample_rate, f.pts, f.time_base = 48000, i, fractions.Fraction(1, 48000)
        payloads, ts = enc.encode(f)
        out += [(p, ts) for p in payloads]
    return out


@pytest.fixture(scope="module")
def packets():
    return encode(speechlike(4.0))


class _Queue(list):
    def put_nowait(self, item):
        self.append(item)


class _Track:
    def __init__(self):
        self._queue = _Queue()


class FakeReceiver:
    """What OpusReceiveBuffer touches on an RTCRtpReceiver."""

    def __init__(self, rate: int = 24000):
        self._RTCRtpReceiver__codecs = {
            OPUS_PT: RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=OPUS_PT),
            0: RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, channels=1, payloadType=0)}
        self._track = _Track()
        configure_track(self._track, rate)

    @property
    def frames(self):
        return self._track._queue

    def pcm(self) -> np.ndarray:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in self.frames]) if self.frames else np.zeros(0)


def rtp(packets, seq0=1000, ts0=5000, ssrc=1):
    return [RtpPacket(payload_type=OPUS_PT, sequence_number=(seq0 + i) & 0xFFFF, timestamp=(ts0 + ts) & 0xFFFFFFFF,
                      ssrc=ssrc, payload=p) for i, (p, ts) in enumerate(packets)]


def feed(order, rate=24000, **kwargs):
    rx = FakeReceiver(rate)
    buf = OpusReceiveBuffer(rx, **kwargs)
    for p in order:
        assert buf.add(p) == (False, None)
    return rx, buf


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    ref, test = ref.astype(np.float64), test.astype(np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / max(1e-9, np.sum((ref - test) ** 2)))


# ---- encoder -------------------------------------------------------------------------------------
def test_encoder_sends_lbrr_mono_voice(packets):
    lib = opus_library()
    assert lib.opus_get_version_string().startswith(b"libopus 1.")
    with_lbrr = sum(lib.opus_packet_has_lbrr(p, len(p)) > 0 for p, _ in packets)
    # SILK codes LBRR only after frames its VAD found active (the quiet troughs get none)
    assert with_lbrr >= 0.5 * len(packets), f"{with_lbrr}/{len(packets)} packets carry LBRR"
    assert all(lib.opus_packet_get_nb_channels(p) == 1 for p, _ in packets), "mono"
    kbps = sum(len(p) for p, _ in packets) * 8 / (len(packets) * 0.02) / 1000
    assert 20 < kbps < 45, kbps
    assert [ts for _, ts in packets[:3]] == [0, 960, 1920]


class _Tone(MediaStreamTrack):
    kind = "audio"

    async def recv(self):
        frame = av.AudioFrame.from_ndarray(speechlike(0.02).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, 0, fractions.Fraction(1, 48000)
        return frame


async def test_the_servers_senders_encode_opus_with_fec_and_others_stay_stock():
    from aiortc import RTCPeerConnection
    from aiortc.codecs.opus import OpusEncoder

    aiortc_patches.install()
    codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=OPUS_PT)
    with aiortc_patches.server_objects():
        server = RTCPeerConnection()
        server_sender = server.addTransceiver("audio").sender
    stock = RTCPeerConnection()
    stock_sender = stock.addTransceiver("audio").sender
    encoders = []
    for sender in (server_sender, stock_sender):
        sender.replaceTrack(_Tone())
        await sender._next_encoded_frame(codec)
        encoders.append(type(sender._RTCRtpSender__encoder))
    await server.close()
    await stock.close()
    assert encoders == [FecOpusEncoder, OpusEncoder]


# ---- decoder -------------------------------------------------------------------------------------
def test_in_order_decodes_immediately(packets):
    rx, buf = feed(rtp(packets))
    assert len(rx.frames) == len(packets), "one frame out per packet in, no prefetch"
    assert buf.stats.decoded == len(packets) and buf.stats.samples == 480 * len(packets)
    f = rx.frames[0]
    assert (f.sample_rate, f.layout.name, f.format.name, f.samples) == (24000, "mono", "s16", 480)
    assert [fr.pts for fr in rx.frames[:3]] == [0, 480, 960]
    assert track_stats(rx._track) is buf.stats


@pytest.mark.parametrize("rate", [48000, 16000])
def test_other_output_rates(packets, rate):
    rx, buf = feed(rtp(packets[:20]), rate=rate)
    assert buf.stats.samples == 20 * rate // 50 and rx.frames[0].sample_rate == rate


async def test_ten_percent_loss_fec_beats_plc_and_stays_continuous(packets):
    """Every 10th packet lost: each one whose next packet carries LBRR is recovered from it (the
    rest by PLC); the output has exactly as many samples as the lossless stream, and the lost
    frames are much closer to the lossless decode than with PLC alone."""
    full = rtp(packets)
    lossless, _ = feed(full)
    ref = lossless.pcm()
    lossy = [p for i, p in enumerate(full) if i % 10 != 5]
    rx, buf = feed(lossy)
    st = buf.stats
    lib = opus_library()
    recoverable = sum(lib.opus_packet_has_lbrr(full[i + 1].payload, len(full[i + 1].payload)) > 0
                      for i in range(len(full)) if i % 10 == 5)
    assert st.lost_packets == len(full) - len(lossy)
    assert st.fec_frames == recoverable >= st.lost_packets // 2
    assert st.plc_frames == st.lost_packets - recoverable
    assert st.samples == ref.size == 480 * len(full), "sample-continuous"
    assert np.all(np.diff([f.pts for f in rx.frames]) > 0)

    # PLC only: strip the LBRR by decoding the lost frames as if no next packet carried any
    class NoLbrr(OpusDecoder):
        def has_lbrr(self, payload):
            return False

    rx_plc = FakeReceiver()
    plc = OpusReceiveBuffer(rx_plc)
    plc._open = _open_with(plc, NoLbrr)
    for p in lossy:
        plc.add(p)
    assert plc.stats.fec_frames == 0 and plc.stats.plc_frames == st.lost_packets
    assert plc.stats.samples == ref.size
    lost_idx = [i for i in range(len(full)) if i % 10 == 5
                and lib.opus_packet_has_lbrr(full[i + 1].payload, len(full[i + 1].payload)) > 0]
    mask = np.zeros(ref.size, bool)
    for i in lost_idx:
        mask[i * 480:(i + 1) * 480] = True
    fec_snr = snr_db(ref[mask], rx.pcm()[mask])
    plc_snr = snr_db(ref[mask], rx_plc.pcm()[mask])
    print(f"lost frames: FEC SNR {fec_snr:.1f} dB vs PLC {plc_snr:.1f} dB; overall {snr_db(ref, rx.pcm()):.1f} dB")
    assert fec_snr > plc_snr + 3


def _open_with(buf, decoder_cls):
    original = buf._open

    def _open():
        ok = original()
        buf._dec = decoder_cls(buf._rate, 1)
        return ok
    return _open


async def test_burst_loss_plc_then_fec(packets):
    full = rtp(packets[:30])
    rx, buf = feed([p for i, p in enumerate(full) if i not in (10, 11, 12)])
    assert buf.stats.lost_packets == 3
    assert buf.stats.plc_frames == 2 and buf.stats.fec_frames == 1, buf.stats
    assert buf.stats.samples == 30 * 480


async def test_reordering_within_the_window_is_lossless(packets):
    full = rtp(packets[:40])
    lossless, _ = feed(full)
    order = list(full)
    order[10], order[11] = order[11], order[10]   # swapped neighbours
    order[20], order[22] = order[22], order[20]   # 22, 21, 20: two held until 20 arrives
    rx, buf = feed(order, reorder_packets=3)
    assert buf.stats.lost_packets == 0 and buf.stats.reordered == 2
    assert np.array_equal(rx.pcm(), lossless.pcm())


async def test_late_packet_after_concealment_is_dropped(packets):
    full = rtp(packets[:20])
    order = full[:5] + full[6:9] + [full[5]] + full[9:]
    rx, buf = feed(order)  # 2 held → gives up on 5 before it shows up
    assert buf.stats.lost_packets == 1 and buf.stats.late == 1
    assert buf.stats.samples == 20 * 480


async def test_gap_with_nothing_after_is_concealed_on_a_timer(packets):
    full = rtp(packets[:10])
    rx, buf = feed(full[:5] + [full[6]], reorder_s=0.03)
    assert buf.stats.samples == 5 * 480, "held while waiting"
    await asyncio.sleep(0.1)
    assert buf.stats.lost_packets == 1 and buf.stats.fec_frames == 1
    assert buf.stats.samples == 7 * 480


async def test_sequence_and_timestamp_wrap(packets):
    full = rtp(packets[:30], seq0=65530, ts0=2**32 - 960 * 7)
    rx, buf = feed([p for i, p in enumerate(full) if i != 8])
    assert buf.stats.lost_packets == 1 and buf.stats.samples == 30 * 480 and buf.stats.late == 0


async def test_stream_restart_resyncs(packets):
    a = rtp(packets[:10], seq0=100)
    b = rtp(packets[10:20], seq0=40000, ts0=10**6, ssrc=2)
    rx, buf = feed(a + b)
    assert buf.stats.resyncs == 1 and buf.stats.lost_packets == 0 and buf.stats.samples == 20 * 480


async def test_sequence_jump_on_the_same_ssrc_is_followed(packets):
    forward = rtp(packets[:5], seq0=100) + rtp(packets[5:10], seq0=20000, ts0=10**6)
    rx, buf = feed(forward, resync_packets=3000)
    assert buf.stats.resyncs == 1 and buf.stats.samples == 10 * 480 and buf.stats.lost_packets == 0
    back = rtp(packets[:5], seq0=50000) + rtp(packets[5:25], seq0=30000, ts0=10**6)  # 20000 back
    rx, buf = feed(back)
    assert buf.stats.resyncs == 1 and buf.stats.late == 9
    assert buf.stats.samples == (5 + 11) * 480


def test_non_opus_goes_to_aiortcs_jitter_buffer():
    rx = FakeReceiver()
    buf = OpusReceiveBuffer(rx)
    results = []
    for i in range(8):
        packet = RtpPacket(payload_type=0, sequence_number=i, timestamp=i * 160, payload=b"\xff" * 160)
        packet._data = packet.payload  # aiortc's depayload step
        results.append(buf.add(packet))
    frames = [f for _, f in results if f is not None]
    assert frames, "PCMU frames come back for aiortc's decoder thread"
    assert buf.stats.packets == 0 and not rx.frames


async def test_pcm_sink_gets_the_same_audio_without_frames(packets):
    """configure_track(sink=...): each frame's PCM goes straight to the sink (what InboundAudio
    uses), identical to the av.AudioFrame path, including FEC and PLC, and nothing is queued."""
    lossy = [p for i, p in enumerate(rtp(packets)) if i % 10 != 5 and i not in (40, 41, 42)]
    rx_frames, buf_frames = feed(lossy)
    rx = FakeReceiver()
    got: list[bytes] = []
    configure_track(rx._track, 24000, sink=got.append)
    buf = OpusReceiveBuffer(rx)
    for p in lossy:
        assert buf.add(p) == (False, None)
    assert not rx.frames, "no av.AudioFrame for the track's queue"
    assert all(isinstance(b, bytes) for b in got)
    assert buf.stats == buf_frames.stats and buf.stats.fec_frames > 0 and buf.stats.plc_frames > 0
    assert b"".join(got) == rx_frames.pcm().astype("<i2").tobytes()
