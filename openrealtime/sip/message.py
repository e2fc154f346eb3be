"""SIP messages (RFC 3261 §7, §25): a strict parser with hard limits, and the serialiser.

Whatever arrives on the SIP ports is untrusted: a message over `MAX_MESSAGE_BYTES`, a line over
`MAX_LINE_BYTES`, more than `MAX_HEADERS` header fields, a body over `MAX_BODY_BYTES`, a start line or
header that does not follow the grammar, bytes that are not UTF-8, or a Content-Length that
disagrees with what came raise `SipParseError`, and nothing else is raised. Header names keep their
spelling and order (the webhook reports them as sent); lookups go through the canonical lower-case
name, with the compact forms (`v`, `f`, `t`, `i`, …) folded in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..limits import SIP_MAX_BODY_BYTES as MAX_BODY_BYTES  # the body (an SDP offer, a sipfrag, a DTMF INFO)
from ..limits import SIP_MAX_HEADERS as MAX_HEADERS  # header fields in one message
from ..limits import SIP_MAX_LINE_BYTES as MAX_LINE_BYTES  # one start line or header field (after unfolding)
from ..limits import SIP_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES  # a UDP datagram, or one TCP/TLS message

MAX_URI_BYTES = 4 * 1024
MAX_CSEQ = 2 ** 31 - 1

COMPACT = {"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length", "c": "content-type",
           "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via", "o": "event", "r": "refer-to",
           "b": "referred-by", "u": "allow-events", "x": "session-expires", "a": "accept-contact",
           "j": "reject-contact", "d": "request-disposition", "y": "identity", "n": "identity-info"}

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN_RE = re.compile(_TOKEN)
_REQUEST_LINE = re.compile(rf"^({_TOKEN}) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) ([^\r\n]*)$")
_HEADER_NAME = re.compile(_TOKEN)
_CSEQ = re.compile(rf"^\s*([0-9]{{1,10}})\s+({_TOKEN})\s*$")
_VIA = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
                  r"(?:\s*:\s*([0-9]{1,5}))?\s*(.*)$", re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class SipParseError(ValueError):
    """What arrived is not a SIP message within our limits. `partial`: the request as far as it was read
    (start line and the header fields before the fault), so a server can still answer 400 to it."""

    def __init__(self, message: str, partial: "SipRequest | None" = None) -> None:
        super().__init__(message)
        self.partial = partial


def canonical(name: str) -> str:
    lowered = name.lower()
    return COMPACT.get(lowered, lowered)


@dataclass
class Headers:
    """Header fields in arrival order, names as spelled; lookups by canonical name."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        key = canonical(name)
        for n, v in self.items:
            if canonical(n) == key:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        key = canonical(name)
        return [v for n, v in self.items if canonical(n) == key]

    def values(self, name: str) -> list[str]:
        """Every value of a list header (Via, Contact, Route, Supported, …), comma-separated ones split."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(v for v in split_list(value) if v)
        return out

    def add(self, name: str, value: str) -> None:
        self.items.append((name, value))

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.items.append((name, value))

    def remove(self, name: str) -> None:
        key = canonical(name)
        self.items = [(n, v) for n, v in self.items if canonical(n) != key]

    def has(self, name: str) -> bool:
        return self.get(name) is not None


@dataclass
class SipMessage:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def call_id(self) -> str:
        return self.headers.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("cseq") or "")

    def top_via(self) -> "Via":
        vias = self.headers.values("via")
        if not vias:
            raise SipParseError("no Via header")
        return parse_via(vias[0])

    def content_type(self) -> str:
        return (self.headers.get("content-type") or "").split(";", 1)[0].strip().lower()

    def start_line(self) -> str:
        raise NotImplementedError

    def encode(self) -> bytes:
        lines = [self.start_line()]
        lines += [f"{n}: {v}" for n, v in self.headers.items if canonical(n) != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass
class SipRequest(SipMessage):
    method: str = ""
    uri: str = ""

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


@dataclass
class SipResponse(SipMessage):
    status: int = 0
    reason: str = ""

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"


# ---- parsing --------------------------------------------------------------------------------------------
def parse_message(data: bytes, *, stream: bool = False) -> SipRequest | SipResponse:
    """One message. `stream`: from TCP/TLS, where Content-Length is required and must match exactly."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(f"message over {MAX_MESSAGE_BYTES} bytes")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")  # bare LF line ends (tolerated, RFC 3261 §7)
        if not sep:
            raise SipParseError("no blank line after the header")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("the header is not UTF-8") from None
    raw_lines = text.replace("\r\n", "\n").split("\n")
    while raw_lines and raw_lines[0] == "":  # leading CRLFs before a message are ignored (RFC 3261 §7.5)
        raw_lines.pop(0)
    if not raw_lines:
        raise SipParseError("empty message")
    start = raw_lines[0]
    header_lines = _unfold(raw_lines[1:])
    if len(start) > MAX_LINE_BYTES:
        raise SipParseError("start line too long")
    message: SipRequest | SipResponse
    if start.startswith("SIP/"):
        m = _STATUS_LINE.match(start)
        if m is None or _CONTROL.search(m.group(2)):
            raise SipParseError("malformed status line")
        message = SipResponse(status=int(m.group(1)), reason=m.group(2))
    else:
        m = _REQUEST_LINE.match(start)
        if m is None or len(m.group(1)) > 32:
            raise SipParseError("malformed request line")
        uri = m.group(2)
        if len(uri) > MAX_URI_BYTES or ":" not in uri:
            raise SipParseError("malformed Request-URI")
        message = SipRequest(method=m.group(1), uri=uri)
    try:
        for line in header_lines:
            name, colon, value = line.partition(":")
            name = name.rstrip(" \t")
            if not colon or not _HEADER_NAME.fullmatch(name):
                raise SipParseError("malformed header line")
            value = value.strip(" \t")
            if _CONTROL.search(value):
                raise SipParseError("control character in a header")
            message.headers.add(name, value)
        message.body = _body(message, body, stream)
        if message.headers.has("cseq"):
            parse_cseq(message.headers.get("cseq") or "")
    except SipParseError as exc:
        raise SipParseError(str(exc), message if isinstance(message, SipRequest) else None) from None
    return message


def _unfold(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not out:
                raise SipParseError("continuation line without a header")
            out[-1] = out[-1] + " " + line.strip(" \t")
        else:
            out.append(line)
        if len(out[-1]) > MAX_LINE_BYTES:
            raise SipParseError("header line too long")
        if len(out) > MAX_HEADERS:
            raise SipParseError(f"more than {MAX_HEADERS} header fields")
    if out and out[-1] == "":
        out.pop()
    if any(line == "" for line in out):
        raise SipParseError("empty header line")
    return out


def _body(message: SipMessage, rest: bytes, stream: bool) -> bytes:
    lengths = message.headers.get_all("content-length")
    if len(lengths) > 1:
        raise SipParseError("more than one Content-Length")
    if not lengths:
        if stream:
            raise SipParseError("no Content-Length on a stream transport")
        length = len(rest)
    else:
        value = lengths[0].strip()
        if not value.isdigit() or len(value) > 6:
            raise SipParseError("malformed Content-Length")
        length = int(value)
        if length > len(rest) or (stream and length != len(rest)):
            raise SipParseError("Content-Length does not match the body")
    if length > MAX_BODY_BYTES:
        raise SipParseError(f"body over {MAX_BODY_BYTES} bytes")
    return rest[:length]


def parse_cseq(value: str) -> tuple[int, str]:
    m = _CSEQ.match(value)
    if m is None or int(m.group(1)) > MAX_CSEQ:
        raise SipParseError("malformed CSeq")
    return int(m.group(1)), m.group(2)


def split_list(value: str) -> list[str]:
    """A comma-separated header value split outside quotes and <…>."""
    out, buf, quoted, angle, escaped = [], [], False, False, False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            angle = True
        elif not quoted and ch == ">":
            angle = False
        elif ch == "," and not quoted and not angle:
            out.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    out.append("".join(buf).strip())
    return out


def parse_params(text: str) -> dict[str, str]:
    """`;a=1;b;c="x"` → {"a": "1", "b": "", "c": "x"} (names lower-cased)."""
    params: dict[str, str] = {}
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params[name.strip().lower()] = value
    return params


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out, buf, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    out.append("".join(buf))
    return out


@dataclass
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")

    @property
    def sent_by(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


def parse_via(value: str) -> Via:
    m = _VIA.match(value)
    if m is None:
        raise SipParseError("malformed Via")
    port = int(m.group(3)) if m.group(3) else None
    if port is not None and not 0 < port < 65536:
        raise SipParseError("malformed Via port")
    rest = m.group(4).strip()
    if rest and not rest.startswith(";"):
        raise SipParseError("malformed Via parameters")
    return Via(m.group(1).upper(), m.group(2).strip("[]"), port, parse_params(rest))


@dataclass
class NameAddr:
    display: str
    uri: str
    params: dict[str, str]

    @property
    def tag(self) -> str:
        return self.params.get("tag", "")


def parse_name_addr(value: str) -> NameAddr:
    """From, To, Contact, Refer-To, Record-Route: `"Name" <uri>;params` or `uri;params`."""
    value = value.strip()
    if "<" in value:
        lt = value.index("<")
        gt = value.find(">", lt)
        if gt < 0:
            raise SipParseError("unterminated <uri>")
        display = value[:lt].strip().strip('"')
        uri, rest = value[lt + 1:gt].strip(), value[gt + 1:].strip()
    else:
        display = ""
        uri, sep, rest = value.partition(";")
        rest = sep + rest
    if not uri or ":" not in uri or len(uri) > MAX_URI_BYTES:
        raise SipParseError("malformed address")
    if rest and not rest.startswith(";"):
        raise SipParseError("malformed address parameters")
    return NameAddr(display, uri, parse_params(rest))


@dataclass
class SipUri:
    scheme: str
    user: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def transport(self) -> str:
        return self.params.get("transport", "").upper()


_URI = re.compile(r"^(sips?):(?:([^@;?]*)@)?(\[[0-9A-Fa-f:.]+\]|[^:;?]+)(?::([0-9]{1,5}))?((?:;[^?]*)?)(?:\?.*)?$",
                  re.I)


def parse_uri(uri: str) -> SipUri:
    m = _URI.match(uri.strip())
    if m is None:
        raise SipParseError("not a sip: or sips: URI")
    port = int(m.group(4)) if m.group(4) else None
    if port is not None and not 0 < port < 65536:
        raise SipParseError("malformed URI port")
    user = (m.group(2) or "").split(":", 1)[0]
    return SipUri(m.group(1).lower(), user, m.group(3).strip("[]"), port, parse_params(m.group(5)))


# ---- building --------------------------------------------------------------------------------------------
REASONS = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 202: "Accepted", 400: "Bad Request",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           415: "Unsupported Media Type", 420: "Bad Extension", 422: "Session Interval Too Small",
           480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
           483: "Too Many Hops", 486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
           491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
           600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable"}


def reason_phrase(status: int) -> str:
    return REASONS.get(status) or {1: "Progress", 2: "OK", 3: "Redirect", 4: "Request Failure", 5: "Server Error",
                                   6: "Global Failure"}.get(status // 100, "Unknown")


def build_response(request: SipRequest, status: int, reason: str | None = None, *, to_tag: str | None = None,
                   headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                   content_type: str | None = None) -> SipResponse:
    """A response to `request` (RFC 3261 §8.2.6): its Via, From, Call-ID and CSeq, its To with our tag
    added when it had none, and Record-Route on responses that make a dialog."""
    response = SipResponse(status=status, reason=reason or reason_phrase(status))
    h = response.headers
    for name, value in request.headers.items:
        key = canonical(name)
        if key in ("via", "from", "call-id", "cseq"):
            h.add(name, value)
        elif key == "to":
            if to_tag and status != 100 and "tag" not in parse_name_addr(value).params:
                value = f"{value};tag={to_tag}"
            h.add(name, value)
        elif key == "record-route" and request.method == "INVITE" and 100 < status < 300:
            h.add(name, value)
    for name, value in headers or []:
        h.add(name, value)
    if body:
        h.add("Content-Type", content_type or "application/sdp")
    response.body = body
    return response
