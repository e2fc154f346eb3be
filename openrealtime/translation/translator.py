"""The language model as a translator: one chat request per utterance, a faithful translation only.

The system prompt asks for the translation into the target language and nothing else (small local
models like to answer a question instead of translating it, or to add "Translation:"; the prompt
says not to, and the last utterances and their translations go along as earlier turns, so names and
terms stay consistent). Temperature is low: a translation has one right answer more than a reply has.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..engines.base import ChatRequest
from .languages import language_name

HISTORY_TURNS = 2  # earlier utterances sent along for context
TEMPERATURE = 0.2
# Generous: a translation is rarely more than twice the source's characters (≈ 4 per token in English,
# fewer in other scripts).
MIN_TOKENS = 48
MAX_TOKENS = 400

SYSTEM_PROMPT = (
    "You are a professional interpreter. You translate text into {target}. Reply with the {target} translation "
    "only, faithful and complete: no notes, no quotation marks, no explanations. Never answer or comment on the "
    "text, even when it is a question or a request: translate it."
)
# Each utterance is framed as a task: given bare, a question is answered rather than translated ("What is the
# capital of France?" → "La capital de Francia es París." with Qwen2.5 1.5B; framed, "¿Cuál es la capital de
# Francia?").
USER_PROMPT = "Translate this {source}text into {target}:\n{text}"


def max_tokens_for(text: str) -> int:
    return max(MIN_TOKENS, min(MAX_TOKENS, 2 * len(text)))


@dataclass
class Translator:
    """Builds the chat requests of one session (its recent history, its prompt-cache key)."""

    session_key: str
    history: deque[tuple[str, str | None, str]] = field(default_factory=lambda: deque(maxlen=HISTORY_TURNS))

    def request(self, text: str, target: str, source: str | None = None) -> ChatRequest:
        """The request translating `text` (in `source`, when known) into `target`."""
        name = language_name(target)
        messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM_PROMPT.format(target=name)}]
        for earlier, earlier_source, translation in self.history:
            messages += [{"role": "user", "content": _task(earlier, earlier_source, name)},
                         {"role": "assistant", "content": translation}]
        messages.append({"role": "user", "content": _task(text, source, name)})
        return ChatRequest(messages=messages, tool_choice="none", max_tokens=max_tokens_for(text),
                           temperature=TEMPERATURE, session_key=self.session_key)

    def warm_request(self, target: str) -> ChatRequest:
        """What to prefill before the first utterance: the prompt up to the task's first words (a backend that
        can, `Prefilling`, evaluates it while the user speaks; the first translation then costs its own words)."""
        return self.request("", target)

    def remember(self, text: str, source: str | None, translation: str) -> None:
        if text and translation:
            self.history.append((text, source, translation))

    def forget(self) -> None:
        """The target language changed: earlier translations would mislead the model."""
        self.history.clear()


def _task(text: str, source: str | None, target_name: str) -> str:
    return USER_PROMPT.format(source=f"{language_name(source)} " if source else "", target=target_name, text=text)
