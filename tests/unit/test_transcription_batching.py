"""Final transcriptions of several sessions queued at once go to the speech-to-text backend as one batch,
holding the foreground gate, before the partial transcriptions (prefix warm-ups) queued ahead of them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from openrealtime.engines.base import Transcript
from openrealtime.protocol.session import RealtimeSessionConfig
from openrealtime.runtime import Runtime
from openrealtime.runtime_inline import InlineRuntime
from openrealtime.session.conversation import Conversation
from openrealtime.session.transcription import Transcriber

pytestmark = pytest.mark.unit


class CountingSTT:
    """A stand-in Whisper: the transcript says how many samples it heard; records each call."""

    sample_rate = 16000

    def __init__(self, gate) -> None:
        self.gate = gate
        self.calls: list[tuple[str, list[int], bool]] = []

    def _heard(self, audio: np.ndarray) -> Transcript:
        return Transcript(text=f"{audio.size} samples", audio_seconds=audio.size / 16000)

    def transcribe(self, audio, *, language=None, prompt=None, logprobs=False, languages=None) -> Transcript:
        self.calls.append(("one", [audio.size], self.gate.held))
        return self._heard(audio)

    def transcribe_many(self, requests):
        self.calls.append(("many", [r["audio"].size for r in requests], self.gate.held))
        return [self._heard(r["audio"]) for r in requests]


def transcriber(runtime, stt) -> Transcriber:
    config = RealtimeSessionConfig()
    return Transcriber(runtime, SimpleNamespace(stt=stt), Conversation("conv_test", 100, emit=lambda e: None),
                       config=lambda: config, emit=lambda e: None, spawn=asyncio.ensure_future)


def pcm(ms: int) -> bytes:
    return b"\x01\x00" * (24 * ms)  # 24 kHz 16-bit: 16 samples a millisecond once at 16 kHz


async def test_final_transcriptions_queued_together_are_one_batch_before_partials():
    runtime = InlineRuntime()
    stt = CountingSTT(runtime.gate)
    alice, bob = transcriber(runtime, stt), transcriber(runtime, stt)
    runtime.pause("asr")
    partial = asyncio.ensure_future(alice.transcribe(pcm(300), partial=True))
    finals = [asyncio.ensure_future(alice.transcribe(pcm(1000))), asyncio.ensure_future(bob.transcribe(pcm(2000)))]
    await runtime.settle()
    runtime.resume("asr")
    await runtime.settle()
    heard_alice, heard_bob = await asyncio.gather(*finals)
    assert (heard_alice.text, heard_bob.text) == ("16000 samples", "32000 samples")
    assert (await partial).text == "4800 samples"
    assert stt.calls == [("many", [16000, 32000], True), ("one", [4800], False)]


async def test_on_worker_threads_a_final_arriving_while_another_is_decoded_joins_the_next_batch():
    runtime = Runtime()
    stt = CountingSTT(runtime.gate)
    sessions = [transcriber(runtime, stt) for _ in range(3)]
    try:
        results = await asyncio.gather(*(s.transcribe(pcm(100 * (i + 1))) for i, s in enumerate(sessions)))
        assert [r.text for r in results] == ["1600 samples", "3200 samples", "4800 samples"]
        assert sorted(n for _kind, sizes, _held in stt.calls for n in sizes) == [1600, 3200, 4800]
        assert all(kind == "many" and held for kind, _sizes, held in stt.calls)
    finally:
        runtime.close()


async def test_a_backend_without_batches_gets_each_final_transcription_as_its_own_job():
    runtime = InlineRuntime()
    stt = CountingSTT(runtime.gate)
    stt.transcribe_many = None  # e.g. a remote speech-to-text server
    alice, bob = transcriber(runtime, stt), transcriber(runtime, stt)
    runtime.pause("asr")
    finals = [asyncio.ensure_future(alice.transcribe(pcm(1000))), asyncio.ensure_future(bob.transcribe(pcm(500)))]
    await runtime.settle()
    runtime.resume("asr")
    await runtime.settle()
    assert [r.text for r in await asyncio.gather(*finals)] == ["16000 samples", "8000 samples"]
    assert stt.calls == [("one", [16000], True), ("one", [8000], True)]
