"""The Japanese voice (Kokoro, engines/local/kokoro.py) costs nothing until a sentence needs it: the stack
holds a LazyKokoro whose voice names come from its styles file, and the model loads on the first sentence."""

import threading

import numpy as np
import pytest

from openrealtime.engines.local import kokoro

pytestmark = pytest.mark.models


def test_the_japanese_voice_loads_on_its_first_sentence():
    voice = kokoro.LazyKokoro(threads=1)
    assert voice.languages == ("ja",) and not voice.loaded
    assert "jf_alpha" in voice.voice_ids() and not voice.loaded
    audio = np.concatenate(list(voice.synthesize("こんにちは。", voice="jf_alpha", cancel=threading.Event())))
    assert voice.loaded and audio.size > voice.sample_rate // 4 and np.abs(audio).max() > 0.05
