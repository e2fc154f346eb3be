"""DeepFilterNet3 through its C runtime: the noise floor drops by its attenuation limit, speech stays,
streams are pooled and bounded."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from openrealtime.engines.base import NoiseSuppressor
from openrealtime.engines.local.deepfilter import DeepFilterNet
from openrealtime.engines.local.tts import PiperTTS

pytestmark = pytest.mark.models

RATE = 24000


@pytest.fixture(scope="module")
def suppressor() -> DeepFilterNet:
    df = DeepFilterNet(max_streams=2, keep_idle=1)
    yield df
    df.close()


def pink(n: int, seed: int = 0) -> np.ndarray:
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(0, 1, n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    noise = np.fft.irfft(spectrum, n)
    return (noise / np.sqrt(np.mean(noise ** 2))).astype(np.float32)


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def test_noise_floor_drops_and_speech_stays(suppressor):
    assert isinstance(suppressor, NoiseSuppressor)
    voice = PiperTTS(threads=1)
    voice.noise_scale = voice.noise_w = 0.0
    speech = np.concatenate(list(voice.synthesize("What is the capital of France?", cancel=threading.Event())))
    clean = np.concatenate([np.zeros(2 * RATE, np.float32), speech, np.zeros(RATE // 2, np.float32)])
    noise = pink(clean.size) * 10 ** ((db(speech) - 5) / 20)  # 5 dB SNR
    stream = suppressor.new_stream(attenuation_db=24)
    out = np.concatenate([stream.process(chunk) for chunk in np.array_split(clean + noise, clean.size // 480)])
    stream.close()
    assert abs(out.size - clean.size) < 480
    quiet = slice(RATE // 2, 2 * RATE - RATE // 10)  # noise only (after the first half second)
    drop = db((clean + noise)[quiet]) - db(out[quiet])
    assert 20 <= drop <= 26, f"noise floor -{drop:.1f} dB with a 24 dB limit"
    voiced = slice(2 * RATE + RATE // 10, 2 * RATE + speech.size)
    assert abs(db(out[voiced]) - db(speech[RATE // 10:])) < 3, "the speech keeps its level"


def test_streams_are_pooled_and_bounded(suppressor):
    a = suppressor.new_stream(attenuation_db=24)
    b = suppressor.new_stream(attenuation_db=24)
    assert a is not None and b is not None and suppressor.new_stream(attenuation_db=24) is None
    before = suppressor.stats()
    assert before["streams"] == 2 and before["streams_refused"] >= 1
    a.process(np.zeros(RATE, np.float32))
    after = suppressor.stats()
    assert after["audio_seconds"] - before["audio_seconds"] == pytest.approx(1.0)
    assert after["cpu_seconds"] > before["cpu_seconds"]
    a.close()
    b.close()
    assert suppressor.stats()["streams"] == 0
    with pytest.raises(RuntimeError, match="closed"):
        a.process(np.zeros(480, np.float32))
