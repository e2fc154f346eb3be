"""Silero VAD v6 on onnxruntime: speech vs silence, per-stream state."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from openrealtime.engines.base import VoiceActivityDetector
from openrealtime.audio.resample import resample
from openrealtime.engines.local.tts import decode_wav, espeak_binary
from openrealtime.engines.local.vad import SileroVad

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


@pytest.fixture(scope="module")
def speech16k() -> np.ndarray:
    wav = subprocess.run([espeak_binary(), "-v", "en-us", "--stdout", "The quick brown fox jumps over the lazy dog."],
                         capture_output=True, check=True).stdout
    speech = decode_wav(wav, 16000)
    pad = np.zeros(8000, np.float32)
    return np.concatenate([pad, speech, pad])


def probabilities(stream, audio: np.ndarray, frame: int = 512) -> np.ndarray:
    return np.array([stream.probability(audio[i:i + frame]) for i in range(0, audio.size - frame + 1, frame)])


def test_implements_the_interface(vad):
    assert isinstance(vad, VoiceActivityDetector)
    assert (vad.sample_rate, vad.frame_samples) == (16000, 512)


def test_speech_is_detected_and_silence_is_not(vad, speech16k):
    probs = probabilities(vad.new_stream(), speech16k)
    lead = probs[:10]  # the first 320 ms are silence
    assert lead.max() < 0.2, lead
    assert np.mean(probs > 0.5) > 0.4  # most of the sentence is speech
    assert probs.max() > 0.9
    silence = probabilities(vad.new_stream(), np.zeros(16000, np.float32))
    assert silence.max() < 0.1
    rng = np.random.default_rng(0)
    hiss = probabilities(vad.new_stream(), (rng.standard_normal(16000) * 0.01).astype(np.float32))
    assert hiss.max() < 0.5


def test_streams_are_independent_and_resettable(vad, speech16k):
    a, b = vad.new_stream(), vad.new_stream()
    expected = probabilities(vad.new_stream(), speech16k)
    frames = range(0, speech16k.size - 511, 512)
    got_a = []
    for i in frames:  # interleave a second stream fed with silence
        got_a.append(a.probability(speech16k[i:i + 512]))
        b.probability(np.zeros(512, np.float32))
    np.testing.assert_allclose(got_a, expected, atol=1e-5)
    a.reset()
    np.testing.assert_allclose(probabilities(a, speech16k), expected, atol=1e-5)


def test_wrong_frame_size_is_rejected(vad):
    with pytest.raises(ValueError, match="512"):
        vad.new_stream().probability(np.zeros(480, np.float32))


def test_resampled_input_matches_native_rate_roughly(vad, speech16k):
    # 24 kHz session audio resampled to 16 kHz must look like speech too
    up = resample(speech16k, 16000, 24000)
    back = resample(up, 24000, 16000)
    probs = probabilities(vad.new_stream(), back)
    assert probs.max() > 0.9
