"""Operator view: /metrics, the live-calls admin API, the demo page route, POST /v1/tools/inspect-sdp,
and the call id on log records."""

import asyncio
import json
import logging
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from openrealtime.api.embedded import embedded_server
from openrealtime.client.rtc import RealtimeRtcClient
from openrealtime.observability.logs import CallIdFilter, JsonFormatter
from tests.support import assert_openai_error, server_settings, speechlike, wait_for

FIXTURE_OFFER = Path(__file__).resolve().parent.parent / "fixtures" / "chromium-156-offer.sdp"


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict, name: str, **labels) -> float:
    for fam in fams.values():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise KeyError((name, labels))


async def test_metrics_and_calls_api_during_and_after_a_call(echo_server):
    url = echo_server.url
    client = RealtimeRtcClient(url, session={"type": "realtime", "instructions": "Metrics."})
    before_connect = time.monotonic()
    assert (await client.connect()).status_code == 201
    await client.next_event("session.created")
    client.mic.play(speechlike(1.0).tobytes())
    client.send({"type": "input_audio_buffer.clear", "event_id": "evt_clear"})
    client.send({"type": "no.such.event"})
    await client.next_event("input_audio_buffer.cleared")
    await client.next_event("error")
    call = echo_server.state.calls.get(client.call_id)
    await wait_for(lambda: call.inbound is not None and call.inbound.voiced_frames > 5, 10, interval=0.05)

    async with httpx.AsyncClient() as http:
        for _ in range(50):  # RTP counters are read from getStats() at scrape time
            r = await http.get(url + "/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            fams = families(r.text)
            if min(sample(fams, "openrealtime_rtp_packets_total", direction=d, kind="audio") for d in ("in", "out")) > 10:
                break
            await asyncio.sleep(0.2)
        assert sample(fams, "openrealtime_calls_active", state="connected") == 1
        assert sample(fams, "openrealtime_call_setup_seconds_count") == 1
        assert 0 < sample(fams, "openrealtime_call_setup_seconds_sum") <= time.monotonic() - before_connect
        assert sample(fams, "openrealtime_rtp_packets_total", direction="in", kind="audio") > 10
        assert sample(fams, "openrealtime_rtp_packets_total", direction="out", kind="audio") > 10
        assert sample(fams, "openrealtime_rtp_bytes_total", direction="out", kind="audio") > 0
        assert sample(fams, "openrealtime_transport_bytes_total", direction="in") > 0
        assert sample(fams, "openrealtime_datachannel_events_total", direction="out", type="session.created") == 1
        assert sample(fams, "openrealtime_datachannel_events_total", direction="in",
                      type="input_audio_buffer.clear") == 1
        assert sample(fams, "openrealtime_errors_total", code="invalid_value") == 1
        assert sample(fams, "openrealtime_ready") == 1
        for stage in ("vad", "asr", "llm", "tts"):
            assert sample(fams, "openrealtime_inference_queue_depth", stage=stage) >= 0
        assert "openrealtime_voice_to_voice_seconds" in fams
        assert "openrealtime_model_stage_seconds" in fams

        r = await http.get(url + "/v1/realtime/calls", headers={"Authorization": "Bearer k"})
        assert r.status_code == 200, r.text
        listing = r.json()
        assert listing["object"] == "list" and [c["id"] for c in listing["data"]] == [client.call_id]
        info = listing["data"][0]
        assert info["state"] == "connected" and info["client"] == "127.0.0.1"
        assert info["duration_s"] > 0 and info["setup_ms"] is not None
        pair = info["selected_candidate_pair"]
        assert pair["protocol"] == "udp" and pair["local"]["address"] == "127.0.0.1"
        assert pair["local"]["port"] == echo_server.state.mux.udp_port
        assert info["codecs"]["audio"]["mime_type"].lower() == "audio/opus"
        assert info["rtp"]["audio"]["packets_in"] > 10

        r = await http.get(url + f"/v1/realtime/calls/{client.call_id}", headers={"Authorization": "Bearer k"})
        detail = r.json()
        types = [(e["direction"], e["type"]) for e in detail["recent_events"]]
        assert ("out", "session.created") in types and ("in", "input_audio_buffer.clear") in types
        assert ("out", "error") in types
        assert len(detail["recent_events"]) <= 50

        assert_openai_error(await http.get(url + "/v1/realtime/calls/rtc_nope", headers={"Authorization": "Bearer k"}),
                            404, "call_not_found")
        assert_openai_error(await http.get(url + "/v1/realtime/calls"), 401)

    await client.close()
    await wait_for(lambda: echo_server.state.calls.get(client.call_id) is None, 40, interval=0.05)
    async with httpx.AsyncClient() as http:
        fams = families((await http.get(url + "/metrics")).text)
    assert sample(fams, "openrealtime_calls_active", state="connected") == 0
    assert sum(s.value for s in fams["openrealtime_calls_ended"].samples) == 1
    # counters of the ended call are kept (never go backwards)
    assert sample(fams, "openrealtime_rtp_packets_total", direction="in", kind="audio") > 10
    assert sample(fams, "openrealtime_datachannel_events_total", direction="out", type="session.created") == 1


async def test_admin_routes_need_a_server_key():
    settings = server_settings(engine="echo", api_keys=["sk-admin"])
    async with embedded_server(settings) as server:
        async with httpx.AsyncClient() as http:
            assert_openai_error(await http.get(server.url + "/v1/realtime/calls",
                                               headers={"Authorization": "Bearer sk-wrong"}), 401)
            minted = await http.post(server.url + "/v1/realtime/client_secrets", json={},
                                     headers={"Authorization": "Bearer sk-admin"})
            ek = minted.json()["value"]
            assert_openai_error(await http.get(server.url + "/v1/realtime/calls",
                                               headers={"Authorization": f"Bearer {ek}"}), 401)
            r = await http.get(server.url + "/v1/realtime/calls", headers={"Authorization": "Bearer sk-admin"})
            assert r.status_code == 200 and r.json()["data"] == []
            # with keys configured, /metrics needs one as well
            assert_openai_error(await http.get(server.url + "/metrics"), 401)
            r = await http.get(server.url + "/metrics", headers={"Authorization": "Bearer sk-admin"})
            assert r.status_code == 200 and "openrealtime_calls_active" in r.text
            # inspect-sdp accepts ephemeral keys like the calls endpoint
            r = await http.post(server.url + "/v1/tools/inspect-sdp", content=FIXTURE_OFFER.read_text(),
                                headers={"Authorization": f"Bearer {ek}", "Content-Type": "application/sdp"})
            assert r.status_code == 200, r.text


async def test_demo_page_and_inspect_sdp_route(echo_server):
    offer = FIXTURE_OFFER.read_text()
    async with httpx.AsyncClient() as http:
        r = await http.get(echo_server.url + "/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "<title>" in r.text and "oai-events" in r.text
        assert "https://" not in r.text.replace("https://api.openai.com", ""), "no CDN / external resources"

        auth = {"Authorization": "Bearer k"}
        r = await http.post(echo_server.url + "/v1/tools/inspect-sdp", content=offer,
                            headers={**auth, "Content-Type": "application/sdp"})
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["type"] == "offer" and report["summary"]
        assert {m["kind"] for m in report["media"]} >= {"audio", "application"}
        r2 = await http.post(echo_server.url + "/v1/tools/inspect-sdp", json={"sdp": offer}, headers=auth)
        assert r2.json()["summary"] == report["summary"]
        assert_openai_error(await http.post(echo_server.url + "/v1/tools/inspect-sdp", content="hello",
                                            headers=auth), 400, "invalid_sdp")
        assert_openai_error(await http.post(echo_server.url + "/v1/tools/inspect-sdp", json={"x": 1},
                                            headers=auth), 400)
        assert_openai_error(await http.post(echo_server.url + "/v1/tools/inspect-sdp", content=offer), 401)


async def test_log_records_carry_the_call_id(echo_server):
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Capture()
    handler.addFilter(CallIdFilter())
    logger = logging.getLogger("openrealtime")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        client = RealtimeRtcClient(echo_server.url)
        assert (await client.connect()).status_code == 201
        await client.next_event("session.created")
        await client.close()
        await wait_for(lambda: echo_server.state.calls.get(client.call_id) is None, 40, interval=0.05)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    mine = [r for r in records if r.name == "openrealtime.call"]
    assert mine and all(r.call_id == client.call_id for r in mine), [(r.getMessage(), r.call_id) for r in mine]
    assert any("state=closed" in r.getMessage() for r in mine)
    line = json.loads(JsonFormatter().format(mine[-1]))
    assert line["call_id"] == client.call_id
