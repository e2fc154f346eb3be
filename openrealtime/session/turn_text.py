"""What the words of a turn say about whether it is over.

`ends_mid_sentence(text)`: the transcript stops where a sentence cannot end — on an article, a
preposition, a conjunction, an auxiliary or modal verb, a possessive, or a hesitation ("I'd like a large
pizza with", "my favourite colour is", "so maybe we could, um"). Whisper ends nearly everything with a
full stop and drops most fillers, so punctuation says little; the last word says a lot. Used by
semantic turn detection (turn_detection.py) beside the end-of-turn model, which hears prosody but is
sometimes fooled by a pause after a function word.
"""

from __future__ import annotations

import re

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
