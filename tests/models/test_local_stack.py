"""`load_model_stack`: profiles, warm-up, progress, and one spoken round trip through all four stages."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from openrealtime.engines.base import ChatRequest, Finished, ModelStack, TextDelta
from openrealtime.audio.resample import resample
from openrealtime.engines.stack import PROFILES, TEST_LLM, load_model_stack, resolve_profile

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def loaded():
    messages: list[tuple[str, str]] = []
    stack = load_model_stack("test", progress=lambda stage, message: messages.append((stage, message)))
    yield stack, messages
    stack.close()


def test_profiles_and_overrides():
    assert set(PROFILES) >= {"default", "fast", "test"}
    assert resolve_profile("default").llm == "qwen2.5-1.5b"
    assert resolve_profile("default", llm=TEST_LLM).llm == "smollm2-135m"
    with pytest.raises(ValueError, match="default"):
        resolve_profile("nope")
    with pytest.raises(FileNotFoundError):
        resolve_profile("default", llm_path="/nonexistent/model.gguf")


def test_stack_is_described_and_progress_was_reported(loaded):
    stack, messages = loaded
    assert isinstance(stack, ModelStack)
    assert stack.description["profile"] == "test"
    for stage in ("vad", "stt", "llm", "tts"):
        assert stack.description[stage]
        assert any(s == stage for s, _ in messages), stage
    assert messages[-1][0] == "stack" and "ready" in messages[-1][1]


def test_spoken_round_trip_through_all_stages(loaded):
    stack, _ = loaded
    never = threading.Event()
    spoken = np.concatenate(list(stack.tts.synthesize("What is the capital of France?", voice="alloy",
                                                      speed=1.0, cancel=never)))
    audio16 = resample(spoken, stack.tts.sample_rate, 16000)
    stream = stack.vad.new_stream()
    probs = [stream.probability(audio16[i:i + 512]) for i in range(0, audio16.size - 511, 512)]
    assert max(probs) > 0.8
    heard = stack.stt.transcribe(audio16).text
    assert "capital" in heard.lower()
    events = list(stack.llm.stream_chat(ChatRequest(messages=[{"role": "user", "content": heard}], max_tokens=12), never))
    assert isinstance(events[-1], Finished)
    reply = "".join(e.text for e in events if isinstance(e, TextDelta)) or "Hello."
    chunks = list(stack.tts.synthesize(reply, voice="alloy", speed=1.0, cancel=never))
    assert chunks and all(c.dtype == np.float32 for c in chunks)
