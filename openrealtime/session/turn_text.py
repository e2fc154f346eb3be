"""What the words of a turn say about whether it is over.

`ends_mid_sentence(text)`: the transcript stops where a sentence cannot end — on an article, a
preposition, a conjunction, an auxiliary or modal verb, a possessive, or a hesitation ("I'd like a large
pizza with", "my favourite colour is", "so maybe we could, um"). Whisper ends nearly everything with a
full stop and drops most fillers, so punctuation says little; the last word says a lot. Used by
semantic turn detection (turn_detection.py) beside the end-of-turn model, which hears prosody but is
sometimes fooled by a pause after a function word.

`last_word_confidence(logprobs)`: how sure the transcriber was of the transcript's last word and the
punctuation after it (the lowest probability among their tokens). Whisper finishes a sentence that stops
mid-way with a likely word it did not hear ("…a large pizza with" → "…with it.", "about the" → "about
them.", "my favourite colour is" → "my favorite colors."), and gives that word and the full stop after it a
low probability (0.25-0.6, measured in bench/turn_taking.py's paused set) where words it heard score
0.6-0.99: finished-looking words are only believed when it was sure of them.
`continuing_alternative(logprobs)`: the probability it gave, in the last word's place, to words a sentence
does not end on ("to them." where it also heard "to the": 0.24-0.45; 0.00-0.02 for finished questions).

`takes_the_turn(text)`: a short sound while the agent speaks is an interruption ("wait", "stop", or four
words and more), not a listener's "mm-hm", "yeah", "okay" or a cough (barge_in.py lets the agent go on).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

_WORD = re.compile(r"[a-z']+")
_TRAILING = re.compile(r"(\.\.\.|…|,|-|—|–)\s*$")

# words a sentence does not end on (English); "you", "it", "me" and the like are left out: they end
# plenty of complete turns ("thank you", "I'll take it", "tell me")
CONTINUING = frozenset("""
a an the this these those
my your his her its our their
to of in on at for with from by about into onto over under between through during without within
toward towards upon than as like via per
and or but nor so because although though if unless while whereas whether that which who whom whose
where when
is are was were am be been being do does did have has had
can could will would shall should may might must
i we they he she
um uh er erm ah hmm mm
""".split())
HESITATIONS = frozenset({"um", "uh", "er", "erm", "ah", "hmm", "mm"})
# what a listener says to show they follow, without taking the turn (and what Whisper writes for a cough,
# a breath or a noise: nothing, a bracketed note, or its favourite hallucination, "Thank you.")
BACKCHANNELS = frozenset("""
mm mmm mhm mmhm hm hmm uh huh um ah oh ooh aha yeah yea yes yep yup ya ok okay kay right
sure alright all i see got it cool nice great wow true totally exactly indeed really thank thanks you
""".split())
# words that take the turn even in a short utterance ("Wait!", "Stop.", "Sorry, no")
INTERRUPTING = frozenset("""
stop wait hold hang no nope sorry excuse actually but hey listen pause repeat again cancel enough quiet shut
""".split())
_PUNCTUATION = re.compile(r"^[\s.,!?;:…\"'()\-–—¿¡]*$")
_NOTE = re.compile(r"[\[(*][^\])*]*[\])*]")


def takes_the_turn(text: str) -> bool:
    """Whether a short utterance heard while the agent speaks is an interruption: it says "wait", "stop",
    "sorry" and the like, or more words than a listener's murmur (Whisper turns a murmur into one to three
    words of something: "mm-hmm" came back as "In my mom.")."""
    words = [w.strip("'") for w in _WORD.findall(_NOTE.sub(" ", text.lower()))]
    if any(w in INTERRUPTING for w in words):
        return True
    return len([w for w in words if w not in BACKCHANNELS]) >= 4


def last_word(text: str) -> str | None:
    words = _WORD.findall(text.lower())
    return words[-1] if words else None


def ends_mid_sentence(text: str) -> bool:
    """Whether the transcript of a turn so far stops where a sentence cannot end (see the module doc)."""
    stripped = text.strip()
    if not stripped:
        return False
    if _TRAILING.search(stripped):  # "with..." / "with," / "with -": cut off, not finished
        return True
    word = last_word(stripped)
    return word is not None and word in CONTINUING


def _last_word(logprobs: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(index of the last word's first token, index of the first token of the punctuation after it)."""
    end = len(logprobs)
    while end > 0 and _PUNCTUATION.match(str(logprobs[end - 1]["token"])):  # the full stop, "?", "..."
        end -= 1
    start = end
    while start > 0:  # the word's pieces, back to the one that starts it (a leading space, or the first)
        start -= 1
        piece = str(logprobs[start]["token"])
        if piece.startswith(" ") or not piece.strip():
            break
    return start, end


def last_word_confidence(logprobs: Sequence[dict[str, Any]] | None) -> float | None:
    """The lowest probability among the tokens of a transcript's last word and the punctuation after it
    (`logprobs`: [{"token", "logprob"}] per token, as Whisper's short path gives them); None when unknown."""
    if not logprobs:
        return None
    start, _end = _last_word(logprobs)
    return math.exp(min(float(lp["logprob"]) for lp in logprobs[start:]))


def continuing_alternative(logprobs: Sequence[dict[str, Any]] | None) -> float:
    """The probability the transcriber gave, in place of the last word, to words a sentence does not end
    on (from the step's `top_logprobs`; 0 when not known)."""
    if not logprobs:
        return 0.0
    start, end = _last_word(logprobs)
    if start >= end:
        return 0.0
    step = logprobs[start]
    chosen = str(step["token"]).strip().lower()
    return sum(math.exp(float(alt["logprob"])) for alt in step.get("top_logprobs") or ()
               if str(alt["token"]).strip().lower() in CONTINUING and str(alt["token"]).strip().lower() != chosen)
