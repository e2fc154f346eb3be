"""The incoming-call webhook (`realtime.call.incoming`, or `live.transport.incoming` with `--sip-api live`),
signed the way openai-python's `client.webhooks.unwrap()` verifies (Standard Webhooks): `webhook-id` (stable
across retries), `webhook-timestamp` (Unix seconds of this attempt), `webhook-signature: v1,<base64
HMAC-SHA256(key, id.timestamp.body)>`, where the key is the base64-decoded part of a `whsec_…` secret (any
other secret: its UTF-8 bytes).

Delivery is retried with backoff while `still_wanted()` says the call is still ringing; a 2xx ends it.
The secret never reaches a log line (Settings.secret_values feeds the log redaction as well).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger("openrealtime.sip.webhook")

USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
ATTEMPT_TIMEOUT_S = 5.0
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
# the SIP headers an app never sees (OpenAI: "minus SIP authorization headers")
AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})


def signing_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        key = base64.b64decode(secret[len("whsec_"):], validate=True)
    else:
        key = secret.encode()
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def check_secret(secret: str) -> None:
    """Refuse a secret the SDK could not verify with (raises ValueError saying what to do)."""
    try:
        signing_key(secret)
    except (ValueError, base64.binascii.Error):  # type: ignore[attr-defined]
        raise ValueError("--webhook-secret must be whsec_ followed by standard base64 (as OpenAI issues them), "
                         "or any non-empty string") from None


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def incoming_call_event(call_id: str, sip_headers: list[tuple[str, str]], media_security: str | None, *,
                        live: bool = False) -> dict:
    """`realtime.call.incoming {call_id}`, or for a Live session `live.transport.incoming {session_id, type: sip}`."""
    data: dict[str, Any] = {"session_id": call_id, "type": "sip"} if live else {"call_id": call_id}
    data["sip_headers"] = [{"name": n, "value": v} for n, v in sip_headers if n.lower() not in AUTH_HEADERS]
    if media_security is not None:
        data["sip_media_security"] = media_security
    return {"object": "event", "id": "evt_" + secrets.token_hex(12),
            "type": "live.transport.incoming" if live else "realtime.call.incoming",
            "created_at": int(time.time()), "data": data}


class WebhookSender:
    def __init__(self, url: str, secret: str, *, client: httpx.AsyncClient | None = None,
                 backoff_s: tuple[float, ...] = BACKOFF_S) -> None:
        self.url = url
        self._key = signing_key(secret)
        self._client = client or httpx.AsyncClient(timeout=ATTEMPT_TIMEOUT_S, follow_redirects=False)
        self._backoff = backoff_s
        self.delivered = 0
        self.failed_attempts = 0

    async def close(self) -> None:
        await self._client.aclose()

    def headers(self, webhook_id: str, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": webhook_id,
                "webhook-timestamp": timestamp, "webhook-signature": sign(self._key, webhook_id, timestamp, body)}

    async def deliver(self, event: dict, still_wanted: Callable[[], bool]) -> bool:
        """POST the event until a 2xx, while `still_wanted()`; whether it was acknowledged."""
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        webhook_id = "wh_" + secrets.token_hex(12)
        attempt = 0
        while still_wanted():
            try:
                response = await self._client.post(self.url, content=body, headers=self.headers(webhook_id, body))
                if 200 <= response.status_code < 300:
                    self.delivered += 1
                    log.info("webhook %s delivered event=%s attempt=%d status=%d", event["type"], event["id"],
                             attempt + 1, response.status_code)
                    return True
                log.warning("webhook %s refused event=%s attempt=%d status=%d", event["type"], event["id"],
                            attempt + 1, response.status_code)
            except httpx.HTTPError as exc:
                log.warning("webhook %s not delivered event=%s attempt=%d: %s", event["type"], event["id"],
                            attempt + 1, type(exc).__name__)
            self.failed_attempts += 1
            await asyncio.sleep(self._backoff[min(attempt, len(self._backoff) - 1)])
            attempt += 1
        return False
