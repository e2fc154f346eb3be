"""POST /v1/realtime/calls bodies for fuzzing: multipart/form-data with odd parts and boundaries, JSON with
odd types and depths, raw application/sdp, and the Content-Type headers that go with them."""

from __future__ import annotations

import random
from typing import Any

from .core import choice, dumps, huge_text, mutate_bytes, mutate_json, mutate_json_text, rand_text, random_json
from .sdp_cases import mutate_sdp, real_offers

VALID_SESSIONS: tuple[dict[str, Any], ...] = (
    {"type": "realtime"},
    {"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief.",
     "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                         "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500},
                         "transcription": {"model": "whisper-1", "language": "en"}},
               "output": {"voice": "marin", "speed": 1.0, "format": {"type": "audio/pcmu"}}},
     "output_modalities": ["audio"], "max_output_tokens": "inf", "tool_choice": "auto", "truncation": "auto",
     "tools": [{"type": "function", "name": "get_weather", "description": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]},
    {"type": "transcription", "audio": {"input": {"transcription": {"model": "whisper-1"},
                                                  "turn_detection": {"type": "semantic_vad", "eagerness": "low"}}}},
    {"type": "realtime", "truncation": {"type": "retention_ratio", "retention_ratio": 0.5},
     "include": ["item.input_audio_transcription.logprobs"], "max_output_tokens": 200},
)
CONTENT_TYPES = ("multipart/form-data", "application/sdp", "application/json", "text/plain", "", "application/SDP",
                 "APPLICATION/JSON; charset=utf-8", "application/sdp; charset=latin1", "multipart/mixed",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=", "*/*", ";", "a/b/c",
                 "multipart/form-data; boundary=\"\"", "multipart/form-data; boundary=" + "b" * 300)


MAX_CASE_BYTES = 2 << 20  # over every body limit, still quick to generate


def session_value(rng: random.Random, *, huge: int) -> Any:
    session = choice(rng, VALID_SESSIONS)
    return mutate_json(rng, session, huge=huge, splice=VALID_SESSIONS) if rng.random() < 0.8 else session


def _boundary(rng: random.Random) -> str:
    return choice(rng, ("b0undary", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "x", "a" * 70, "a" * 200, "é",
                        "with space", "\"quoted\"", "--", "=", rand_text(rng, 20) or "q"))


def _part(rng: random.Random, name: str | None, value: bytes) -> bytes:
    headers = []
    if name is not None or rng.random() < 0.9:
        disposition = "form-data"
        if name is not None:
            disposition += choice(rng, (f'; name="{name}"', f"; name={name}", f"; NAME=\"{name}\"",
                                        f"; name*=UTF-8''{name}", f'; name="{name}"; filename="x.sdp"',
                                        f'; name="{name}"; filename=""', f'; name="{name}'))
        headers.append(choice(rng, ("Content-Disposition", "content-disposition", "Content-Disposition ")) +
                       ": " + disposition)
    if rng.random() < 0.3:
        headers.append("Content-Type: " + choice(rng, ("application/sdp", "application/json", "text/plain",
                                                       "", "x" * 1000)))
    if rng.random() < 0.05:
        headers.append("X-" + "h" * rng.choice((10, 5000)) + ": v")
    if rng.random() < 0.05:
        headers.append("no colon here")
    return ("\r\n".join(headers)).encode("utf-8", "surrogatepass") + b"\r\n\r\n" + value


def multipart_body(rng: random.Random, sdp: bytes, session: bytes | None) -> tuple[str, bytes]:
    boundary = _boundary(rng)
    parts: list[tuple[str | None, bytes]] = [("sdp", sdp)]
    if session is not None:
        parts.append(("session", session))
    op = rng.randrange(8)
    if op == 0:
        parts.append((choice(rng, ("sdp", "session", "", "other", "x" * 300)), rng.randbytes(rng.randrange(64))))
    elif op == 1:
        parts.insert(0, (None, b"unnamed"))
    elif op == 2:
        rng.shuffle(parts)
    elif op == 3:
        parts = [p for p in parts if p[0] != "sdp"]
    elif op == 4:
        parts = parts * (rng.choice((2, 50)) if sum(len(v) for _, v in parts) < 1 << 16 else 2)
    b = boundary.encode("utf-8", "surrogatepass")
    body = b"".join(b"--" + b + b"\r\n" + _part(rng, name, value) + b"\r\n" for name, value in parts)
    body += b"--" + b + b"--\r\n"
    if rng.random() < 0.1:
        body = b"preamble\r\n" + body + b"epilogue"
    body = body[:MAX_CASE_BYTES]
    if rng.random() < 0.2:
        body = mutate_bytes(rng, body, max_len=MAX_CASE_BYTES)
    declared = choice(rng, (boundary, boundary, boundary, "", "other", boundary + "x", boundary.upper()))
    ctype = choice(rng, (f"multipart/form-data; boundary={declared}", f'multipart/form-data; boundary="{declared}"',
                         f"multipart/form-data;boundary={declared};charset=utf-8", "multipart/form-data",
                         f"Multipart/Form-Data; boundary={declared}"))
    return ctype, body


def body_case(rng: random.Random, offers: dict[str, str] | None = None, *, huge: int = 1 << 16) -> tuple[str, bytes]:
    """(Content-Type, body) for POST /v1/realtime/calls."""
    offers = offers or real_offers()
    offer = offers[choice(rng, sorted(offers))]
    sdp_text = mutate_sdp(rng, offer, huge=huge) if rng.random() < 0.4 else offer
    sdp = sdp_text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.05:
        sdp = mutate_bytes(rng, sdp)
    kind = rng.randrange(4)
    if kind == 0:
        session = None if rng.random() < 0.2 else session_value(rng, huge=huge)
        session_bytes = None if session is None else dumps(rng, session).encode("utf-8", "surrogatepass")
        if session_bytes is not None and rng.random() < 0.2:
            text = mutate_json_text(rng, session_bytes.decode("utf-8", "surrogatepass"))
            session_bytes = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
        ctype, body = multipart_body(rng, sdp, session_bytes)
    elif kind == 1:
        ctype, body = choice(rng, ("application/sdp", "application/sdp", "application/sdp; charset=utf-8",
                                   "Application/SDP")), sdp
    else:
        value: Any = {"sdp": sdp_text}
        if rng.random() < 0.7:
            value["session"] = session_value(rng, huge=huge)
        if rng.random() < 0.5:
            value = mutate_json(rng, value, huge=huge, splice=VALID_SESSIONS)
        text = dumps(rng, value)
        raw = mutate_json_text(rng, text) if rng.random() < 0.3 else text
        body = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
        ctype = choice(rng, ("application/json", "application/json", "application/json; charset=utf-8"))
    if rng.random() < 0.08:
        ctype = choice(rng, CONTENT_TYPES)
    if rng.random() < 0.02:
        body = huge_text(rng, huge).encode()
    if rng.random() < 0.02:
        body = dumps(rng, random_json(rng, huge=huge)).encode("utf-8", "surrogatepass")
    return ctype, body
