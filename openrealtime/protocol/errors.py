"""The OpenAI error shape, shared by HTTP replies and `error` events."""

from __future__ import annotations

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


def pydantic_error_to_protocol(exc: Exception, *, prefix: str = "", event_id: str | None = None) -> ProtocolError:
    """Turn a pydantic ValidationError into a ProtocolError naming the first bad field."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        errs = errors()
        if errs:
            first = errs[0]
            loc = ".".join(str(p) for p in first.get("loc", ()) if not isinstance(p, int) or True)
            param = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or None)
            kind = first.get("type", "")
            code = "unknown_parameter" if kind == "extra_forbidden" else (
                "missing_required_parameter" if kind == "missing" else "invalid_value")
            msg = first.get("msg", "invalid value")
            if kind == "extra_forbidden":
                msg = f"Unknown parameter: '{param}'."
            elif kind == "missing":
                msg = f"Missing required parameter: '{param}'."
            else:
                msg = f"Invalid value for '{param}': {msg}."
            return ProtocolError(msg, code=code, param=param, event_id=event_id)
    return ProtocolError(str(exc), code="invalid_value", param=prefix or None, event_id=event_id)
