"""Scripted stand-ins for models and transports, for sans-network engine tests only.

A user never runs these: the real local models are exercised by tests/models and the
end-to-end tests. Here they make every event sequence deterministic and fast.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from openrealtime.engines.base import ChatRequest, Finished, ModelStack, TextDelta, ToolCallDelta, Transcript
from openrealtime.audio.format import FRAME_BYTES
from openrealtime.media.audio_out import OutboundAudioTrack


class EnergyVad:
    """Probability from frame energy: loud → speech."""

    sample_rate = 16000
    frame_samples = 512

    class _Stream:
        def probability(self, frame: np.ndarray) -> float:
            return 0.95 if float(np.sqrt(np.mean(np.square(frame)))) > 0.02 else 0.02

        def reset(self) -> None:
            pass

    def new_stream(self):
        return self._Stream()


class ScriptedStt:
    sample_rate = 16000

    def __init__(self, text: str = "What is the capital of France?", language: str = "en") -> None:
        self.text = text
        self.language = language  # what it "hears"
        self.calls = 0
        self.prompts: list[str | None] = []
        self.candidates: list[list[str] | None] = []

    def transcribe(self, audio, *, language=None, prompt=None, logprobs=False, languages=None) -> Transcript:
        self.calls += 1
        self.prompts.append(prompt)
        self.candidates.append(languages)
        heard = language or (self.language if not languages or self.language in languages else languages[0])
        words = self.text.split()
        return Transcript(text=self.text, language=heard, audio_seconds=len(audio) / 16000, output_tokens=len(words),
                          logprobs=[{"token": (" " if i else "") + w, "logprob": -0.25, "bytes": list(w.encode())}
                                    for i, w in enumerate(words)] if logprobs else None)


class ScriptedLlm:
    """Replies with the next script entry: a string (text) or a dict (a tool call)."""

    supports_images = False

    def __init__(self, *script: Any, delay: float = 0.0) -> None:
        self.script = list(script) or ["Paris is the capital of France."]
        self.delay = delay
        self.requests: list[ChatRequest] = []

    def stream_chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[Any]:
        self.requests.append(request)
        reply = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(reply, (dict, list)):  # one tool call, or several in one turn
            for index, call in enumerate([reply] if isinstance(reply, dict) else reply):
                yield ToolCallDelta(index=index, call_id="call_test123" + (f"_{index}" if index else ""), name=call["name"], arguments="")
                args = call["arguments"]
                for i in range(0, len(args), 8):
                    yield ToolCallDelta(index=index, arguments=args[i:i + 8])
            yield Finished("tool_calls", input_tokens=40, output_tokens=12)
            return
        words = reply.split(" ")
        for n, word in enumerate(words):
            if cancel.is_set():
                yield Finished("cancelled", input_tokens=30, output_tokens=n)
                return
            if self.delay:
                time.sleep(self.delay)
            yield TextDelta(word if n == 0 else " " + word)
        yield Finished("stop", input_tokens=30, cached_tokens=20, output_tokens=len(words))


class ToneTts:
    """60 ms of tone per word at 24 kHz."""

    sample_rate = 24000

    def synthesize(self, text: str, *, voice: str, speed: float, cancel: threading.Event):
        n = int(0.06 * 24000 * max(1, len(text.split())))
        yield (0.3 * np.sin(np.arange(n) * 2 * np.pi * 220 / 24000)).astype(np.float32)


class ScriptedTurn:
    """An end-of-turn model that answers the next of its scripted probabilities (the last one repeats) and
    records the length of audio each time it is asked."""

    sample_rate = 16000
    window_s = 8.0

    def __init__(self, *probabilities: float) -> None:
        self.probabilities = list(probabilities) or [0.95]
        self.heard_s: list[float] = []

    def completion(self, audio: np.ndarray) -> float:
        self.heard_s.append(len(audio) / self.sample_rate)
        return self.probabilities.pop(0) if len(self.probabilities) > 1 else self.probabilities[0]


class QuietingSuppressor:
    """A noise suppressor that scales its input by `gain` (so a test can tell processed audio from raw),
    with at most `max_streams` streams; it records the settings each stream was opened with."""

    sample_rate = 24000

    class _Stream:
        def __init__(self, owner: "QuietingSuppressor") -> None:
            self.owner = owner

        def process(self, audio: np.ndarray) -> np.ndarray:
            self.owner.processed_s += len(audio) / 24000
            return audio * self.owner.gain

        def close(self) -> None:
            self.owner.live -= 1

    def __init__(self, gain: float = 0.5, max_streams: int = 4) -> None:
        self.gain = gain
        self.max_streams = max_streams
        self.live = 0
        self.opened: list[tuple[float, float]] = []
        self.processed_s = 0.0
        self.bypassed_s = 0.0

    def new_stream(self, *, attenuation_db: float, post_filter: float = 0.0):
        if self.live >= self.max_streams:
            return None
        self.live += 1
        self.opened.append((attenuation_db, post_filter))
        return self._Stream(self)

    def account(self, audio_s: float, cpu_s: float, *, bypassed_s: float = 0.0) -> None:
        self.bypassed_s += bypassed_s


def fake_stack(llm: ScriptedLlm | None = None, stt: ScriptedStt | None = None, turn: ScriptedTurn | None = None,
               denoise: QuietingSuppressor | None = None) -> ModelStack:
    return ModelStack(vad=EnergyVad(), stt=stt or ScriptedStt(), llm=llm or ScriptedLlm(), tts=ToneTts(), turn=turn,
                      denoise=denoise)


class RecordingTransport:
    """Collects server events (as JSON dicts, exactly as they'd go on the wire) and plays audio on demand."""

    kind = "webrtc"

    def __init__(self, webrtc: bool = True) -> None:
        import json

        self._json = json
        self.events: list[dict[str, Any]] = []
        self.audio_out = OutboundAudioTrack() if webrtc else None
        self.closed_reason: str | None = None

    def send_text(self, text: str) -> None:
        self.events.append(self._json.loads(text))

    def close(self, reason: str) -> None:
        self.closed_reason = reason

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    def play(self, frames: int) -> int:
        """Play `frames` × 20 ms of output; returns how many carried audio."""
        voiced = 0
        for _ in range(frames):
            if self.audio_out.next_frame() != bytes(FRAME_BYTES):
                voiced += 1
        return voiced

