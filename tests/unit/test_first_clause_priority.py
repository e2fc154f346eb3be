"""Two sessions on one runtime: a reply's first clause is synthesized before another session's later
clauses already queued in the tts stage, and each reply's own clauses are spoken in order."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from openrealtime.engines.stack import ModelStack
from openrealtime.protocol.session import parse_session_config
from openrealtime.runtime_inline import InlineRuntime
from openrealtime.session.engine import SessionEngine
from tests.support import RecordingTransport, ScriptedLlm
from tests.support.fakes import EnergyVad, ScriptedStt

pytestmark = pytest.mark.unit


class RecordingTts:
    """One short chunk per clause; records which clause each synthesis produced, in order."""

    sample_rate = 24000

    def __init__(self) -> None:
        self.spoken: list[str] = []

    def synthesize(self, text: str, *, voice: str, speed: float, cancel: threading.Event):
        self.spoken.append(text.strip())
        yield np.full(2400, 0.2, dtype=np.float32)


def session(runtime: InlineRuntime, tts: RecordingTts, answer: str) -> tuple[SessionEngine, RecordingTransport]:
    transport = RecordingTransport()
    models = ModelStack(vad=EnergyVad(), stt=ScriptedStt(), llm=ScriptedLlm(answer), tts=tts, turn=None, denoise=None)
    engine = SessionEngine(transport, parse_session_config({"type": "realtime"}), models=models, runtime=runtime)
    engine.start()
    return engine, transport


def ask(engine: SessionEngine, text: str) -> None:
    engine.handle_message(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))
    engine.handle_message(json.dumps({"type": "response.create"}))


async def test_a_first_clause_goes_before_another_sessions_later_clauses():
    runtime, tts = InlineRuntime(), RecordingTts()
    alice, alice_t = session(runtime, tts, "One fish swims here. Two fish swim there. Red fish are big. Blue fish "
                                           "are small.")
    bob, bob_t = session(runtime, tts, "Hello Bob, nice to hear you. How can I help?")
    runtime.pause("tts", after=2)  # alice's first clause (its chunk, then the end of the stream)
    ask(alice, "Tell me about fish.")
    await runtime.settle()
    assert tts.spoken == ["One fish swims here."]  # her second clause waits in the stage
    ask(bob, "Hi there.")
    await runtime.settle()  # bob's first clause queued behind it
    runtime.resume("tts")
    await runtime.settle()
    assert tts.spoken[:3] == ["One fish swims here.", "Hello Bob,", "Two fish swim there."]
    assert [c for c in tts.spoken if "fish" in c] == ["One fish swims here.", "Two fish swim there.",
                                                      "Red fish are big.", "Blue fish are small."]
    assert [c for c in tts.spoken if "fish" not in c] == ["Hello Bob,", "nice to hear you.", "How can I help?"]
    assert alice_t.of("response.done") and bob_t.of("response.done")
