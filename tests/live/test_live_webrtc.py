"""OpenAI's Live API over WebRTC with the stock openai-python SDK (spec §5, items 13-16): `client.live.create`
with an aiortc offer answers on the media edge, `session.started` on the data channel (any label), audio both
ways; the sideband (`client.live.sideband.connect`) sees reflected input and timed output audio and may close
the session; data-channel permissions; `client.live.sessions.hangup`; what answers with an error."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pytest
from aiortc import RTCSessionDescription

from openrealtime.client.rtc import RealtimeRtcClient
from tests.live.conftest import KEY, SERVER_EVENT, SIDEBAND_EVENT, Reader, client_for, validated
from tests.support import speechlike, wait_for

MEDIA = {"model": "gpt-live-1"}


class LiveRtc:
    """An aiortc peer (microphone track, a data channel named `events` rather than `oai-events`) whose offer
    goes through `client.live.create`."""

    def __init__(self, server: Any) -> None:
        self.api = client_for(server)
        self.rtc = RealtimeRtcClient(server.url, api_key=KEY)
        self.id: str | None = None

    async def create(self, session: dict[str, Any]) -> Any:
        pc = self.rtc.pc
        await pc.setLocalDescription(await pc.createOffer())
        created = await self.api.live.create(session=session, transport={"type": "webrtc",
                                                                          "sdp": pc.localDescription.sdp})
        self.id = created.session.id
        await pc.setRemoteDescription(RTCSessionDescription(sdp=created.transport.sdp, type="answer"))
        return created

    async def next(self, type_: str, timeout: float = 15.0) -> dict[str, Any]:
        event = await self.rtc.next_event(type_, timeout=timeout)
        return validated({k: v for k, v in event.items() if k != "_t"})

    def seen(self) -> list[dict[str, Any]]:
        events = [{k: v for k, v in e.items() if k != "_t"} for e in self.rtc.log]
        for event in events:
            SERVER_EVENT.validate_python(event, strict=True)
        return events

    def speak(self, seconds: float) -> None:
        self.rtc.mic.play(speechlike(seconds, rate=48000, steady=True).tobytes() + bytes(96 * 1500))

    async def close(self) -> None:
        await self.rtc.close()


@pytest.fixture
async def peer(server):
    peer = LiveRtc(server)
    yield peer
    await peer.close()


async def test_a_webrtc_session_talks_both_ways(server, peer):
    created = await peer.create(MEDIA)
    assert created.session.id.startswith("live_") and created.transport.type == "webrtc"
    started = await peer.next("session.started")
    assert started["session"]["id"] == created.session.id and "format" not in started["session"]["audio"]
    peer.speak(1.0)
    heard = await peer.next("session.input_transcript.delta")
    assert heard["delta"] == "What is the capital of France?"
    await peer.next("session.output_transcript.delta")
    await wait_for(lambda: peer.rtc.audio.voiced_frames > 5, timeout=15)  # the answer, spoken over RTP
    assert not [e for e in peer.seen() if e["type"] == "session.output_audio.delta"]  # audio rides RTP only
    call = server.state.calls.get(created.session.id)
    assert call is not None and call.engine.id == created.session.id


async def test_the_sideband_sees_everything_and_can_close_the_session(server, peer):
    created = await peer.create(MEDIA)
    await peer.next("session.started")
    async with client_for(server).live.sideband.connect(session_id=created.session.id,
                                                        graceful_close=True) as sideband:
        reader = Reader(sideband, SIDEBAND_EVENT)
        assert (await reader.next("session.started"))["session"]["id"] == created.session.id  # the replay
        reflected = await reader.next("session.input_audio.append")
        assert "event_id" not in reflected and base64.b64decode(reflected["audio"])
        peer.speak(1.0)
        out = await reader.next(lambda e: e["type"] == "session.output_audio.delta", timeout=20)
        assert 0 <= out["start_ms"] < out["end_ms"] and base64.b64decode(out["delta"])
        await sideband.session.input_audio.mute(event_id="m1")  # a sideband command: everyone sees the ack
        assert (await reader.next("session.input_audio.muted"))["client_event_id"] == "m1"
        await peer.next("session.input_audio.muted")
        await sideband.send({"type": "session.input_audio.append", "audio": "AAAA", "event_id": "a1"})
        error = (await reader.next("error"))["error"]  # not from a sideband; answered to it alone
        assert error["client_event_id"] == "a1"
        await sideband.session.close(event_id="c1")
        closed = await reader.next("session.closed")
        assert closed["reason"] == "close_requested" and closed["client_event_id"] == "c1"
        assert (await peer.next("session.closed"))["session"]["id"] == created.session.id
        async for event in sideband:  # the call ends: the sideband closes normally
            validated(event, SIDEBAND_EVENT)
    await wait_for(lambda: server.state.calls.get(created.session.id) is None, timeout=10)


async def test_data_channel_permissions_restrict_the_frontend_not_the_sideband(server, peer):
    created = await peer.create({**MEDIA, "client": {"data_channel": {
        "allowed_client_events": [], "allowed_server_events": [{"type": "session.output_transcript.delta"}]}}})
    info = await peer.next("info")
    assert info["code"] == "data_channel_permissions"
    peer.rtc.send({"type": "session.input_audio.mute", "event_id": "m1"})
    error = (await peer.next("error"))["error"]
    assert (error["code"], error["client_event_id"]) == ("event_not_allowed", "m1")
    async with client_for(server).live.sideband.connect(session_id=created.session.id) as sideband:
        reader = Reader(sideband, SIDEBAND_EVENT)
        await reader.next("session.started")
        await sideband.session.input_audio.mute(event_id="m2")
        await reader.next("session.input_audio.muted")
        await sideband.session.input_audio.unmute()
        await reader.next("session.input_audio.unmuted")
        peer.speak(1.0)
        await reader.next("session.output_transcript.delta", timeout=20)
        await peer.next("session.output_transcript.delta")
    kinds = {e["type"] for e in peer.seen()}
    assert kinds == {"info", "error", "session.output_transcript.delta"}, kinds


async def test_hangup_closes_the_session_and_its_sidebands(server, peer):
    created = await peer.create(MEDIA)
    await peer.next("session.started")
    api = client_for(server)
    async with api.live.sideband.connect(session_id=created.session.id) as sideband:
        reader = Reader(sideband, SIDEBAND_EVENT)
        await reader.next("session.started")
        assert await api.live.sessions.hangup(created.session.id) is None
        closed = await reader.next("session.closed")
        assert closed["reason"] == "close_requested"
    with pytest.raises(openai.NotFoundError) as caught:
        await api.live.sessions.hangup(created.session.id)
    assert caught.value.body["code"] == "session_not_found"


async def test_what_is_not_built_answers_with_a_clear_error(server):
    api = client_for(server)
    for call, code in ((api.live.sessions.accept("live_x", session={"type": "live", "model": "gpt-live-1"}),
                        "sip_not_supported"),
                       (api.live.sessions.reject("live_x", status_code=486), "sip_not_supported"),
                       (api.live.sessions.refer("live_x", target_uri="tel:+14155550100"), "sip_not_supported"),
                       (api.live.sessions.download_recording("live_x"), "recording_not_found")):
        with pytest.raises(openai.APIStatusError) as caught:
            await call
        assert 400 <= caught.value.status_code < 500 and caught.value.body["code"] == code
    offer_peer = RealtimeRtcClient(server.url, api_key=KEY)
    try:
        await offer_peer.pc.setLocalDescription(await offer_peer.pc.createOffer())
        transport = {"type": "webrtc", "sdp": offer_peer.pc.localDescription.sdp}
        cases = [({**MEDIA, "delegation": {"type": "responses", "responses": {
                      "model": "gpt-5", "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]}}},
                   "unsupported_tool", "session.delegation.responses.tools[1]"),
                 ({**MEDIA, "delegation": {"type": "decisions", "decisions": {"model": "d", "questions": []}}},
                  "unsupported_delegation", "session.delegation.type"),
                 ({**MEDIA, "audio": {"format": {"type": "audio/pcm", "rate": 24000}}}, "invalid_value",
                  "session.audio.format"),
                 ({**MEDIA, "voice": "marin"}, "unknown_parameter", "session.voice")]
        for session, code, param in cases:
            with pytest.raises(openai.BadRequestError) as caught:
                await api.live.create(session=session, transport=transport)
            assert (caught.value.body["code"], caught.value.body["param"]) == (code, param), caught.value.body
    finally:
        await offer_peer.close()
    assert not server.state.calls.all()

