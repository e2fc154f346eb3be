"""Secrets out of log lines: a filter on the log handler, the safety net behind the sources.

Our own code never logs a key, an `ek_` value or an MCP credential. Libraries can: at `--log-level
debug` the WebSocket layer (websockets, through uvicorn's logger) logs every handshake header
(`authorization: Bearer …`, `sec-websocket-protocol: realtime, openai-insecure-api-key.ek_…`) and the
first bytes of every frame (a `session.update` may start with an MCP tool's `"authorization"`).
`RedactSecrets` rewrites each record before it is formatted (message and traceback) so that none of
these reach the log, in text or JSON format:

* the exact values it is given (the server's API keys and remote backends' keys);
* `Bearer <token>`, `openai-insecure-api-key.<key>`, `ek_<secret>`, `whsec_<webhook secret>`;
* the values of credential headers (authorization, proxy-authorization, cookie, set-cookie,
  x-api-key, api-key) in `name: value` lines, and of JSON `"authorization"` / `"headers"` fields;
* the password of `scheme://user:password@host` URLs, and credential-like query values (`?token=…`,
  `&api_key=…`, `sig=`, `secret=`, …);
* the payload preview of each WebSocket frame a client sent (the layer logs its first and last bytes,
  which may hold part of a credential without the key that names it). Frames the server sends stay.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"
_TOKEN = r"[^\s,;\"'<>]+"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer\s+)" + _TOKEN), r"\1" + REDACTED),
    (re.compile(r"(?i)(openai-insecure-api-key\.)" + _TOKEN), r"\1" + REDACTED),
    (re.compile(r"\bek_[A-Za-z0-9]{6,}"), "ek_" + REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]{6,}"), "whsec_" + REDACTED),  # a webhook signing secret
    (re.compile(r"(?im)^([<>]?\s*(?:proxy-)?(?:authorization|cookie|set-cookie|x-api-key|api-key)\s*:\s*).+$"),
     r"\1" + REDACTED),
    (re.compile(r'(?i)("authorization"\s*:\s*")(?:[^"\\]|\\.)*'), r"\1" + REDACTED),
    (re.compile(r'(?i)("headers"\s*:\s*\{)[^}]*'), r"\1" + REDACTED),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^/\s@]+@"), r"\1" + REDACTED + "@"),
    # credentials in a URL's query (an MCP server_url such as https://mcp.example/sse?token=...)
    (re.compile(r"(?i)([?&][\w.\-]*(?:token|key|secret|password|passwd|auth|sig|signature|credential)[\w.\-]*=)"
                r"[^&\s\"'#<>()]+"), r"\1" + REDACTED),
    # a client's WebSocket frame as the websockets library logs it ("< TEXT '{...}' [255 bytes]"): its first
    # and last bytes may hold any part of a credential, without the key that names it
    (re.compile(r"^(<\s+(?:TEXT|BINARY|CONT)\s).*(\s\[[^\]]*\])$", re.S), r"\1" + REDACTED + r"\2"),
)
_TRIGGERS = ("earer", "api-key", "ek_", "whsec_", "uthorization", "ookie", "headers", "@", "< text", "< binary",
             "< cont",
             "token", "key=", "secret", "passw", "sig", "auth", "credential")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secret values and every pattern above replaced by "[redacted]"."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    lowered = text.lower()
    if any(t in lowered for t in _TRIGGERS):
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Redacts every record it sees (never drops one). `secrets`: exact values to remove wherever they
    appear (values shorter than 6 characters are ignored: too likely to match ordinary text)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: the formatter will report it
            return True
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True
