"""Streaming text → speakable clauses for TTS."""

from openrealtime.session.clauses import FIRST_MAX_WORDS, FIRST_WORDS, ClauseSplitter, speakable


def split(text: str, step: int = 3) -> list[str]:
    splitter = ClauseSplitter()
    out: list[str] = []
    for i in range(0, len(text), step):
        out += splitter.push(text[i:i + step])
    return out + splitter.flush()


def test_first_clause_is_early_and_later_ones_are_sentences():
    assert split("Well, the capital of France is Paris. It is large, old and famous for its museums.") == [
        "Well, the capital", "of France is Paris.", "It is large, old and famous for its museums."]
    assert split("Sure thing, I can help with that, of course. Ask away.")[0] == "Sure thing,"
    assert split("Paris. It is large.") == ["Paris.", "It is large."]


def test_first_clause_without_punctuation_is_capped_in_words():
    words = "one two three four five six seven eight nine ten eleven twelve".split()
    clauses = split(" ".join(words) + ".")
    assert clauses[0] == " ".join(words[:FIRST_WORDS])
    assert " ".join(clauses) == " ".join(words) + "."
    # function words do not end it, up to the cap
    assert split("The capital of France is Paris.") == ["The capital of France", "is Paris."]
    assert split("There are 7 days in a week.") == ["There are 7", "days in a week."]
    assert split("I am not sure that it is.")[0] == "I am not sure"
    assert split("it is that it is what it is.")[0] == " ".join("it is that it is".split()[:FIRST_MAX_WORDS])


def test_first_clause_goes_out_as_soon_as_its_last_word_is_complete():
    splitter = ClauseSplitter()
    # LLM tokens carry the space before a word: "France" is complete once " is" arrives
    assert [splitter.push(t) for t in ["The", " capital", " of", " France"]] == [[], [], [], []]
    assert splitter.push(" is") == ["The capital of France"]
    assert splitter.push(" Paris") == []
    # a sentence end goes out with its "." (not one token later, when the next word shows it)
    assert splitter.push(".") == ["is Paris."] and splitter.flush() == []


def feed(tokens: list[str]) -> list[list[str]]:
    splitter = ClauseSplitter()
    return [splitter.push(t) for t in tokens] + [splitter.flush()]


def test_a_final_dot_waits_when_the_sentence_may_go_on():
    assert feed(["Paris", "."]) == [[], ["Paris."], []]
    assert feed(["Really", "?"]) == [[], ["Really?"], []]
    assert feed(["Blue", ".\""]) == [[], ['Blue."'], []]
    # numbers ("3." → "3.5"), abbreviations, initials and dotted abbreviations wait for the next token
    assert feed(["It", " is", " 3", ".", "5", " metres", "."]) == [[], [], [], [], [], ["It is 3.5"], ["metres."], []]
    assert feed(["Ask", " Dr", ".", " Smith", "."])[2:4] == [[], []]
    assert feed(["J", ".", " Smith", " wrote", " it", "."])[1] == []
    assert feed(["For", " e", ".g", ".", " this"])[3] == []
    assert split("Ask Dr. Smith about it. He knows.") == ["Ask Dr. Smith", "about it.", "He knows."]
    assert split("So do I. Yes.") == ["So do I.", "Yes."]
    assert split("There are 7. Count them.") == ["There are 7.", "Count them."]
    assert feed(["No", "."]) == [[], ["No."], []]
    # punctuation alone is nothing to speak
    assert feed(["Paris", ".", "\"", "\n"]) == [[], ["Paris."], [], [], []]


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
