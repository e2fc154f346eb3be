"""The OpenAI error shape, shared by HTTP replies and `error` events."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    type: str = "invalid_request_error"
    code: str | None = None
    message: str
    param: str | None = None
    event_id: str | None = None


class ProtocolError(Exception):
    """A client mistake that becomes an `error` event (or a 4xx over HTTP)."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = "invalid_value",
        param: str | None = None,
        type: str = "invalid_request_error",
        event_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.type = type
        self.event_id = event_id

    def detail(self) -> ErrorDetail:
        return ErrorDetail(
            type=self.type, code=self.code, message=self.message, param=self.param, event_id=self.event_id
        )

    def http_body(self) -> dict[str, Any]:
        """`{"error": {message, type, param, code}}` as the REST API returns it."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# pydantic type-error kinds -> the expected JSON kind, in OpenAI's wording
_TYPE_ERRORS = {
    "string_type": "a string", "int_type": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "bool_type": "a boolean", "dict_type": "an object", "model_type": "an object",
    "model_attributes_type": "an object", "list_type": "an array", "tuple_type": "an array",
    "none_required": "null", "int_parsing": "an integer", "float_parsing": "a number", "bool_parsing": "a boolean",
}
_BOUNDS = {
    "greater_than_equal": ("below minimum", ">=", "ge"), "greater_than": ("below minimum", ">", "gt"),
    "less_than_equal": ("above maximum", "<=", "le"), "less_than": ("above maximum", "<", "lt"),
}
_OPENAI_CODES = frozenset({"invalid_value", "invalid_type", "unknown_parameter", "missing_required_parameter"})


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    return "an object"


def quoted_list(expected: str) -> str:
    """`"'a', 'b' or 'c'"` (pydantic) -> `"'a', 'b', and 'c'"` (OpenAI)."""
    parts = [p.strip() for p in re.split(r", | or ", expected) if p.strip()]
    if len(parts) <= 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


def _clean_loc(loc: tuple[Any, ...], data: Any, *, keep_last: bool) -> list[str]:
    """Drop union tags / member labels from a pydantic location by walking the input data."""
    out: list[str] = []
    cur = data
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and isinstance(part, str) and part in cur and part not in (
                cur.get("type"), cur.get("role")):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(str(part))
            cur = cur[part]
        elif keep_last and i == len(loc) - 1:
            out.append(str(part))
    return out


def _rank(err: dict[str, Any]) -> int:
    """Prefer value errors over type errors among the members of a smart union."""
    kind = err.get("type", "")
    if kind in _TYPE_ERRORS:
        return 2
    if kind in ("literal_error", "enum"):
        return 1
    return 0


def _describe(err: dict[str, Any], param: str | None) -> tuple[str, str, str | None]:
    """Return (code, message, param) for one pydantic error dict."""
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    value = err.get("input")
    name = param or "value"
    if kind == "extra_forbidden":
        return "unknown_parameter", f"Unknown parameter: '{name}'.", param
    if kind == "missing":
        return "missing_required_parameter", f"Missing required parameter: '{name}'.", param
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = str(ctx.get("discriminator", "'type'")).strip("'")
        param = f"{param}.{field}" if param else field
        if kind == "union_tag_not_found":
            return "missing_required_parameter", f"Missing required parameter: '{param}'.", param
        return ("invalid_value", f"Invalid value: '{ctx.get('tag')}'. Supported values are: "
                f"{quoted_list(str(ctx.get('expected_tags', '')))}.", param)
    if kind in _TYPE_ERRORS:
        return ("invalid_type", f"Invalid type for '{name}': expected {_TYPE_ERRORS[kind]}, "
                f"but got {json_kind(value)} instead.", param)
    if kind in ("literal_error", "enum"):
        expected = quoted_list(str(ctx.get("expected", "")))
        if value is None or isinstance(value, (dict, list)):
            return ("invalid_type", f"Invalid type for '{name}': expected one of {expected}, "
                    f"but got {json_kind(value)} instead.", param)
        return "invalid_value", f"Invalid value: '{value}'. Supported values are: {expected}.", param
    if kind in _BOUNDS:
        what, op, key = _BOUNDS[kind]
        num = "integer" if isinstance(value, int) else "decimal"
        return ("invalid_value", f"Invalid '{name}': {num} {what} value. Expected a value {op} {ctx.get(key)}, "
                f"but got {value} instead.", param)
    if kind in ("string_too_long", "string_too_short", "too_long", "too_short"):
        noun = "string" if kind.startswith("string") else ("array" if isinstance(value, list) else "object")
        a_noun = ("an " if noun[0] in "ao" else "a ") + noun
        bound = "maximum" if kind.endswith("long") else "minimum"
        limit = ctx.get("max_length" if bound == "maximum" else "min_length")
        size = len(value) if isinstance(value, (str, list, dict)) else ctx.get("actual_length")
        return ("invalid_value", f"Invalid '{name}': {noun} too {kind.rsplit('_', 1)[1]}. Expected {a_noun} with "
                f"{bound} length {limit}, but got {a_noun} with length {size} instead.", param)
    if kind == "string_pattern_mismatch":
        return ("invalid_value", f"Invalid '{name}': string does not match pattern. Expected a string that "
                f"matches the pattern '{ctx.get('pattern')}'.", param)
    if kind in _OPENAI_CODES:  # raised by our own validators as PydanticCustomError(code, message)
        return kind, f"Invalid '{name}': {err.get('msg', '')}", param
    return "invalid_value", f"Invalid value for '{name}': {err.get('msg', 'invalid value')}.", param


def pydantic_error_to_protocol(
    exc: Exception, *, prefix: str = "", event_id: str | None = None, data: Any = None
) -> ProtocolError:
    """Turn a pydantic ValidationError into a ProtocolError naming the first bad field.

    `data` is the validated input (the object under `prefix`); with it, union tags and member
    labels are removed from the location so `param` is the client's own dotted path
    (e.g. `item.content.0.type`). Codes: unknown_parameter, missing_required_parameter,
    invalid_type, invalid_value.
    """
    errors = getattr(exc, "errors", None)
    errs = errors() if callable(errors) else None  # pydantic's or FastAPI's RequestValidationError
    if not errs:
        return ProtocolError(str(exc), code="invalid_value", param=prefix or None, event_id=event_id)

    def param_of(err: dict[str, Any]) -> str | None:
        loc = tuple(err.get("loc", ()))
        parts = (_clean_loc(loc, data, keep_last=err.get("type") in ("missing", "extra_forbidden"))
                 if data is not None else [str(p) for p in loc])
        path = ".".join(([prefix] if prefix else []) + parts)
        return path or None

    first_param = param_of(errs[0])
    # the errors about the first bad field, or inside it: for a union such as
    # `"auto" | {type: "retention_ratio", ...}` given a bad object, what is wrong inside the object
    # says more than "expected 'auto'"
    params = {id(e): param_of(e) for e in errs}
    inside = f"{first_param}." if first_param else ""
    candidates = [e for e in errs
                  if params[id(e)] == first_param or (inside and (params[id(e)] or "").startswith(inside))]
    best = min(candidates, key=lambda e: (_rank(e), -len(params[id(e)] or "")))
    code, message, param = _describe(best, params[id(best)])
    return ProtocolError(message, code=code, param=param, event_id=event_id)
