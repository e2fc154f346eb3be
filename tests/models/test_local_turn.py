"""Smart Turn v3.2 on real speech (the server's Piper voice): finished questions and commands score as
complete, speech that stops mid-thought as incomplete; the log-mel front end is Whisper's."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from openrealtime.audio.resample import resample
from openrealtime.engines.base import EndOfTurnModel
from openrealtime.engines.local.log_mel import WhisperLogMel, mel_filterbank
from openrealtime.engines.local.smart_turn import SmartTurn
from openrealtime.engines.local.tts import PiperTTS

pytestmark = pytest.mark.models

PAUSE_S = 0.2  # what the detector has heard of the pause when it first asks (EAGERNESS: 160-200 ms)


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    return SmartTurn()


@pytest.fixture(scope="module")
def say():
    voice = PiperTTS(threads=1)
    voice.noise_scale = voice.noise_w = 0.0  # the same speech on every run

    def spoken(text: str) -> np.ndarray:
        audio = resample(np.concatenate(list(voice.synthesize(text, cancel=threading.Event()))), 24000, 16000)
        voiced = np.flatnonzero(np.abs(audio) > 0.01)
        return np.concatenate([np.zeros(4800, np.float32), audio[voiced[0]:voiced[-1] + 1],
                               np.zeros(int(PAUSE_S * 16000), np.float32)])

    return spoken


def test_finished_turns_score_complete_and_cut_ones_incomplete(model, say):
    assert isinstance(model, EndOfTurnModel)
    complete = [model.completion(say(text)) for text in (
        "What is the capital of France?", "Turn off the lights in the kitchen.",
        "How many tablespoons are there in a cup of flour?")]
    cut = [model.completion(say(text)) for text in (
        "Can you tell me the weather in,", "So I was thinking that maybe we could, um,",
        "I'd like to order a large pizza with, um,")]
    assert min(complete) >= 0.8, complete
    assert max(cut) <= 0.2, cut


def test_short_and_long_audio_use_the_last_eight_seconds(model, say):
    question = say("What is the capital of France?")
    long = np.concatenate([say("I'd like to order a large pizza with, um,")] * 4 + [question])
    assert long.size > 8 * 16000
    assert model.completion(long) == model.completion(long[-8 * 16000:])
    assert 0.0 <= model.completion(np.zeros(1600, np.float32)) <= 1.0


def test_log_mel_is_whispers():
    filters = mel_filterbank()
    assert filters.shape == (201, 80)
    assert np.all(filters.max(axis=0) > 0) and np.all(filters >= 0)
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000 * 8) / 16000).astype(np.float32)
    features = WhisperLogMel().features(tone)
    assert features.shape == (80, 800) and features.dtype == np.float32
    hz_bins = np.argmax(features[:, 400])
    centre = np.argmax(filters[round(1000 / 40)])  # the band whose filter weighs 1 kHz most
    assert hz_bins == centre, (hz_bins, centre)
    assert features.min() >= features.max() - 2.0 - 1e-6, "clamped to 8 log10 units below the peak, then / 4"
