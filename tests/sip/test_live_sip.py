"""A phone call as a Live session (`--sip-api live`), the application written with the stock openai-python SDK:
SIPp calls, the webhook is `live.transport.incoming {session_id: live_…, type: sip}`, the app answers with
`client.live.sessions.accept(session={type: "live", …})` and watches over `client.live.sideband.connect`: the
caller's words, the spoken answer, the caller's key (`transport.dtmf.received`) and `session.closed` when the
caller hangs up, every frame checked against the SDK's `ConnectServerEvent`. Scripted models answer."""

from __future__ import annotations

import openai
import pytest

from tests.live.conftest import SIDEBAND_EVENT, Reader
from tests.support import fake_stack
from tests.support.sip import SIPP, Sipp, phone_server, speech_pcap

pytestmark = pytest.mark.skipif(SIPP is None, reason="needs SIPp (Debian package sip-tester)")

DTMF_5 = "/usr/share/sip-tester/dtmf_2833_5.pcap"


async def test_a_phone_call_answered_as_a_live_session(tmp_path):
    async with phone_server(engine="local", models=fake_stack(), sip_api="live") as phone:
        with pytest.raises(openai.NotFoundError):  # no such call rings
            await phone.client.live.sessions.accept("live_nothing", session={"type": "live", "model": "gpt-live-1"})
        async with Sipp("call.xml", phone.sip_port, tmp_path, codec="PCMU", codec_pt=0,
                        pcap=speech_pcap(tmp_path, "PCMU"), dtmf_pcap=DTMF_5, talk_ms=3000) as sipp:
            incoming = await phone.app.next_call()
            assert incoming.type == "live.transport.incoming" and incoming.data.type == "sip"
            session_id = incoming.data.session_id
            assert session_id.startswith("live_") and incoming.data.sip_media_security == "rtp"
            with pytest.raises(openai.BadRequestError) as refused:  # SDP negotiates the format on a phone line
                await phone.client.live.sessions.accept(session_id, session={
                    "type": "live", "model": "gpt-live-1", "audio": {"format": {"type": "audio/pcmu", "rate": 8000}}})
            assert refused.value.body["param"] == "session.audio.format"
            await phone.client.live.sessions.accept(session_id, session={
                "type": "live", "model": "gpt-live-1", "instructions": "You answer the phone."})
            async with phone.client.live.sideband.connect(session_id=session_id) as sideband:
                reader = Reader(sideband, SIDEBAND_EVENT)
                started = await reader.next("session.started")
                assert started["session"]["id"] == session_id
                assert started["session"]["instructions"] == "You answer the phone."
                closed = await reader.next("session.closed", timeout=60)  # the caller's BYE
            await sipp.succeeds()
    assert closed["reason"] == "remote_hangup"
    assert "capital of France" in reader.text("session.input_transcript.delta")
    assert "Paris" in reader.text("session.output_transcript.delta")
    assert [e["event"] for e in reader.of("transport.dtmf.received")] == ["5"]
    assert reader.of("session.output_audio.delta")[0]["end_ms"] > 0  # the answer's audio, timed
