"""The echo stack (`--engine echo`): no models; each session plays the caller's audio back after a
delay. For trying the media path (WebRTC, Opus, playout) without loading anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EchoStack:
    loopback_delay_s: float = 0.3
    vad: Any = None
    stt: Any = None
    llm: Any = None
    tts: Any = None
    description: dict[str, str] = field(default_factory=lambda: {"engine": "echo"})
    remote: dict[str, Any] = field(default_factory=dict)
    voices: list[Any] = field(default_factory=list)

    def close(self) -> None:
        pass
