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
        "Well, the capital of France is Paris.", "It is large, old and famous for its museums."]
    assert split("Yes, I can help with that, of course. Ask away.")[0] == "Yes, I can help with that,"


def test_first_clause_without_punctuation_is_capped_in_words():
    words = "one two three four five six seven eight nine ten eleven twelve".split()
    clauses = split(" ".join(words) + ".")
    assert clauses[0] == " ".join(words[:FIRST_MAX_WORDS])
    assert " ".join(clauses) == " ".join(words) + "."


def test_markdown_is_not_read_aloud():
    assert speakable("**Paris** is the `capital`.\n- item") == "Paris is the capital. item"
    assert split("# Title\n* one\n* two") == ["Title", "one", "two"]
