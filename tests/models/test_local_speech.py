"""Whisper (faster-whisper) and Piper TTS round trips, with real models and no mocks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from openrealtime.engines.base import SpeechToText, TextToSpeech
from openrealtime.engines.local.asr import WhisperSTT
from openrealtime.audio.resample import resample
from openrealtime.engines.local.tts import EspeakTTS, PiperTTS
from tests.support.audio import steady_voice

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def tts() -> PiperTTS:
    return PiperTTS()


@pytest.fixture(scope="module")
def whisper() -> WhisperSTT:
    return WhisperSTT("base")


def speak16k(tts, text: str) -> np.ndarray:
    audio = np.concatenate(list(steady_voice(tts).synthesize(text, voice="alloy", speed=1.0, cancel=threading.Event())))
    return resample(audio, tts.sample_rate, 16000)


def words(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum() or c.isspace())


def test_interfaces(tts, whisper):
    assert isinstance(tts, TextToSpeech) and tts.sample_rate == 24000
    assert isinstance(whisper, SpeechToText) and whisper.sample_rate == 16000


def test_asr_transcribes_a_question(tts, whisper):
    audio = speak16k(tts, "What is the capital of France?")
    result = whisper.transcribe(audio)
    assert "capital" in words(result.text) and "france" in words(result.text), result
    assert result.language == "en"
    assert result.audio_seconds == pytest.approx(audio.size / 16000)
    assert result.input_tokens == round(result.audio_seconds * 10)
    assert result.output_tokens > 3


def test_short_turns_take_the_short_path_and_agree_with_the_full_window(tts, whisper, monkeypatch, caplog):
    """A turn under SHORT_AUDIO_S is encoded as speech + cached silence; the words match the
    standard 30 s-window decode, and noise still reads as nothing."""
    import logging

    from openrealtime.engines.local import asr

    audio = speak16k(tts, "How many legs does a spider have?")
    with caplog.at_level(logging.DEBUG, logger=asr.__name__):
        short = whisper.transcribe(audio)
    assert any("short path" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(asr, "SHORT_AUDIO_S", 0.0)
    full = whisper.transcribe(audio)
    # Piper's voice is sampled (a new rendition each run), so a single word may be heard differently
    # by either path ("legs"/"lakes"); the transcripts must otherwise agree
    short_words, full_words = words(short.text).split(), words(full.text).split()
    assert "spider" in short_words and len(short_words) == len(full_words), (short, full)
    assert sum(a != b for a, b in zip(short_words, full_words)) <= 1, (short, full)
    monkeypatch.undo()
    noise = np.random.default_rng(1).standard_normal(32000).astype(np.float32) * 0.05
    assert whisper.transcribe(noise).text == ""


def test_turns_transcribed_in_one_batch_each_get_their_own_words(tts, whisper, caplog):
    """Two sessions' turns that ended at once: one encode and one decode over both (different lengths),
    each transcript has its own words, as when transcribed alone; a clip too short to read stays empty."""
    import logging

    from openrealtime.engines.local import asr

    spider = speak16k(tts, "How many legs does a spider have?")
    weather = speak16k(tts, "Tell me about the weather in Paris tomorrow morning, please.")
    with caplog.at_level(logging.DEBUG, logger=asr.__name__):
        first, second, tiny = whisper.transcribe_many(
            [{"audio": spider}, {"audio": weather, "logprobs": True}, {"audio": np.zeros(800, dtype=np.float32)}])
    assert "spider" in words(first.text) and "legs" in words(first.text) and "paris" not in words(first.text), first
    assert "weather" in words(second.text) and "paris" in words(second.text) and "spider" not in words(second.text)
    assert any("2 in the batch" in r.getMessage() for r in caplog.records)
    assert first.logprobs is None and len(second.logprobs) == second.output_tokens
    assert tiny.text == "" and first.audio_seconds == pytest.approx(spider.size / 16000)
    # as when transcribed alone: the same words, give or take one (a batch pads the shorter clip, so a
    # greedy decode may differ in an article: "a spider" / "the spider", seen on a clean-clone run)
    for batched, alone in ((first, whisper.transcribe(spider)), (second, whisper.transcribe(weather))):
        a, b = words(batched.text).split(), words(alone.text).split()
        assert len(set(a) ^ set(b)) <= 2 and abs(len(a) - len(b)) <= 1, (batched.text, alone.text)


def test_asr_logprobs_cover_the_transcript(tts, whisper):
    audio = speak16k(tts, "What is the capital of France?")
    result = whisper.transcribe(audio, logprobs=True)
    assert result.logprobs and "".join(lp["token"] for lp in result.logprobs).strip() == result.text
    assert all(lp["logprob"] <= 0 for lp in result.logprobs)
    assert sum(lp["logprob"] for lp in result.logprobs) / len(result.logprobs) > -1.0  # clear speech: confident
    assert all(bytes(lp["bytes"]).decode() == lp["token"] for lp in result.logprobs)
    assert whisper.transcribe(audio).logprobs is None


def test_long_audio_takes_the_standard_path(tts, whisper, caplog):
    import logging

    from openrealtime.engines.local import asr

    sentence = speak16k(tts, "The capital of France is Paris.")
    gap = np.zeros(16000, np.float32)
    audio = np.concatenate([sentence, gap] * int(np.ceil((asr.SHORT_AUDIO_S + 1) * 16000 / (sentence.size + gap.size))))
    assert audio.size / 16000 > asr.SHORT_AUDIO_S
    with caplog.at_level(logging.DEBUG, logger=asr.__name__):
        result = whisper.transcribe(audio)
    assert not any("short path" in r.getMessage() for r in caplog.records)
    assert "paris" in words(result.text), result


def test_asr_returns_nothing_for_silence_and_tiny_clips(whisper):
    assert whisper.transcribe(np.zeros(16000, np.float32)).text == ""
    short = whisper.transcribe(np.zeros(800, np.float32))
    assert short.text == "" and short.audio_seconds == pytest.approx(0.05)


def test_tts_is_chunked_non_silent_24k_speech_that_whisper_understands(tts, whisper):
    text = "The weather in Paris is sunny today, with a gentle breeze. Enjoy your walk along the river."
    chunks = list(tts.synthesize(text, voice="alloy", speed=1.0, cancel=threading.Event()))
    assert len(chunks) >= 2  # yielded per clause group, not the whole text at once
    for chunk in chunks:
        assert chunk.dtype == np.float32 and chunk.ndim == 1
        assert np.abs(chunk).max() <= 1.0
    audio = np.concatenate(chunks)
    seconds = audio.size / tts.sample_rate
    assert 3.0 < seconds < 10.0
    assert np.sqrt(np.mean(audio**2)) > 0.02  # clearly not silence
    heard = words(whisper.transcribe(resample(audio, 24000, 16000)).text)
    # Piper samples noise (noise_scale, noise_w), so allow one misheard key word in a rare run
    found = [w for w in ("weather", "paris", "sunny", "breeze", "river") if w in heard]
    assert len(found) >= 4, heard


def test_tts_speed_changes_duration(tts):
    normal = sum(c.size for c in tts.synthesize("One two three four five.", voice="", speed=1.0, cancel=None))
    fast = sum(c.size for c in tts.synthesize("One two three four five.", voice="", speed=1.5, cancel=None))
    assert fast < normal * 0.8


def test_tts_cancel_stops_between_chunks(tts):
    cancel = threading.Event()
    produced = []
    for chunk in tts.synthesize("First clause here, second clause there. Third sentence follows. And a fourth one.",
                                voice="", speed=1.0, cancel=cancel):
        produced.append(chunk)
        cancel.set()
    assert len(produced) == 1
    cancel = threading.Event()
    cancel.set()
    assert list(tts.synthesize("Never spoken.", voice="", speed=1.0, cancel=cancel)) == []


def test_tts_ignores_markup_and_empty_text(tts):
    assert list(tts.synthesize("  ** ", voice="", speed=1.0, cancel=None)) == []
    audio = np.concatenate(list(tts.synthesize("**Hello** `there`.", voice="", speed=1.0, cancel=None)))
    assert audio.size > 0.3 * tts.sample_rate


def test_espeak_fallback_voice(whisper):
    fallback = EspeakTTS()
    assert fallback.sample_rate == 24000
    audio = np.concatenate(list(fallback.synthesize("Good morning, my friend.", voice="", speed=1.0, cancel=None)))
    assert 0.8 < audio.size / 24000 < 4 and np.abs(audio).max() > 0.1


def test_languages_limit_detection_to_the_candidates(tts, whisper):
    """`transcription.languages` (2026): without `language`, Whisper picks among the candidates only — English
    speech with English among them is English; without English, it is one of the candidates."""
    audio = speak16k(tts, "What is the capital of France?")
    assert whisper.transcribe(audio, languages=["de", "en"]).language == "en"
    forced = whisper.transcribe(audio, languages=["de", "fr"])
    assert forced.language in ("de", "fr"), forced
    assert whisper.transcribe(audio, languages=["en-US"]).language == "en"  # one candidate is the language


def test_keywords_bias_the_transcript_towards_them(tts, whisper):
    """`transcription.keywords` reach Whisper as its prompt's keyword list (session/transcription.py)."""
    from openrealtime.session.transcription import whisper_prompt

    # Piper draws noise for every synthesis (a CI run's clip was heard "a table equipped by" even with the
    # keyword); without it the clip is the same every run: unbiased "a quick bite", biased "at Kwik Byte".
    audio = speak16k(steady_voice(tts), "Please book a table at Kwik Byte.")
    unbiased = words(whisper.transcribe(audio).text)
    biased = words(whisper.transcribe(audio, prompt=whisper_prompt(None, ["Kwik Byte"])).text)
    assert "kwik byte" not in unbiased, unbiased
    assert "kwik byte" in biased, (biased, unbiased)
