"""Mutation primitives shared by every fuzz target (the bounded property tests in tests/fuzz and the
longer campaign in bench/fuzz.py).

Every generator takes a `random.Random` and nothing else that varies, so a case is reproducible from
(target, seed) and the suite can drive it from hypothesis (`st.randoms(use_true_random=False)` with
`derandomize=True`) while the campaign drives it from a plain seed counter under a time budget.

* `mutate_bytes` — radamsa-style byte edits: bit flips, interesting bytes and integers at random
  offsets, inserted/deleted/duplicated/repeated ranges, truncation.
* `mutate_json` — structure-aware edits of a decoded JSON value: replace a value by one of another
  type or a boundary value, drop a key, add an unknown one, huge strings, deep nesting, splices.
* `mutate_json_text` — edits of the serialized text that no encoder would produce: truncation,
  duplicate keys, integers with thousands of digits, NaN/Infinity, a BOM, invalid UTF-8, garbage.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INTERESTING_INTS = (0, 1, -1, 2, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 1023, 1024, 4095, 4096,
                    32767, 32768, 65535, 65536, 2**24, 2**31 - 1, 2**31, -2**31, 2**32 - 1, 2**32, 2**53,
                    2**63 - 1, 2**63, -2**63, 2**64, 10**30, -10**30)
INTERESTING_FLOATS = (0.0, -0.0, 0.5, 1.5, -1.0, 1e-300, 1e308, -1e308, float("inf"), float("-inf"),
                      float("nan"), 3.4e38, 0.1)
INTERESTING_STRINGS = ("", " ", "\x00", "null", "true", "0", "-1", "NaN", "é", "\u202e", "\ufeff", "💥",
                       "\ud800", "a\r\nb", "%s%n%x", "../../../../etc/passwd", "<script>", "${jndi:x}",
                       "data:image/png;base64,", "data:image/png;base64,AAAA", "=", "==", "AAA", "AAAA=",
                       "!!!!", "realtime", "transcription", "auto", "none", "inf", "audio/pcm", "message",
                       "user", "assistant", "system", "input_text", "input_audio", "input_image",
                       "output_text", "output_audio", "function_call", "item_reference", "root",
                       "server_vad", "semantic_vad", "retention_ratio", "function", "mcp", "marin")
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x0A, 0x0D, 0x22, 0x5C, 0xC0, 0xED, 0xF4, 0xF8)


def choice(rng: random.Random, seq: Sequence[Any]) -> Any:
    return seq[rng.randrange(len(seq))]


def rand_text(rng: random.Random, max_len: int = 24) -> str:
    alphabet = choice(rng, (string.ascii_letters, string.printable, "0123456789", "é漢字💥\u0301\u202e\x00\x7f"))
    return "".join(choice(rng, alphabet) for _ in range(rng.randrange(max_len + 1)))


def huge_text(rng: random.Random, huge: int) -> str:
    """A long string: repeated text, base64-ish, or multi-byte characters (up to `huge` characters)."""
    n = rng.choice((huge // 64, huge // 8, huge))
    unit = choice(rng, ("A", "x", "é", "💥", "\\", "\"", "AAAA", " ", "\n"))
    return (unit * (n // len(unit) + 1))[:n]


# ---- bytes ---------------------------------------------------------------------------------------
def mutate_bytes(rng: random.Random, data: bytes, *, max_len: int = 1 << 16, rounds: int | None = None) -> bytes:
    """One to four byte-level edits of `data` (the result is at most `max_len` bytes)."""
    buf = bytearray(data[:max_len])
    for _ in range(rounds or rng.randint(1, 4)):
        op = rng.randrange(11)
        n = len(buf)
        if op == 0 and n:  # flip a bit
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # an interesting byte
            buf[rng.randrange(n)] = choice(rng, INTERESTING_BYTES)
        elif op == 2 and n >= 2:  # an interesting 16/32-bit integer, big-endian
            width = rng.choice((2, 4))
            i = rng.randrange(max(1, n - width + 1))
            value = choice(rng, INTERESTING_INTS) & ((1 << (8 * width)) - 1)
            buf[i:i + width] = value.to_bytes(width, "big")
        elif op == 3:  # insert random bytes
            i = rng.randrange(n + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 4 and n:  # delete a range
            i = rng.randrange(n)
            del buf[i:i + rng.randint(1, max(1, n // 4))]
        elif op == 5 and n:  # duplicate a range
            i = rng.randrange(n)
            buf[i:i] = buf[i:i + rng.randint(1, 64)]
        elif op == 6 and n:  # truncate
            del buf[rng.randrange(n):]
        elif op == 7 and n:  # repeat a chunk many times
            i = rng.randrange(n)
            chunk = bytes(buf[i:i + rng.randint(1, 8)])
            buf[i:i] = chunk * rng.choice((16, 256, 4096))
        elif op == 8:  # append garbage
            buf += rng.randbytes(rng.randint(1, 64))
        elif op == 9 and n:  # zero or 0xff a range
            i = rng.randrange(n)
            k = rng.randint(1, 16)
            buf[i:i + k] = bytes([rng.choice((0, 0xFF))]) * len(buf[i:i + k])
        elif op == 10 and n >= 2:  # swap two ranges' positions
            i, j = sorted(rng.sample(range(n), 2))
            buf[i], buf[j] = buf[j], buf[i]
    return bytes(buf[:max_len])


# ---- JSON values -----------------------------------------------------------------------------------
class RawJson:
    """JSON text spliced in verbatim by `dumps` (nesting too deep for the json module to write)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawJson({self.text[:20]!r}... {len(self.text)} chars)"


def deep(rng: random.Random, depth: int) -> Any:
    """`depth` levels of nested arrays or objects (as RawJson beyond 100 levels)."""
    leaf = choice(rng, ("1", '"x"', "null", "{}"))
    as_list = rng.random() < 0.5
    if depth > 100:
        return RawJson(("[" * depth + leaf + "]" * depth) if as_list else ('{"a":' * depth + leaf + "}" * depth))
    value: Any = json.loads(leaf)
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def random_json(rng: random.Random, *, huge: int = 1 << 16, depth: int = 0) -> Any:
    """A JSON value of any type, biased to boundary values."""
    kind = rng.randrange(10)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return choice(rng, INTERESTING_INTS)
    if kind == 3:
        return choice(rng, INTERESTING_FLOATS)
    if kind == 4:
        return choice(rng, INTERESTING_STRINGS)
    if kind == 5:
        return rand_text(rng)
    if kind == 6:
        return huge_text(rng, huge)
    if kind == 7 and depth < 3:
        return [random_json(rng, huge=huge // 4, depth=depth + 1) for _ in range(rng.randrange(4))]
    if kind == 8 and depth < 3:
        return {rand_text(rng, 8): random_json(rng, huge=huge // 4, depth=depth + 1) for _ in range(rng.randrange(4))}
    return deep(rng, rng.choice((8, 64, 600, 3000)))


MAX_SLOT_DEPTH = 24
MAX_SLOTS = 4000


def _slots(value: Any) -> list[tuple]:
    """Paths (tuples of keys/indexes) into a JSON value, the root included (not below MAX_SLOT_DEPTH)."""
    out: list[tuple] = []
    stack: list[tuple[tuple, Any]] = [((), value)]
    while stack and len(out) < MAX_SLOTS:
        path, node = stack.pop()
        out.append(path)
        if len(path) >= MAX_SLOT_DEPTH:
            continue
        if isinstance(node, dict):
            stack.extend((path + (key,), child) for key, child in node.items())
        elif isinstance(node, list):
            stack.extend((path + (index,), child) for index, child in enumerate(node))
    return out


def _get(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


def _set(root: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    _get(root, path[:-1])[path[-1]] = new
    return root


def copy_json(value: Any, depth: int = 0) -> Any:
    """A copy down to MAX_SLOT_DEPTH (deeper parts are never edited, so they are shared)."""
    if depth > MAX_SLOT_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: copy_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v, depth + 1) for v in value]
    return value


def mutate_json(rng: random.Random, value: Any, *, huge: int = 1 << 16, splice: Sequence[Any] = (),
                rounds: int | None = None, keep_root_type: bool = False) -> Any:
    """One to three structure-aware edits of a copy of `value`.

    `splice`: other valid values whose parts may be grafted in (an item where a session goes...).
    `keep_root_type`: leave the root's `type` key alone (so the mutation stays inside one schema)."""
    root = copy_json(value)
    for _ in range(rounds or rng.randint(1, 3)):
        slots = _slots(root)
        if keep_root_type:
            slots = [p for p in slots if p != ("type",) and p != ()] or slots
        path = choice(rng, slots)
        target = _get(root, path)
        op = rng.randrange(12)
        if op <= 2:  # another value, of any type
            root = _set(root, path, random_json(rng, huge=huge))
        elif op == 3 and path and isinstance(_get(root, path[:-1]), dict):  # drop the key
            del _get(root, path[:-1])[path[-1]]
        elif op == 4 and isinstance(target, dict):  # an unknown field
            target[choice(rng, ("x", "", "extra", "__proto__", "type", "event_id", rand_text(rng, 12)))] = \
                random_json(rng, huge=huge)
        elif op == 5 and isinstance(target, str):
            root = _set(root, path, huge_text(rng, huge))
        elif op == 6 and isinstance(target, (int, float)) and not isinstance(target, bool):
            root = _set(root, path, choice(rng, INTERESTING_INTS + INTERESTING_FLOATS))
        elif op == 7:  # wrap
            root = _set(root, path, [target] if rng.random() < 0.5 else {"value": target})
        elif op == 8:
            root = _set(root, path, deep(rng, rng.choice((16, 200, 1200, 5000))))
        elif op == 9 and splice:  # graft a part of another valid value
            donor = choice(rng, splice)
            root = _set(root, path, copy_json(_get(donor, choice(rng, _slots(donor)))))
        elif op == 10 and isinstance(target, list):
            if target and rng.random() < 0.5:
                target.extend(copy_json(target[-1]) for _ in range(rng.choice((2, 50, 3000))))
            else:
                target.append(random_json(rng, huge=huge))
        elif op == 11 and isinstance(target, str):
            root = _set(root, path, choice(rng, INTERESTING_STRINGS))
    return root


# ---- JSON text ---------------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r'"\\u0000raw(\d+)\\u0000"')


def dumps(rng: random.Random, value: Any) -> str:
    """JSON text of `value`, with RawJson parts spliced in."""
    raws: list[str] = []

    def placeholder(obj: Any) -> Any:
        if isinstance(obj, RawJson):
            raws.append(obj.text)
            return f"\x00raw{len(raws) - 1}\x00"
        raise TypeError(f"not JSON: {type(obj).__name__}")

    text = json.dumps(value, ensure_ascii=rng.random() < 0.5, allow_nan=True, default=placeholder,
                      separators=choice(rng, ((",", ":"), (", ", ": "))))
    if not raws:
        return text
    return _PLACEHOLDER.sub(lambda m: raws[int(m.group(1))], text)  # one pass (thousands may be spliced)


def mutate_json_text(rng: random.Random, text: str) -> str | bytes:
    """A textual edit of serialized JSON (may return bytes: invalid UTF-8 only exists there)."""
    op = rng.randrange(10)
    if op == 0 and text:
        return text[:rng.randrange(len(text))]
    if op == 1 and text.startswith("{"):  # a duplicate key (json.loads keeps the last)
        return '{"type":' + json.dumps(rand_text(rng, 10)) + "," + text[1:]
    if op == 2 and text.startswith("{"):  # an integer with more digits than Python converts
        return '{"n":' + "9" * rng.choice((4301, 5000, 20000)) + "," + text[1:]
    if op == 3 and text.startswith("{"):
        return '{"n":' + choice(rng, ("NaN", "Infinity", "-Infinity", "1e999", "-0", "1E-999")) + "," + text[1:]
    if op == 4:
        return "\ufeff" + text
    if op == 5:
        raw = bytearray(text.encode("utf-8", "surrogatepass"))
        i = rng.randrange(len(raw) + 1)
        raw[i:i] = choice(rng, (b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82"))
        return bytes(raw)
    if op == 6:
        return text + choice(rng, ("x", "}", "]", ",", " {}", "\x00"))
    if op == 7:
        return choice(rng, ("", " ", "null", "[]", "1", '"x"', "{", "}", "[" * 100000, '{"type":' * 3000))
    if op == 8:
        return mutate_bytes(rng, text.encode("utf-8", "surrogatepass"), max_len=1 << 20)
    return text.replace('"', "'", 1)


# ---- findings ---------------------------------------------------------------------------------------
@dataclass
class Finding:
    target: str
    seed: int | None
    summary: str
    case: Any = None
    detail: str = ""


@dataclass
class Tally:
    """Cases run and findings, per target."""

    cases: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def count(self, target: str, outcome: str) -> None:
        self.cases[target] = self.cases.get(target, 0) + 1
        per = self.outcomes.setdefault(target, {})
        per[outcome] = per.get(outcome, 0) + 1

    def found(self, finding: Finding) -> None:
        self.findings.append(finding)


def save_reproducer(folder: Path, finding: Finding, index: int) -> Path:
    """Write the case (raw bytes/text as is, anything else as JSON) and a note about what happened."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{finding.target}-{index:03d}"
    case = finding.case
    if isinstance(case, (bytes, bytearray)):
        stem.with_suffix(".bin").write_bytes(bytes(case))
    elif isinstance(case, str):
        stem.with_suffix(".txt").write_text(case, encoding="utf-8", errors="surrogatepass")
    else:
        stem.with_suffix(".json").write_text(json.dumps(case, default=repr, indent=1), encoding="utf-8")
    note = {"target": finding.target, "seed": finding.seed, "summary": finding.summary, "detail": finding.detail}
    stem.with_suffix(".note.json").write_text(json.dumps(note, indent=1), encoding="utf-8")
    return stem


Generator = Callable[[random.Random], Any]
