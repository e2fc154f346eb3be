"""Streaming text → speakable clauses for TTS."""

from openrealtime.session.clauses import FIRST_MAX_WORDS, ClauseSplitter, speakable


def split(text: str, step: int = 3) -> list[str]:
    splitter = ClauseSplitter()
    out: list[str] = []
    for i in range(0, len(text), step):
        out += splitter.push(text[i:i + step])
    return out + splitter.flush()


def test_first_clause_is_early_and_later_ones_are_sentences():
    assert split("Well, the capital of France is Paris. It is large, old and famous for its museums.") == [
        "Well, the capital of", "France is Paris.", "It is large, old and famous for its museums."]
    assert split("Sure thing, I can help with that, of course. Ask away.")[0] == "Sure thing,"
    assert split("Paris. It is large.") == ["Paris.", "It is large."]


def test_first_clause_without_punctuation_is_capped_in_words():
    words = "one two three four five six seven eight nine ten eleven twelve".split()
    clauses = split(" ".join(words) + ".")
    assert clauses[0] == " ".join(words[:FIRST_MAX_WORDS])
    assert " ".join(clauses) == " ".join(words) + "."


def test_markdown_is_not_read_aloud():
    assert speakable("**Paris** is the `capital`.\n- item") == "Paris is the capital. item"
    assert split("# Title\n* one\n* two") == ["Title", "one", "two"]


def test_first_audio_starts_at_the_voice():
    import numpy as np

    from openrealtime.session.response import trim_leading_silence

    audio = np.concatenate([np.zeros(1200, np.float32), np.full(100, 0.5, np.float32)])
    trimmed = trim_leading_silence(audio, 24000)
    assert trimmed.size == 100 + 240 and trimmed[-1] == 0.5
    assert trim_leading_silence(np.zeros(50, np.float32), 24000).size == 50
