"""JSON from the network, with a nesting limit (limits.MAX_JSON_DEPTH).

`json.loads` itself stops near Python's recursion limit with a RecursionError, and a value a few hundred
levels deep that it does return would make our own recursive code (session merging, validation,
re-encoding) fail later, somewhere less clear. `loads()` turns both into `JsonTooDeep`, checked without
recursion and only when the text has more brackets than the limit (one C-speed count otherwise).

Two more things `json.loads` lets through or fails on in its own way become `json.JSONDecodeError`, so every
caller reports them as invalid JSON (found by fuzzing, tests/fuzz): an integer with more digits than Python
converts (`ValueError`, not a decode error) and a lone UTF-16 surrogate escape such as `"\\ud800"`, which
decodes to a string that can never be encoded back to UTF-8, so the first event echoing it would fail.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from ..limits import MAX_JSON_DEPTH


class JsonTooDeep(ValueError):
    def __init__(self, max_depth: int) -> None:
        super().__init__(f"nesting deeper than {max_depth} levels")
        self.max_depth = max_depth


_MAX_DIGITS = sys.get_int_max_str_digits()
_LONG_INT = re.compile(r"\d{%d,}" % (_MAX_DIGITS + 1))
# pre-filters (one C-speed scan): a surrogate escape (a pair is fine: the parsed value tells) or, in a str,
# a literal surrogate
_SURROGATE_TEXT = re.compile("\\\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_CHAR = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: Any) -> bool:
    """Whether a parsed value holds a string (or key) with a lone surrogate, walked without recursion."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if _SURROGATE_CHAR.search(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _check_text(text: str | bytes, value: Any) -> None:
    if isinstance(text, str):
        suspect = _SURROGATE_TEXT.search(text)
    else:
        suspect = _SURROGATE_BYTES.search(text)
    if suspect and _lone_surrogate(value):
        doc = text if isinstance(text, str) else text.decode("utf-8", "replace")
        raise json.JSONDecodeError("Lone UTF-16 surrogate (not valid Unicode)", doc, suspect.start())


def too_deep(value: Any, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` (parsed JSON: dicts, lists, scalars) nests deeper than `max_depth` containers."""
    if not isinstance(value, (dict, list)):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        for child in (node.values() if isinstance(node, dict) else node):
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` that raises JsonTooDeep (a ValueError) for JSON nested deeper than `max_depth`;
    other errors are json.JSONDecodeError / UnicodeDecodeError as usual."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonTooDeep(max_depth) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion"
        doc = text if isinstance(text, str) else text.decode("utf-8", "replace")
        match = _LONG_INT.search(doc) if _MAX_DIGITS else None
        raise json.JSONDecodeError(f"Number with more than {_MAX_DIGITS} digits", doc,
                                   match.start() if match else 0) from exc
    _check_text(text, value)
    if isinstance(value, (dict, list)):
        brackets = text.count("[") + text.count("{") if isinstance(text, str) else \
            text.count(b"[") + text.count(b"{")
        if brackets > max_depth and too_deep(value, max_depth):
            raise JsonTooDeep(max_depth)
    return value
