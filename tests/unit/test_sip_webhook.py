"""The realtime.call.incoming webhook (openrealtime/sip/webhook.py): what openai-python's
`client.webhooks.unwrap()` verifies, and delivery retried only while the call rings."""

import json

import httpx
import pytest
from openai import InvalidWebhookSignatureError, OpenAI

from openrealtime.sip.webhook import (WebhookSender, check_secret, incoming_call_event, new_secret, sign,
                                      signing_key)
from tests.support.asgi import read_body, respond


def receiver(statuses: list[int], seen: list[tuple[dict, bytes]]):
    async def app(scope, receive, send):
        body = await read_body(receive)
        seen.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        await respond(send, statuses.pop(0) if statuses else 200)
    return app


@pytest.mark.parametrize("secret", [new_secret(), "a plain secret"], ids=["whsec", "plain"])
async def test_the_sdk_unwraps_what_we_send(secret):
    seen: list = []
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver([], seen)), base_url="http://app")
    sender = WebhookSender("http://app/hook", secret, client=client)
    event = incoming_call_event("rtc_abc", [("From", "<sip:+1@x>"), ("Authorization", "Digest u"),
                                            ("proxy-authorization", "x"), ("X-Extra", "1"), ("X-Extra", "2")], "srtp")
    assert await sender.deliver(event, lambda: True)
    headers, body = seen[0]
    assert headers["user-agent"].startswith("OpenAI/1.0") and headers["webhook-id"].startswith("wh_")
    unwrapped = OpenAI(api_key="x", webhook_secret=secret).webhooks.unwrap(body, headers)
    assert unwrapped.type == "realtime.call.incoming" and unwrapped.data.call_id == "rtc_abc"
    assert [(h.name, h.value) for h in unwrapped.data.sip_headers] == [("From", "<sip:+1@x>"), ("X-Extra", "1"),
                                                                        ("X-Extra", "2")]
    assert unwrapped.data.sip_media_security == "srtp" and json.loads(body)["object"] == "event"
    with pytest.raises(InvalidWebhookSignatureError):
        OpenAI(api_key="x", webhook_secret=new_secret()).webhooks.unwrap(body, headers)
    await sender.close()


async def test_retried_while_ringing_with_one_id_and_fresh_signatures():
    seen: list = []
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver([500, 503], seen)), base_url="http://app")
    sender = WebhookSender("http://app/hook", new_secret(), client=client, backoff_s=(0.0,))
    assert await sender.deliver(incoming_call_event("rtc_1", [], None), lambda: True)
    assert len(seen) == 3 and len({h["webhook-id"] for h, _ in seen}) == 1
    assert "sip_media_security" not in json.loads(seen[0][1])["data"]  # omitted when unknown
    rings = iter([True, False])
    stopped = WebhookSender("http://app/hook", new_secret(), backoff_s=(0.0,),
                            client=httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver([500] * 5, seen))))
    assert not await stopped.deliver(incoming_call_event("rtc_2", [], None), lambda: next(rings))
    assert len(seen) == 4  # one attempt, then the call stopped ringing


def test_secrets():
    assert len(signing_key(new_secret())) == 32
    check_secret("whsec_" + "QUJD")
    for bad in ("whsec_not*base64", "whsec_"):
        with pytest.raises(ValueError):
            check_secret(bad)
    assert sign(b"k", "wh_1", "1", b"{}") == sign(b"k", "wh_1", "1", b"{}") != sign(b"k", "wh_1", "2", b"{}")
