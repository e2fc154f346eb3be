"""The outbound track encodes Opus itself: packets on the 48 kHz RTP clock that aiortc only packs,
LBRR on, silence from a cache after a hangover, barge-in and playout events unchanged."""

import fractions
import threading

import av
import numpy as np
import pytest

from aiortc import RTCRtpSender

from tests.support import speechlike, wait_for
from openrealtime.client.rtc import RealtimeRtcClient
from openrealtime.media import opus_fec
from openrealtime.media.aiortc_patches.rtp_receiver import decoder_thread_started
from openrealtime.audio.format import FRAME_BYTES, FRAME_SAMPLES
from openrealtime.media.audio_out import OutboundAudioTrack
from aiortc.codecs.opus import OpusEncoder as AiortcOpusEncoder

from openrealtime.media.opus_fec import (
    SILENCE_HANGOVER_FRAMES,
    EncodedOpus,
    FecOpusEncoder,
    OpusDecoder,
    OpusSendEncoder,
    opus_library,
)


def speechlike_24k(seconds: float) -> bytes:
    return speechlike(seconds, rate=24000).tobytes()


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def decode_all(packets: list[bytes]) -> np.ndarray:
    dec = OpusDecoder(24000, 1)
    return np.frombuffer(b"".join(dec.decode(p, FRAME_SAMPLES) for p in packets), "<i2").astype(np.float64)


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    return 10 * np.log10(np.sum(ref ** 2) / max(1e-9, np.sum((ref - test) ** 2)))


def test_send_encoder_settings_lbrr_and_quality():
    enc = OpusSendEncoder(24000)
    assert [enc.get(r) for r in (opus_fec._GET_BITRATE, opus_fec._GET_COMPLEXITY, opus_fec._GET_INBAND_FEC,
                                 opus_fec._GET_PACKET_LOSS_PERC, opus_fec._GET_DTX)] == \
        [opus_fec.SEND_BITRATE, opus_fec.SEND_COMPLEXITY, 1, opus_fec.SEND_PACKET_LOSS_PERCENT, 0]
    pcm = speechlike_24k(3.0)
    packets = [enc.encode_frame(f) for f in frames(pcm)]
    lib = opus_library()
    assert all(lib.opus_packet_get_nb_channels(p) == 1 for p in packets), "mono"
    assert sum(lib.opus_packet_has_lbrr(p, len(p)) > 0 for p in packets) >= 0.5 * len(packets), "LBRR"
    kbps = sum(map(len, packets)) * 8 / (len(packets) * 0.02) / 1000
    assert 20 < kbps < 45, kbps
    out = decode_all(packets)
    ref = np.frombuffer(pcm, "<i2").astype(np.float64)[: out.size]
    # libopus delays by a few ms; at the best alignment the decoded speech follows the input
    # (SILK codes the spectrum, not the waveform, so this is a correlation, not an SNR)
    best = max(np.corrcoef(ref[: out.size - lag], out[lag:])[0, 1] for lag in range(0, 240))
    assert best > 0.7, best  # 0.79 here, as with the 48 kHz FFmpeg encoder it replaces
    assert enc.frames_encoded == len(packets) and enc.silence_repeats == 0


def test_silence_repeats_a_cached_packet_after_the_hangover_and_speech_resumes_cleanly():
    speech = frames(speechlike_24k(1.0))
    silence = [bytes(FRAME_BYTES)] * 30
    cached, plain = OpusSendEncoder(24000), OpusSendEncoder(24000)
    a = [cached.encode_frame(f) for f in speech + silence + speech]
    b = [plain.encode(f) for f in speech + silence + speech]
    assert cached.frames_encoded == 2 * len(speech) + SILENCE_HANGOVER_FRAMES
    assert cached.silence_repeats == len(silence) - SILENCE_HANGOVER_FRAMES
    tail = a[len(speech) + SILENCE_HANGOVER_FRAMES - 1: len(speech) + len(silence)]
    assert len(set(tail)) == 1, "one cached packet repeated"
    da, db = decode_all(a), decode_all(b)
    quiet = da[(len(speech) + SILENCE_HANGOVER_FRAMES) * FRAME_SAMPLES: (len(speech) + len(silence)) * FRAME_SAMPLES]
    assert np.abs(quiet).max() < 50, "the cached packet decodes to silence"
    resumed = slice((len(speech) + len(silence)) * FRAME_SAMPLES, None)
    assert snr_db(db[resumed], da[resumed]) > 20, "speech after the cache sounds as if every frame was coded"


def test_zero_frames_written_by_the_engine_count_as_silence():
    enc = OpusSendEncoder(24000)
    for _ in range(SILENCE_HANGOVER_FRAMES + 3):
        enc.encode_frame(bytes(FRAME_BYTES))
    assert enc.frames_encoded == SILENCE_HANGOVER_FRAMES and enc.silence_repeats == 3


async def test_track_returns_packets_on_the_opus_clock_with_events_and_barge_in():
    events = []
    track = OutboundAudioTrack(lambda ev, rid: events.append((ev, rid)))
    assert track.set_send_codec("audio/opus") is True
    speech = speechlike_24k(0.2)  # 10 frames
    track.write(speech, response_id="r1", item_id="i1")
    track.end_response("r1")
    got = [await track.recv() for _ in range(12 + SILENCE_HANGOVER_FRAMES)]
    assert all(isinstance(p, EncodedOpus) and not isinstance(p, av.frame.Frame) for p in got)
    assert [p.pts for p in got[:4]] == [0, 960, 1920, 2880]
    assert all(p.time_base == fractions.Fraction(1, 48000) for p in got)
    # what aiortc's sender does with it: pack() → payloads and the RTP timestamp offset, with our
    # encoder (installed by the codec policy) and with aiortc's own (reads it like an av.Packet)
    for encoder in (FecOpusEncoder(), AiortcOpusEncoder()):
        payloads, ts = encoder.pack(got[3])
        assert payloads == [got[3].payload] == [bytes(got[3])] and ts == 2880
    av_packet = av.Packet(got[3].payload)
    av_packet.pts, av_packet.time_base = 2880, fractions.Fraction(1, 48000)
    assert FecOpusEncoder().pack(av_packet) == ([got[3].payload], 2880)
    assert events == [("started", "r1"), ("stopped", "r1")]
    assert track.played_ms("i1") == 200 and track.frames_with_audio == 10
    assert track.encoder.silence_repeats >= 1
    out = decode_all([bytes(p) for p in got])
    assert np.abs(out[:10 * FRAME_SAMPLES]).max() > 1000, "the speech is in the packets"

    # barge-in: clear() drops the rest; the very next packet is silence again
    track.write(speechlike_24k(1.0), response_id="r2", item_id="i2")
    await track.recv()
    cleared = track.clear()
    assert cleared.response_id == "r2" and cleared.played_ms == 20 and cleared.dropped_ms == 980
    before = track.encoder.frames_encoded + track.encoder.silence_repeats
    await track.recv()
    assert track.encoder.frames_encoded + track.encoder.silence_repeats == before + 1
    assert track.frames_with_audio == 11
    track.stop()


async def test_other_codecs_get_frames():
    track = OutboundAudioTrack()
    assert track.set_send_codec("audio/PCMU") is False and track.encoder is None
    frame = await track.recv()
    assert isinstance(frame, av.AudioFrame) and frame.sample_rate == 24000 and frame.samples == FRAME_SAMPLES
    track.stop()


async def test_a_real_call_sends_our_packets(echo_server):
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
    await client.connect()
    await client.next_event("session.created")
    call = echo_server.state.calls.get(client.call_id)
    assert call.audio_out.encoder is not None, "Opus negotiated: the track encodes"
    client.mic.play(speechlike(1.0).tobytes())
    await wait_for(lambda: client.audio.voiced_frames > 10, 10, interval=0.05,
                   what="the client decodes the echo from our packets")
    enc = call.audio_out.encoder
    assert enc.frames_encoded > 10 and enc.silence_repeats > 0
    await client.close()


@pytest.mark.parametrize("codec,expected", [("audio/opus", True), ("audio/OPUS", True), (None, False)])
def test_set_send_codec(codec, expected):
    assert OutboundAudioTrack().set_send_codec(codec) is expected


# ---- aiortc's audio decoder thread only for codecs it decodes ----------------------------------------
def _audio_receiver(call):
    return next(t.receiver for t in call.pc.getTransceivers() if t.kind == "audio")


async def _echo_round_trip(echo_server, client):
    await client.next_event("session.created")
    call = echo_server.state.calls.get(client.call_id)
    client.mic.play(speechlike(1.0).tobytes())
    await wait_for(lambda: call.inbound.voiced_frames > 10, 10, interval=0.05, what="the server decoded our audio")
    await wait_for(lambda: client.audio.voiced_frames > 10, 10, interval=0.05, what="the echo came back")
    return call


async def test_opus_call_never_starts_the_decoder_thread(echo_server):
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
    await client.connect()
    call = await _echo_round_trip(echo_server, client)
    receiver = _audio_receiver(call)
    assert decoder_thread_started(receiver) is False
    lazy = receiver._RTCRtpReceiver__decoder_thread
    assert not lazy.is_alive() and lazy.thread not in threading.enumerate()
    remote = receiver.track
    await call.hangup("test")
    assert remote._queue.get_nowait() is None, "the never-started thread still ends the remote track"
    await client.close()


async def test_pcmu_call_starts_it_on_the_first_frame(echo_server):
    client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
    pcmu = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/PCMU"]
    client.pc.getTransceivers()[0].setCodecPreferences(pcmu)
    resp = await client.connect()
    assert "PCMU/8000" in resp.text and "opus" not in resp.text.lower()
    call = await _echo_round_trip(echo_server, client)
    assert call.audio_out.encoder is None, "PCMU: aiortc encodes our frames"
    assert decoder_thread_started(_audio_receiver(call)) is True
    await call.hangup("test")
    assert not _audio_receiver(call)._RTCRtpReceiver__decoder_thread, "aiortc joined and dropped it"
    await client.close()


async def test_opus_complexity_setting_reaches_the_encoder():
    from openrealtime.api.embedded import embedded_server
    from openrealtime.cli import build_parser, settings_from_args
    from tests.support import server_settings

    assert settings_from_args(build_parser().parse_args(["serve", "--opus-complexity", "1"])).opus_complexity == 1
    async with embedded_server(server_settings(engine="echo", opus_complexity=1)) as server:
        client = RealtimeRtcClient(server.url, session={"type": "realtime"})
        await client.connect()
        await client.next_event("session.created")
        enc = server.state.calls.get(client.call_id).audio_out.encoder
        assert enc.get(opus_fec._GET_COMPLEXITY) == 1 and enc.get(opus_fec._GET_INBAND_FEC) == 1
        await client.close()
