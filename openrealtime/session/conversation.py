"""The default conversation: ordered items, their audio, and the context given to the LLM.

Every change a client can see is announced here, in one place: `add` emits
`conversation.item.added` (and `.done` when the item is complete; `complete` emits it later for an
item still being produced), `remove` emits `conversation.item.deleted`, `truncate` emits
`conversation.item.truncated`."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..protocol import server_events as ev
from ..protocol.errors import ProtocolError
from ..protocol.items import (
    AnyItem,
    AssistantMessageItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputAudioContent,
    InputImageContent,
    InputTextContent,
    McpApprovalRequestItem,
    McpApprovalResponseItem,
    McpCallItem,
    MessageItem,
    OutputAudioContent,
    OutputTextContent,
    SystemMessageItem,
    UserMessageItem,
)
from ..audio.format import BYTES_PER_MS

MAX_STORED_AUDIO_BYTES = 64 * 1024 * 1024  # audio kept for conversation.item.retrieve, per session


@dataclass
class ItemAudio:
    """Audio attached to an item: user input or the assistant's spoken output."""

    pcm: bytearray = field(default_factory=bytearray)
    # assistant speech: (text, start_ms, end_ms) per synthesized clause, to map played time → words
    clauses: list[tuple[str, int, int]] = field(default_factory=list)
    transcript_future: asyncio.Future | None = None  # user audio: the ASR result (str)

    @property
    def duration_ms(self) -> int:
        return len(self.pcm) // BYTES_PER_MS

    def heard_text(self, played_ms: int) -> str:
        """The words of the clauses played up to `played_ms` (a partly played clause is cut by length)."""
        out: list[str] = []
        for text, start, end in self.clauses:
            if played_ms >= end:
                out.append(text)
            elif played_ms > start:
                fraction = (played_ms - start) / max(1, end - start)
                words = text.split()
                out.append(" ".join(words[: int(len(words) * fraction)]))
                break
            else:
                break
        return " ".join(t for t in out if t).strip()


def content_bytes(item: Any) -> int:
    """Characters of text and image data an item holds (its audio is stored and bounded apart: add_audio)."""
    total = 0
    for part in getattr(item, "content", None) or []:
        for name in ("text", "transcript", "image_url"):
            value = getattr(part, name, None)
            total += len(value) if isinstance(value, str) else 0
    for name in ("arguments", "output"):
        value = getattr(item, name, None)
        total += len(value) if isinstance(value, str) else 0
    return total


Emit = Callable[[Any], None]


class Conversation:
    def __init__(self, conversation_id: str, max_items: int, emit: Emit | None = None) -> None:
        self.id = conversation_id
        self._emit: Emit = emit or (lambda event: None)
        self.max_items = max_items
        self.items: list[AnyItem] = []
        self.audio: dict[str, ItemAudio] = {}
        self._stored_audio = 0
        self.client_bytes: dict[str, int] = {}  # item id -> text/image characters of items a client created

    def __len__(self) -> int:
        return len(self.items)

    def get(self, item_id: str) -> AnyItem | None:
        return next((i for i in self.items if i.id == item_id), None)

    def require(self, item_id: str, *, param: str = "item_id") -> AnyItem:
        item = self.get(item_id)
        if item is None:
            raise ProtocolError(f"Item with item_id '{item_id}' not found in the conversation.",
                                code="item_not_found", param=param)
        return item

    @property
    def last_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def insert(self, item: AnyItem, previous_item_id: str | None = None) -> str | None:
        """Insert after `previous_item_id` (None: append; "root": first). Returns the actual previous id."""
        if self.get(item.id) is not None:  # type: ignore[arg-type]
            raise ProtocolError(f"Item with id '{item.id}' already exists in the conversation.",
                                code="item_already_exists", param="item.id")
        if previous_item_id is None:
            prev = self.last_id
            self.items.append(item)
        elif previous_item_id == "root":
            prev = None
            self.items.insert(0, item)
        else:
            index = next((n for n, i in enumerate(self.items) if i.id == previous_item_id), None)
            if index is None:
                raise ProtocolError(f"Item with item_id '{previous_item_id}' not found; previous_item_id must be "
                                    "an existing item id or 'root'.", code="item_not_found", param="previous_item_id")
            prev = previous_item_id
            self.items.insert(index + 1, item)
        return prev

    def add(self, item: AnyItem, previous_item_id: str | None = None, *, complete: bool = True) -> str | None:
        """Insert (see `insert`) and announce the item: `added`, and `done` unless it is still being
        produced (`complete=False`: a response's item; `complete()` follows). Returns the previous id."""
        previous = self.insert(item, previous_item_id)
        self._emit(ev.ConversationItemAddedEvent(previous_item_id=previous, item=item))
        if complete:
            self._emit(ev.ConversationItemDoneEvent(previous_item_id=previous, item=item))
        return previous

    def complete(self, item: AnyItem) -> None:
        """An item added with `complete=False` is finished: `conversation.item.done` (unless it was
        deleted meanwhile)."""
        if self.get(item.id or "") is not None:
            self._emit(ev.ConversationItemDoneEvent(previous_item_id=self.previous_of(item.id or ""), item=item))

    def remove(self, item_id: str) -> None:
        """Delete an item (raises item_not_found) and announce it."""
        self.delete(item_id)
        self._emit(ev.ConversationItemDeletedEvent(item_id=item_id))

    def truncate(self, item_id: str, audio_end_ms: int, content_index: int = 0) -> None:
        """Cut an assistant item's audio (and transcript) at what was heard, and announce it."""
        self.truncate_audio(item_id, audio_end_ms)
        self._emit(ev.ConversationItemTruncatedEvent(item_id=item_id, content_index=content_index,
                                                     audio_end_ms=audio_end_ms))

    def previous_of(self, item_id: str) -> str | None:
        for n, item in enumerate(self.items):
            if item.id == item_id:
                return self.items[n - 1].id if n else None
        return None

    def delete(self, item_id: str) -> None:
        item = self.require(item_id)
        self.items.remove(item)
        self.client_bytes.pop(item_id, None)
        audio = self.audio.pop(item_id, None)
        if audio is not None:
            self._stored_audio -= len(audio.pcm)

    def oldest_evictable(self) -> AnyItem | None:
        return self.items[0] if self.items else None

    # ---- audio -------------------------------------------------------------------------------
    def audio_of(self, item_id: str) -> ItemAudio:
        if item_id not in self.audio:
            self.audio[item_id] = ItemAudio()
        return self.audio[item_id]

    def add_audio(self, item_id: str, pcm: bytes) -> None:
        self.audio_of(item_id).pcm.extend(pcm)
        self._stored_audio += len(pcm)
        while self._stored_audio > MAX_STORED_AUDIO_BYTES:
            victim = next((a for a in self.audio.values() if a.pcm), None)
            if victim is None:
                break
            self._stored_audio -= len(victim.pcm)
            victim.pcm = bytearray()

    def transcripts(self) -> dict[str, str]:
        """Item id -> the transcript of its input audio as known now ("" while it is being made)."""
        return {item_id: (a.transcript_future.result() if a.transcript_future and a.transcript_future.done()
                          and not a.transcript_future.cancelled() else "")
                for item_id, a in self.audio.items()}

    def release_audio(self) -> None:
        """The session has ended: drop every item's audio now (up to MAX_STORED_AUDIO_BYTES), instead of
        when the garbage collector gets to the session's objects."""
        self.audio.clear()
        self._stored_audio = 0

    def truncate_audio(self, item_id: str, audio_end_ms: int) -> str:
        """Cut an assistant item's audio at `audio_end_ms`; returns the transcript that remains."""
        audio = self.audio_of(item_id)
        keep = audio_end_ms * BYTES_PER_MS
        self._stored_audio -= max(0, len(audio.pcm) - keep)
        del audio.pcm[keep:]
        heard = audio.heard_text(audio_end_ms)
        item = self.get(item_id)
        if isinstance(item, AssistantMessageItem):
            for part in item.content:
                if isinstance(part, OutputAudioContent):
                    part.transcript = heard
                elif isinstance(part, OutputTextContent):
                    part.text = heard
        return heard

    def retrieve_wire_audio(self, item: AnyItem) -> None:
        """Fill base64 audio into the item's audio parts (for conversation.item.retrieved)."""
        audio = self.audio.get(item.id or "")
        if audio is None or not audio.pcm or not isinstance(item, MessageItem):
            return
        encoded = base64.b64encode(bytes(audio.pcm)).decode()
        for part in item.content:
            if isinstance(part, (InputAudioContent, OutputAudioContent)):
                part.audio = encoded


# ---- LLM context ----------------------------------------------------------------------------
def _user_text(item: UserMessageItem, transcripts: dict[str, str]) -> str:
    parts: list[str] = []
    for part in item.content:
        if isinstance(part, InputTextContent):
            parts.append(part.text)
        elif isinstance(part, InputAudioContent):
            parts.append(part.transcript if part.transcript is not None else transcripts.get(item.id or "", ""))
    return " ".join(p for p in parts if p).strip()


def to_chat_messages(items: list[AnyItem], transcripts: dict[str, str], *, with_images: bool) -> tuple[list[dict[str, Any]], int]:
    """Chat-completions messages for the items; returns (messages, images_included)."""
    messages: list[dict[str, Any]] = []
    images = 0
    answers = {i.approval_request_id: i for i in items if isinstance(i, McpApprovalResponseItem)}
    for item in items:
        if isinstance(item, SystemMessageItem):
            messages.append({"role": "system", "content": item.text()})
        elif isinstance(item, UserMessageItem):
            text = _user_text(item, transcripts)
            pics = [p for p in item.content if isinstance(p, InputImageContent)]
            if pics and with_images:
                content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
                for pic in pics:
                    content.append({"type": "image_url", "image_url": {"url": pic.image_url, "detail": pic.detail}})
                    images += 1
                messages.append({"role": "user", "content": content})
            elif text:
                messages.append({"role": "user", "content": text})
        elif isinstance(item, AssistantMessageItem):
            text = item.text()
            if text:
                messages.append({"role": "assistant", "content": text})
        elif isinstance(item, FunctionCallItem):
            _add_call(messages, {"id": item.call_id, "type": "function",
                                 "function": {"name": item.name, "arguments": item.arguments}})
        elif isinstance(item, FunctionCallOutputItem):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
        elif isinstance(item, (McpCallItem, McpApprovalRequestItem)):
            result = _mcp_result(item, answers)
            if result is not None:  # a call still running, or a request not answered yet, is left out
                _add_call(messages, {"id": item.id, "type": "function",
                                     "function": {"name": item.name, "arguments": item.arguments}})
                messages.append({"role": "tool", "tool_call_id": item.id, "content": result})
    return messages, images


def _add_call(messages: list[dict[str, Any]], call: dict[str, Any]) -> None:
    """A tool call joins the assistant turn just before it, or starts one."""
    if messages and messages[-1]["role"] == "assistant" and "tool_calls" in messages[-1]:
        messages[-1]["tool_calls"].append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _mcp_result(item: McpCallItem | McpApprovalRequestItem, answers: dict[str, McpApprovalResponseItem]) -> str | None:
    """What the model reads back for an MCP call: its output or error, or a declined approval."""
    if isinstance(item, McpCallItem):
        if item.error is not None:
            return f"Error: {item.error.message}"
        return item.output
    answer = answers.get(item.id or "")
    if answer is None or answer.approve:
        return None  # pending, or approved: the mcp_call item that ran it carries the result
    return "The user declined this call." + (f" Reason: {answer.reason}" if answer.reason else "")


AUTO_RETENTION = 0.75  # our truncation "auto": on overflow keep 75 % of the budget (see ContextWindow)


def message_chars(message: dict[str, Any]) -> int:
    """Size of a chat message for the context budget (an image counts as 800 characters)."""
    content = message.get("content")
    n = len(content) if isinstance(content, str) else sum(len(str(c.get("text", ""))) + 800 for c in content or [])
    return n + sum(len(str(c)) for c in message.get("tool_calls", []))


class ContextWindow:
    """Which oldest items the model no longer sees — OpenAI's `truncation`.

    The cut moves only when the context overflows the budget, and then it drops more than
    strictly needed (down to `retention` × budget): the prompt's prefix, and so the model's KV
    cache, stays the same for the next several turns instead of changing on every turn (a
    1.5B model on 2 cores re-reads ≈ 100 tokens per second). The window starts at a user (or
    system) message, so a reply or a function call's output never leads without its question. `retention=None` (truncation "disabled") never cuts.
    """

    def __init__(self) -> None:
        self.first_kept: str | None = None  # item id where the window starts

    def select(self, items: list[AnyItem], size_of: Callable[[AnyItem], int], budget: int,
               retention: float | None) -> list[AnyItem]:
        ids = [item.id for item in items]
        kept = items[ids.index(self.first_kept):] if self.first_kept in ids else list(items)
        total = sum(size_of(item) for item in kept)
        if retention is None or total <= budget:
            return kept
        target = budget * retention
        while len(kept) > 1 and (total > target or not isinstance(kept[0], (UserMessageItem, SystemMessageItem))):
            total -= size_of(kept.pop(0))
        self.first_kept = kept[0].id
        return kept
