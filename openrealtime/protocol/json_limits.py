"""JSON from the network, with a nesting limit (limits.MAX_JSON_DEPTH).

`json.loads` itself stops near Python's recursion limit with a RecursionError, and a value a few hundred
levels deep that it does return would make our own recursive code (session merging, validation,
re-encoding) fail later, somewhere less clear. `loads()` turns both into `JsonTooDeep`, checked without
recursion and only when the text has more brackets than the limit (one C-speed count otherwise).
"""

from __future__ import annotations

import json
from typing import Any

from ..limits import MAX_JSON_DEPTH


class JsonTooDeep(ValueError):
    def __init__(self, max_depth: int) -> None:
        super().__init__(f"nesting deeper than {max_depth} levels")
        self.max_depth = max_depth


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
    if isinstance(value, (dict, list)):
        brackets = text.count("[") + text.count("{") if isinstance(text, str) else \
            text.count(b"[") + text.count(b"{")
        if brackets > max_depth and too_deep(value, max_depth):
            raise JsonTooDeep(max_depth)
    return value
