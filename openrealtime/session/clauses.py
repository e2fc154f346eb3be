"""Split streaming LLM text into clauses for speech synthesis.

The first clause is released as early as it can be spoken naturally (a comma or sentence
end after a few words; without punctuation, after FIRST_WORDS words unless the last of them is a
function word like "of" or "is", and after FIRST_MAX_WORDS words at the latest) so the first audio
starts while the LLM is still writing; later clauses are whole sentences, or long comma-separated
phrases. Markdown that would be read aloud (`*`, `#`, backticks, list bullets) is removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..engines.base import TextDelta
from ..engines.foreground import ForegroundGate

_SENTENCE_END = re.compile(r"[.!?…](?:[\"')\]]*)(?=\s)|[;:](?=\s)|\n+")
# A sentence end at the very end of the text so far: the word before it, and its punctuation.
_FINAL_END = re.compile(r"(\S*?)([.!?…]+)[\"')\]]*$")
# Words whose "." does not end a sentence (the next token could go on: "Dr. Smith", "Mr. Lee").
_ABBREVIATIONS = frozenset("""
mr mrs ms dr st jr sr vs etc prof inc ltd co mt ft vol fig approx dept est gen col sgt lt capt rev
""".split())
_COMMA = re.compile(r",(?=\s)")
_MARKDOWN = re.compile(r"[*_#`~]+|^\s*[-•]\s+|^\s*\d+\.\s+", re.MULTILINE)

FIRST_MIN_WORDS = 2  # a comma after this many words ends the first clause
# Without punctuation, the first clause goes to TTS after FIRST_WORDS complete words (a word is
# complete once the next one starts), or more while the last is a function word, so the seam
# between the first two clips falls after a content word ("The capital of France / is Paris.",
# "There are 7 / days in a week."). On a 2-core CPU a 1.5B model writes ≈ 7-12 tokens/s in a
# call: every word held back here delays the first sound by ≈ 0.1 s.
FIRST_WORDS = 3
FIRST_MAX_WORDS = 5
_FUNCTION_WORDS = frozenset("""
a an the of to in on at for with by from into about as than and or but nor so if
is are was were be been am do does did has have had can could will would shall should may might must
i you he she it we they me him her us them my your his its our their this that these those
not no very just there here what which who when where how
""".split())
LATER_COMMA_CHARS = 60
MAX_CLAUSE_CHARS = 220
FIRST_MAX_CHARS = 90


def speakable(text: str) -> str:
    return re.sub(r"\s+", " ", _MARKDOWN.sub("", text)).strip()


_WORD = re.compile(r"\w")


def _abbreviation(word: str) -> bool:
    """A word whose "." need not end the sentence: "Dr.", "Mr.", an initial ("J."), "e.g."."""
    word = word.strip("\"'([").lower()
    initial = len(word) == 1 and word.isalpha() and word != "i"
    return initial or "." in word or word in _ABBREVIATIONS


def _ends_sentence(text: str) -> bool:
    """Whether the text so far ends a sentence, before the next token shows it (saves one token:
    "Paris." goes to TTS without waiting for what the model writes next). "?", "!" and "…" do;
    a single "." does after a word that is not an abbreviation or a number ("3." may go on as
    "3.5")."""
    m = _FINAL_END.search(text)
    if m is None or not _WORD.search(text[: m.start(2)]):
        return False
    if m.group(2).strip("."):
        return True  # "?", "!", "…" (with or without dots)
    word = m.group(1)
    return m.group(2) == "." and not _abbreviation(word) and word.strip("\"'([").isalpha()


class ClauseSplitter:
    def __init__(self) -> None:
        self._buf = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        self._buf += delta
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            clause, self._buf = self._buf[:cut], self._buf[cut:]
            clause = speakable(clause)
            if _WORD.search(clause):
                out.append(clause)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        clause, self._buf = speakable(self._buf), ""
        return [clause] if _WORD.search(clause) else []

    def _find_cut(self) -> int | None:
        buf = self._buf
        for m in _SENTENCE_END.finditer(buf):
            before = buf[: m.start()].split()
            if m.group().startswith(".") and _abbreviation(before[-1] if before else ""):
                continue  # "Dr. Smith"
            return m.end()
        if _ends_sentence(buf):
            return len(buf)
        if self._emitted == 0:
            for c in _COMMA.finditer(buf):
                if len(buf[: c.end()].split()) >= FIRST_MIN_WORDS:
                    return c.end()
            words = list(re.finditer(r"\S+\s", buf))  # complete words: the next one has started
            for count in range(FIRST_WORDS, min(len(words), FIRST_MAX_WORDS) + 1):
                last = words[count - 1].group().strip().strip("\"'()[]").lower()
                if count == FIRST_MAX_WORDS or last not in _FUNCTION_WORDS:
                    return words[count - 1].end()
        else:
            for c in _COMMA.finditer(buf):
                if c.end() >= LATER_COMMA_CHARS:
                    return c.end()
        limit = FIRST_MAX_CHARS if self._emitted == 0 else MAX_CLAUSE_CHARS
        if len(buf) > limit:
            space = buf.rfind(" ", 0, limit)
            return space if space > 0 else limit
        return None


def announcing_first_clause(deltas: Iterator[Any], gate: ForegroundGate, spoken: bool = True) -> Iterator[Any]:
    """Model deltas as they come; runs in the model's thread and, for a `spoken` answer, on the
    delta that completes the first clause tells the foreground gate that its synthesis is about
    to start, so the model waits for it before the next token instead of competing with it
    (engines/foreground.py)."""
    splitter: ClauseSplitter | None = ClauseSplitter() if spoken else None
    for delta in deltas:
        if splitter is not None and isinstance(delta, TextDelta) and splitter.push(delta.text):
            gate.expect()
            splitter = None
        yield delta
