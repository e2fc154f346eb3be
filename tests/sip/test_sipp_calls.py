"""Phone calls from SIPp (Debian's sip-tester, an external program) into a server with `--sip-port`, the
application side written only with the stock openai-python SDK: `webhooks.unwrap` in its webhook endpoint,
`realtime.calls.accept/reject/refer/hangup`, `realtime.connect(call_id=…)` as the sideband. The echo engine
answers (it plays the caller back): the model is incidental here, the SIP and RTP legs are not."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.support import ScriptedLlm, fake_stack, wait_for
from tests.support.sip import SIPP, Phone, Sipp, phone_server, speech_pcap

pytestmark = pytest.mark.skipif(SIPP is None, reason="needs SIPp (Debian package sip-tester)")

DTMF_5 = "/usr/share/sip-tester/dtmf_2833_5.pcap"
CODECS = {"PCMU": 0, "PCMA": 8}  # static payload types


@pytest.fixture
async def phone():
    async with phone_server() as p:
        yield p


async def sideband_events(phone: Phone, call_id: str, until: str | None = None) -> tuple[list, list]:
    """Every event on a sideband opened now, until the server closes it (or one of type `until`); and the
    reconnections the SDK would have made (none when the close is 1000)."""
    reconnects: list = []
    events: list = []
    async with phone.client.realtime.connect(call_id=call_id, on_reconnecting=reconnects.append) as conn:
        async for event in conn:
            events.append(event)
            if event.type == until:
                break
    return events, reconnects


async def answer(phone: Phone, **config) -> str:
    event = await phone.app.next_call()
    await phone.client.realtime.calls.accept(event.data.call_id, type="realtime", **config)
    return event.data.call_id


@pytest.mark.parametrize("codec, transport", [("PCMU", "u1"), ("PCMA", "t1")], ids=["pcmu-udp", "pcma-tcp"])
async def test_an_answered_call_hears_itself_and_a_key(phone, tmp_path, codec, transport):
    async with Sipp("call.xml", phone.sip_port, tmp_path, transport=transport, codec=codec,
                    codec_pt=CODECS[codec], pcap=speech_pcap(tmp_path, codec), dtmf_pcap=DTMF_5,
                    talk_ms=3000) as sipp:
        incoming = await phone.app.next_call()
        assert incoming.type == "realtime.call.incoming" and incoming.data.call_id.startswith("rtc_")
        headers = [(h.name, h.value) for h in incoming.data.sip_headers]
        assert ("X-Customer-Id", "42") in headers and headers[0][0] == "Via"
        assert not any(name.lower() == "authorization" for name, _ in headers)
        assert incoming.data.sip_media_security == "rtp"
        call_id = incoming.data.call_id
        await phone.client.realtime.calls.accept(call_id, type="realtime", instructions="You answer the phone.")
        await phone.client.realtime.calls.accept(call_id, type="realtime")  # a retry: no second answer
        events, reconnects = await sideband_events(phone, call_id)  # until the caller's BYE closes it
        await sipp.succeeds()
    types = [e.type for e in events]
    created = events[0]
    assert created.type == "session.created"
    assert created.session.audio.input.format.type == f"audio/{codec.lower()}"
    assert created.session.instructions == "You answer the phone."
    assert [e.event for e in events if e.type == "input_audio_buffer.dtmf_event_received"] == ["5"]
    assert "output_audio_buffer.started" in types  # the echo engine played the caller back over RTP
    assert not reconnects  # closed with 1000: the SDK does not reconnect
    for control in (phone.client.realtime.calls.hangup(call_id),
                    phone.client.realtime.calls.accept(call_id, type="realtime")):
        with pytest.raises(openai.NotFoundError):
            await control
    assert len(phone.app.deliveries) == 1  # acknowledged at once: no retry


async def test_the_app_decides_in_its_webhook_with_the_sync_sdk(phone, tmp_path):
    """A real app's shape: the webhook handler itself accepts (sync client, its own thread)."""
    phone.app.on_call = lambda client, event: client.realtime.calls.accept(event.data.call_id, type="realtime")
    phone.app.statuses = [500]  # the first delivery fails: the server retries while the call rings
    async with Sipp("call.xml", phone.sip_port, tmp_path, codec="PCMU", codec_pt=0, pcap=speech_pcap(tmp_path),
                    dtmf_pcap=DTMF_5, talk_ms=1000) as sipp:
        await sipp.succeeds()
    ids = {d["webhook-id"] for d in phone.app.deliveries}
    assert len(phone.app.deliveries) == 2 and len(ids) == 1 and phone.app.refused == 0


@pytest.mark.parametrize("status", [486, None], ids=["busy", "default-603"])
async def test_reject(phone, tmp_path, status):
    async with Sipp("refused.xml", phone.sip_port, tmp_path, status=status or 603) as sipp:
        incoming = await phone.app.next_call()
        call_id = incoming.data.call_id
        if status is None:
            await phone.client.realtime.calls.reject(call_id)
        else:
            await phone.client.realtime.calls.reject(call_id, status_code=status)
        await phone.client.realtime.calls.reject(call_id)  # a retry: still 200
        await sipp.succeeds()
    with pytest.raises(openai.BadRequestError):
        await phone.client.realtime.calls.reject(call_id, status_code=200)  # not a final failure status
    with pytest.raises(openai.NotFoundError):
        await phone.client.realtime.calls.accept(call_id, type="realtime")


async def test_ring_timeout_declines(tmp_path):
    async with phone_server(sip_ring_timeout_s=1.0) as phone:
        async with Sipp("refused.xml", phone.sip_port, tmp_path, status=603) as sipp:
            await phone.app.next_call()
            await sipp.succeeds()


async def test_cancel_while_ringing(phone, tmp_path):
    async with Sipp("cancel.xml", phone.sip_port, tmp_path, ring_ms=300) as sipp:
        incoming = await phone.app.next_call()
        await sipp.succeeds()
    with pytest.raises(openai.NotFoundError) as info:
        await phone.client.realtime.calls.accept(incoming.data.call_id, type="realtime")
    assert "hung up" in str(info.value)


async def test_hangup_sends_bye_and_closes_the_sideband(phone, tmp_path):
    async with Sipp("answered_until_bye.xml", phone.sip_port, tmp_path, pcap=speech_pcap(tmp_path)) as sipp:
        call_id = await answer(phone)
        reconnects: list = []
        async with phone.client.realtime.connect(call_id=call_id, on_reconnecting=reconnects.append) as conn:
            first = await conn.recv()
            assert first.type == "session.created"
            headers = {"Authorization": f"Bearer {phone.client.api_key}"}
            async with httpx.AsyncClient(base_url=phone.server.url, headers=headers) as http:
                listed = (await http.get("/v1/realtime/calls")).json()["data"]
                metrics = await http.get("/metrics")
            assert [(c["id"], c["transport"], c["codecs"]["audio"]["mime_type"]) for c in listed] == [
                (call_id, "sip", "audio/PCMU")]
            assert metrics.status_code == 200 and 'openrealtime_calls_active{state="connected"} 1.0' in metrics.text
            await phone.client.realtime.calls.hangup(call_id)
            rest = [event async for event in conn]
        await sipp.succeeds()
    assert not reconnects and all(e.type != "error" for e in rest)
    assert len(phone.server.state.calls) == 0


async def test_accept_validates_the_session_first(phone, tmp_path):
    async with Sipp("refused.xml", phone.sip_port, tmp_path, status=603) as sipp:
        call_id = (await phone.app.next_call()).data.call_id
        for bad in ({"instructions": 5}, {"output_modalities": ["video"]}, {"audio": {"output": {"speed": 9}}}):
            with pytest.raises(openai.BadRequestError):
                await phone.client.realtime.calls.accept(call_id, type="realtime", **bad)
        with pytest.raises(openai.BadRequestError):  # type is required
            await phone.client.post(f"/realtime/calls/{call_id}/accept", body={}, cast_to=type(None))
        await phone.client.realtime.calls.reject(call_id)  # still ringing after the bad bodies
        await sipp.succeeds()


@pytest.mark.parametrize("final", ["200 OK", "486 Busy Here"], ids=["transferred", "transfer-failed"])
async def test_refer(phone, tmp_path, final):
    target = "sip:agent@example.com"
    async with Sipp("refer.xml", phone.sip_port, tmp_path, target_re=target.replace(".", "\\."),
                    refer_status="202 Accepted", final_status=final) as sipp:
        call_id = await answer(phone)
        async with phone.client.realtime.connect(call_id=call_id) as conn:
            assert (await conn.recv()).type == "session.created"
            await phone.client.realtime.calls.refer(call_id, target_uri=target)
            await phone.client.realtime.calls.refer(call_id, target_uri=target)  # a retry: the same transfer
            if final.startswith("486"):
                error = await conn.recv()
                assert error.type == "error" and error.error.code == "call_transfer_failed"
                await phone.client.realtime.calls.hangup(call_id)  # the caller is still here: hang up
            rest = [event async for event in conn]
        await sipp.succeeds()
    assert all(e.type != "error" for e in rest)
    with pytest.raises(openai.BadRequestError):
        await phone.client.realtime.calls.refer(call_id, target_uri="not a uri")


async def test_hold_and_resume(phone, tmp_path):
    async with Sipp("hold.xml", phone.sip_port, tmp_path, pcap=speech_pcap(tmp_path, seconds=1.0), talk_ms=1200,
                    held_ms=1500) as sipp:
        call_id = await answer(phone)
        call = phone.server.state.calls.get(call_id)
        await wait_for(lambda: call.state == "held", timeout=20, what="the caller's hold")
        sent = call.leg.packets_out
        await asyncio.sleep(0.3)
        assert call.leg.packets_out == sent  # nothing is sent to a caller who holds
        await wait_for(lambda: call.state == "connected", timeout=20, what="the caller's resume")
        await wait_for(lambda: call.leg.packets_out > sent, timeout=5, what="audio again after resume")
        await sipp.succeeds()


async def test_retransmissions(phone, tmp_path):
    async with Sipp("retransmissions.xml", phone.sip_port, tmp_path) as sipp:
        await answer(phone)
        await sipp.succeeds()
    assert len(phone.app.deliveries) == 1  # the repeated INVITE made no second call
    assert sipp.received("SIP/2.0 200 OK") >= 3  # the 200 OK (INVITE) repeated until the ACK; the BYE's 200
    with pytest.raises(Exception):
        await asyncio.wait_for(phone.app.next_call(timeout=0.5), 2)


async def test_malformed_and_unacceptable_requests(phone, tmp_path):
    async with Sipp("malformed.xml", phone.sip_port, tmp_path) as sipp:
        await sipp.succeeds()
    assert phone.app.deliveries == []  # nothing rang


async def test_requests_inside_a_call(phone, tmp_path):
    """Session timers (RFC 4028), a key by SIP INFO, UPDATE, OPTIONS and an unknown method, in the dialog."""
    async with Sipp("in_call_requests.xml", phone.sip_port, tmp_path, wait_ms=1500) as sipp:
        call_id = await answer(phone)
        events, reconnects = await sideband_events(phone, call_id)
        await sipp.succeeds()
    assert [e.event for e in events if e.type == "input_audio_buffer.dtmf_event_received"] == ["#"]
    assert not reconnects


async def test_a_session_interval_under_the_minimum(phone, tmp_path):
    async with Sipp("session_interval_too_small.xml", phone.sip_port, tmp_path) as sipp:
        await sipp.succeeds()
    assert phone.app.deliveries == []



async def test_barge_in_and_truncation_follow_the_rtp_playout(tmp_path):
    """Scripted models (the model is incidental): the caller speaks, the answer plays over RTP, the caller
    speaks again over it: the playout is cleared and the item truncated at what the line actually played."""
    stack = fake_stack(llm=ScriptedLlm(" ".join(["word"] * 150)))
    async with phone_server(engine="local", models=stack) as phone:
        first, second = speech_pcap(tmp_path, seconds=1.5), speech_pcap(tmp_path, seconds=1.2)
        async with Sipp("call.xml", phone.sip_port, tmp_path, codec="PCMU", codec_pt=0, pcap=first,
                        dtmf_pcap=second, talk_ms=4000) as sipp:
            call_id = await answer(phone, audio={"input": {"turn_detection": {
                "type": "server_vad", "silence_duration_ms": 300}}})
            events, _ = await sideband_events(phone, call_id)
            await sipp.succeeds()
    types = [e.type for e in events]
    assert types.count("input_audio_buffer.speech_started") == 2
    started = types.index("output_audio_buffer.started")
    cleared = next(e for e in events if e.type == "output_audio_buffer.cleared")
    truncated = next(e for e in events if e.type == "conversation.item.truncated")
    assert started < types.index("output_audio_buffer.cleared") < types.index("conversation.item.truncated")
    assert 0 < truncated.audio_end_ms < 150 * 60  # cut where the RTP playout was, not at the answer's end
    assert cleared.response_id == events[started].response_id


async def test_digest_authentication(tmp_path, caplog):
    """`--sip-auth`: the first INVITE is challenged (401, Digest MD5 qop=auth); re-sent with the trunk's credentials
    it rings and is answered, the Authorization header kept out of the webhook and the password out of the logs."""
    async with phone_server(sip_auth=["trunk1:s3cret-pw", "trunk2:other"]) as phone:
        async with Sipp("authenticated.xml", phone.sip_port, tmp_path, user="trunk1", password="s3cret-pw") as sipp:
            incoming = await phone.app.next_call()
            assert not any(h.name.lower() == "authorization" for h in incoming.data.sip_headers)
            await phone.client.realtime.calls.accept(incoming.data.call_id, type="realtime")
            await sipp.succeeds()
        assert sipp.received("SIP/2.0 401") == 1 and len(phone.app.deliveries) == 1
        async with Sipp("auth_refused.xml", phone.sip_port, tmp_path, user="trunk1", password="wrong") as sipp:
            await sipp.succeeds()
        assert len(phone.app.deliveries) == 1  # the wrong password never rang
        assert phone.sip.counters["auth_failures"] == 1
    assert "s3cret-pw" not in caplog.text and "s3cret-pw" not in sipp.report()


async def test_an_invite_without_an_offer(phone, tmp_path):
    """Late offer: our offer in the 200 OK, the caller's answer (PCMA) in the ACK; the call hears itself and a key."""
    async with Sipp("late_offer.xml", phone.sip_port, tmp_path, codec="PCMA", codec_pt=8,
                    pcap=speech_pcap(tmp_path, "PCMA"), dtmf_pcap=DTMF_5, talk_ms=3000) as sipp:
        call_id = await answer(phone)
        call = phone.server.state.calls.get(call_id)
        events, _ = await sideband_events(phone, call_id)
        await sipp.succeeds()
    assert call.plan.codec == "PCMA" and call.leg.packets_in > 50 and call.leg.packets_out > 50
    assert [e.event for e in events if e.type == "input_audio_buffer.dtmf_event_received"] == ["5"]
    assert "output_audio_buffer.started" in [e.type for e in events]
