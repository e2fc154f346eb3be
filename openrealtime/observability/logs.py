"""Structured logging: `key=value` text lines or one JSON object per line.

Every record carries the id of the call it was logged for (``record.call_id``, ``None`` outside
a call). The id lives in a context variable: `RealtimeCall` sets it while a call is created and
closed, and every asyncio task started from there (aiortc's ICE/DTLS/SCTP/RTP tasks, the
session engine's tasks) inherits it, as do model-worker threads (the `Runtime` runs them
in a copy of the caller's context). A handler filter copies it onto each record, so JSON lines
get a ``call_id`` field and text lines a ``call=...`` prefix.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterable

from .redact import RedactSecrets

call_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("openrealtime_call_id", default=None)


def set_call_id(call_id: str | None) -> contextvars.Token:
    """Tag this task (and the tasks and threads it starts from now on) with `call_id`."""
    return call_id_var.set(call_id)


class CallIdFilter(logging.Filter):
    """Adds ``record.call_id`` from the context of the code that logged (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_id", None) is None:
            record.call_id = call_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "call_id": getattr(record, "call_id", None),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # exc_text: redacted
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [call=rtc_...] message``; the prefix is skipped if the message has it."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        call_id = getattr(record, "call_id", None)
        if call_id and f"call={call_id}" not in line:
            head = f"{self.formatTime(record)} {record.levelname} {record.name} "
            if line.startswith(head):
                return f"{head}call={call_id} {line[len(head):]}"
        return line


class ClientFaultFilter(logging.Filter):
    """uvicorn logs a client's text frame that is not UTF-8 as an ERROR with a traceback (and closes the socket
    with 1007, as it should): any client could fill the log with them (found by fuzzing, tests/fuzz). Such a
    record becomes one INFO line."""

    MESSAGES = frozenset({"Invalid UTF-8 sequence received from client."})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.msg in self.MESSAGES:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


def demote_client_faults() -> None:
    """Install ClientFaultFilter on uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ClientFaultFilter) for f in logger.filters):
        logger.addFilter(ClientFaultFilter())


def setup_logging(level: str = "info", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """One stderr handler for every logger. `secrets`: values (API keys) never to print; they, `ek_` values,
    bearer tokens and credential headers are redacted from every record (observability/redact.py)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallIdFilter())
    handler.addFilter(RedactSecrets(secrets))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiortc/aioice are chatty at INFO about every candidate pair
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # python-multipart warns about every malformed body a client sends; the client gets a 400 for it, and
    # a warning per request would let anyone fill the log
    logging.getLogger("python_multipart").setLevel(max(logging.ERROR, root.level))
