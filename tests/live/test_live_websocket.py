"""OpenAI's Live API over a WebSocket (`client.live.connect()`), with the stock openai-python SDK, on scripted
models (spec `../shared/spec/openai-live.md` §5, items 1-7, 10-12): the session's lifecycle, strict
validation with `client_event_id` on every error, a spoken turn on one timeline the SDK's transcript grouper
accepts, the declared audio formats, output paced at real time and cut by barge-in, mute, the context
appends, session.update, fixtures and usage."""

from __future__ import annotations

import base64
import time

import numpy as np

from openrealtime.audio.convert import g711_encode
from tests.live.conftest import START, Reader, client_for, live_server, send_pcm, validated
from tests.support import ScriptedLlm, silence, speech

TURN = silence(200) + speech(800) + silence(1200)  # one spoken turn, then the pause that ends it


async def test_start_then_close_ends_the_iterator_cleanly(server):
    async with client_for(server).live.connect() as conn:
        reader = Reader(conn)
        await conn.session.start(session=START, event_id="s1")
        started = await reader.next("session.started")
        assert started["client_event_id"] == "s1"
        session = started["session"]
        assert session["id"].startswith("live_") and session["status"] == "active"
        assert session["audio"] == {"format": {"type": "audio/pcm", "rate": 24000}, "output": {"voice": "marin"}}
        assert session["delegation"]["type"] == "client" and session["expires_at"] > time.time()
        await conn.session.close(event_id="c1")
        closed = await reader.next("session.closed")
        assert closed["reason"] == "close_requested" and closed["client_event_id"] == "c1"
        assert closed["usage"]["seconds"] >= 0 and closed["session"]["id"] == session["id"]
        async for event in conn:  # the server closes with 1000: the SDK's iterator just stops
            validated(event)
        await reader.grouper.close()


async def test_bad_commands_get_errors_with_client_event_id_and_the_session_goes_on(server):
    async with client_for(server).live.connect() as conn:
        reader = Reader(conn)
        await conn.session.input_audio.mute(event_id="early")
        error = (await reader.next("error"))["error"]
        assert error["code"] == "session_not_started" and error["client_event_id"] == "early"
        await conn.session.start(session={**START, "voice": "marin"}, event_id="s0")
        event = await reader.next("error")
        assert event["client_event_id"] == "s0"
        assert (event["error"]["code"], event["error"]["param"]) == ("unknown_parameter", "session.voice")
        await conn.session.start(session={"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcm",
                                                                                      "rate": 44100}}},
                                 event_id="s1")
        assert (await reader.next("error"))["error"]["param"] == "session.audio.format.rate"
        await conn.session.start(session=START, event_id="s2")
        assert (await reader.next("session.started"))["client_event_id"] == "s2"
        await conn.session.start(session=START, event_id="s3")
        assert (await reader.next("error"))["error"]["code"] == "session_already_started"
        await conn.response.create(event_id="r1")  # client delegation: no Responses backend
        error = (await reader.next("error"))["error"]
        assert error["client_event_id"] == "r1" and "responses delegation" in error["message"]
        await conn.send({"type": "session.commit", "event_id": "x1"})
        error = (await reader.next("error"))["error"]
        assert error["param"] == "type" and "session.input_audio.append" in error["message"]
        await conn.send({"type": "decision.create", "event_id": "d1"})
        assert (await reader.next("error"))["error"]["code"] == "unsupported_delegation"
        await conn.session.input_audio.mute(event_id="m1")  # still serving
        assert (await reader.next("session.input_audio.muted"))["client_event_id"] == "m1"


async def test_refused_configurations_name_their_field(server):
    cases = [
        ({"delegation": {"type": "decisions", "decisions": {"model": "d", "questions": []}}},
         "unsupported_delegation", "session.delegation.type"),
        ({"delegation": {"type": "responses", "responses": {"model": "m", "tools": [{"type": "web_search"}]}}},
         "unsupported_tool", "session.delegation.responses.tools[0]"),
        ({"store": True}, "unsupported_value", "session.store"),
        ({"triggers": [{"type": "decisions"}]}, "unsupported_triggers", "session.triggers"),
        ({"client": {"data_channel": {"allowed_client_events": []}}}, "invalid_value", "session.client"),
    ]
    async with client_for(server).live.connect() as conn:
        reader = Reader(conn)
        for n, (extra, code, param) in enumerate(cases):
            await conn.session.start(session={**START, **extra}, event_id=f"s{n}")
            error = (await reader.next("error"))["error"]
            assert (error["code"], error["param"], error["client_event_id"]) == (code, param, f"s{n}")


async def test_a_spoken_turn_on_one_timeline(server):
    async with client_for(server).live.connect() as conn:
        reader = Reader(conn)
        await conn.session.start(session=START)
        await reader.next("session.started")
        await send_pcm(conn, TURN)
        heard = await reader.next("session.input_transcript.delta")
        assert heard["delta"] == "What is the capital of France?"
        assert 0 <= heard["start_ms"] <= 200 < 1000 <= heard["end_ms"] <= 2200
        await reader.next(lambda e: "France." in reader.text("session.output_transcript.delta"))
        await reader.next("session.output_audio.delta")
        await reader.drain(1.0)
        assert reader.text("session.output_transcript.delta") == "Paris is the capital of France."
        audio = b"".join(base64.b64decode(e["delta"]) for e in reader.of("session.output_audio.delta"))
        assert len(audio) % 2 == 0 and np.abs(np.frombuffer(audio, "<i2")).max() > 1000
        timed = [e for e in reader.seen if "start_ms" in e]
        assert all(isinstance(e["start_ms"], int) and e["start_ms"] <= e["end_ms"] for e in timed)
        starts = [e["start_ms"] for e in timed if e["type"].endswith("transcript.delta")]
        assert starts == sorted(starts)
        ids = [e["event_id"] for e in reader.seen]
        assert len(ids) == len(set(ids))
        await conn.session.close()
        await reader.next("session.closed")
        await reader.grouper.close()
        assert [(s.speaker, s.text) for s in reader.segments] == [
            ("user", "What is the capital of France?"), ("assistant", "Paris is the capital of France.")]


async def _spoken_output(server, fmt: dict) -> tuple[bytes, float]:
    """The reply to TURN in format `fmt`: its bytes, and its duration at that format's rate and width."""
    async with client_for(server).live.connect() as conn:
        reader = Reader(conn)
        await conn.session.start(session={"model": "gpt-live-1", "audio": {"format": fmt}})
        await reader.next("session.started")
        pcm = TURN
        if fmt["type"] == "audio/pcm" and fmt["rate"] == 16000:
            pcm = np.frombuffer(TURN, "<i2")[::3].repeat(2).tobytes()  # crude 24 -> 16 kHz: still speech
        elif fmt["type"] != "audio/pcm":
            pcm = g711_encode(TURN, fmt["type"].split("/")[1])
        for i in range(0, len(pcm), 1600):
            await conn.session.input_audio.append(audio=base64.b64encode(pcm[i:i + 1600]).decode())
        await reader.next("session.output_audio.delta")
        await reader.drain(1.5)
        audio = b"".join(base64.b64decode(e["delta"]) for e in reader.of("session.output_audio.delta"))
        width = 2 if fmt["type"] == "audio/pcm" else 1
        return audio, len(audio) / width / fmt["rate"]


async def test_output_audio_in_each_declared_format(server):
    durations = {}
    for fmt in ({"type": "audio/pcm", "rate": 24000}, {"type": "audio/pcm", "rate": 16000},
                {"type": "audio/pcmu", "rate": 8000}, {"type": "audio/pcma", "rate": 8000}):
        audio, seconds = await _spoken_output(server, fmt)
        assert audio, fmt
        durations[f"{fmt['type']}/{fmt['rate']}"] = seconds
    reference = durations["audio/pcm/24000"]
    assert reference > 0.3
    assert all(abs(seconds - reference) < 0.05 for seconds in durations.values()), durations


async def test_output_is_paced_at_real_time_and_barge_in_cuts_it():
    reply = " ".join(["word"] * 60)  # 60 words of tone: 3.6 s of speech; the answer to the interruption is short
    async with live_server(ScriptedLlm(reply, "Okay.")) as server:
        async with client_for(server).live.connect() as conn:
            reader = Reader(conn)
            await conn.session.start(session=START)
            await reader.next("session.started")
            await send_pcm(conn, TURN)
            await reader.next("session.output_audio.delta")
            first = time.monotonic()
            await reader.drain(1.2)
            sent_ms = sum(len(base64.b64decode(e["delta"])) for e in reader.of("session.output_audio.delta")) / 48
            # paced: after 1.2 s, at most 1.2 s (plus the lead, plus scheduling) of the 3.6 s went out
            assert sent_ms <= (time.monotonic() - first) * 1000 + 400, sent_ms
            await send_pcm(conn, speech(1500) + silence(600))  # the user talks over it
            await reader.drain(3.0)
        total_ms = sum(len(base64.b64decode(e["delta"])) for e in reader.of("session.output_audio.delta")) / 48
        assert total_ms < 3000, total_ms  # cut: the rest of the 3.6 s never went out


async def test_mute_silences_input_until_unmute(server):
    async with client_for(server).live.connect() as conn:
        reader = Reader(conn)
        await conn.session.start(session=START)
        await reader.next("session.started")
        await conn.session.input_audio.mute(event_id="m1")
        assert (await reader.next("session.input_audio.muted"))["client_event_id"] == "m1"
        await send_pcm(conn, TURN)
        await reader.drain(1.0)
        assert not reader.of("session.input_transcript.delta") and not reader.of("session.output_audio.delta")
        await conn.session.input_audio.unmute(event_id="u1")
        assert (await reader.next("session.input_audio.unmuted"))["client_event_id"] == "u1"
        await send_pcm(conn, TURN)
        assert (await reader.next("session.input_transcript.delta"))["start_ms"] >= len(TURN) // 48 - 100


async def test_context_appends_are_acknowledged_and_commentary_is_spoken():
    llm = ScriptedLlm("The shop closes at six.")
    async with live_server(llm) as server:
        async with client_for(server).live.connect() as conn:
            reader = Reader(conn)
            await conn.session.start(session=START)
            await reader.next("session.started")
            await send_pcm(conn, silence(500))
            for kind, resource in (("instructions", conn.session.instructions),
                                   ("thinking", conn.session.thinking)):
                await resource.append(content=f"{kind} from the app", delegation_id=None, event_id=kind)
                acked = await reader.next(f"session.{kind}.appended")
                assert acked["client_event_id"] == kind and acked["start_ms"] <= acked["end_ms"]
            assert not llm.requests  # nothing spoken for those
            await conn.session.commentary.append(content="The shop closes at six.", delegation_id=None,
                                                 event_id="c1")
            assert (await reader.next("session.commentary.appended"))["client_event_id"] == "c1"
            await reader.next(lambda e: "six." in reader.text("session.output_transcript.delta"))
            await reader.next("session.output_audio.delta")
            notes = [m["content"] for m in llm.requests[-1].messages if m["role"] == "system"]
            assert any("instructions from the app" in n for n in notes)
            assert any("thinking from the app" in n for n in notes)
            assert any("The shop closes at six." in n for n in notes)
            await conn.session.thinking.append(content="x", delegation_id="deleg_nope", event_id="t2")
            error = (await reader.next("error"))["error"]
            assert (error["param"], error["client_event_id"]) == ("delegation_id", "t2")
            await conn.session.thinking.append(content="x" * 2001, delegation_id=None, event_id="t3")
            assert (await reader.next("error"))["error"]["param"] == "content"


async def test_session_update_changes_delegation_settings_only(server):
    responses = {"type": "responses", "responses": {"model": "gpt-5", "instructions": "Be exact."}}
    async with client_for(server).live.connect() as conn:
        reader = Reader(conn)
        await conn.session.start(session={**START, "delegation": responses})
        assert (await reader.next("session.started"))["session"]["delegation"]["responses"]["model"] == "gpt-5"
        await conn.session.update(session={"delegation": {"type": "responses", "responses": {
            "instructions": "Be brief."}}}, event_id="u1")
        updated = await reader.next("session.updated")
        assert updated["client_event_id"] == "u1"
        assert updated["session"]["delegation"]["responses"] == {"model": "gpt-5", "instructions": "Be brief."}
        await conn.session.update(session={"delegation": {"type": "client"}}, event_id="u2")
        error = (await reader.next("error"))["error"]
        assert (error["param"], error["client_event_id"]) == ("session.delegation.type", "u2")
        await conn.session.update(session={"instructions": "no"}, event_id="u3")
        assert (await reader.next("error"))["error"]["param"] == "session.instructions"


async def test_fixture_plays_then_reports_played(server):
    async with client_for(server).live.connect() as conn:
        reader = Reader(conn)
        await conn.session.start(session=START)
        await reader.next("session.started")
        tone = (0.3 * 32767 * np.sin(np.arange(24000) * 2 * np.pi * 440 / 24000)).astype("<i2").tobytes()
        await conn.session.output_audio.fixture.play(audio=base64.b64encode(tone).decode(), event_id="f1")
        assert (await reader.next("session.output_audio.fixture.playing"))["client_event_id"] == "f1"
        await conn.session.instructions.append(content="x", delegation_id=None, event_id="a1")
        error = (await reader.next("error"))["error"]
        assert (error["code"], error["client_event_id"]) == ("fixture_playing", "a1")
        await send_pcm(conn, silence(1200))  # input during playback is dropped; the session clock goes on
        assert (await reader.next("session.output_audio.fixture.played", timeout=10))["client_event_id"] == "f1"
        played = sum(len(base64.b64decode(e["delta"])) for e in reader.of("session.output_audio.delta"))
        assert played == len(tone)
        await conn.session.output_audio.fixture.play(audio=base64.b64encode(bytes(48 * 31_000)).decode(),
                                                     event_id="f2")
        error = (await reader.next("error"))["error"]
        assert (error["param"], error["client_event_id"]) == ("audio", "f2")


async def test_usage_is_reported_as_the_session_goes_on():
    async with live_server() as server:
        async with client_for(server).live.connect() as conn:
            reader = Reader(conn)
            await conn.session.start(session=START)
            await reader.next("session.started")
            await send_pcm(conn, silence(40_000))  # 40 s of the session's timeline
            await reader.next(lambda e: len(reader.of("session.usage.updated")) >= 2, timeout=30)
            seconds = [e["usage"]["seconds"] for e in reader.of("session.usage.updated")]
            assert seconds == sorted(seconds) and seconds[0] >= 15
            await conn.session.close()
            closed = await reader.next("session.closed")
            assert closed["usage"]["seconds"] >= seconds[-1] >= 30


async def test_the_transcript_grouper_accepts_a_whole_conversation(server):
    """Two turns, each answered: the grouper sees user, assistant, user, assistant."""
    async with client_for(server).live.connect() as conn:
        reader = Reader(conn)
        await conn.session.start(session=START)
        await reader.next("session.started")
        for _ in range(2):
            await send_pcm(conn, TURN)
            await reader.next("session.output_audio.delta")
            await reader.drain(0.8)
            await send_pcm(conn, silence(3000))
        await conn.session.close()
        await reader.next("session.closed")
    await reader.grouper.close()
    assert [s.speaker for s in reader.segments] == ["user", "assistant", "user", "assistant"]


async def test_a_live_session_holds_a_model_pool_lease_and_a_full_pool_refuses_the_next():
    """`--llm-max-sessions 1`: while one Live WebSocket session lives, the next is refused with 429
    model_capacity_exceeded (the handshake's reply); once it ends the pool admits again."""
    import pytest
    from openai import APIStatusError
    from websockets.exceptions import InvalidStatus

    async with live_server(llm_max_sessions=1) as srv:
        async with client_for(srv).live.connect() as first:
            reader = Reader(first)
            await first.session.start(session=START)
            await reader.next("session.started")
            with pytest.raises((InvalidStatus, APIStatusError)) as refused:
                async with client_for(srv).live.connect() as second:
                    await second.session.start(session=START)
                    await Reader(second).next("session.started")
            response = getattr(refused.value, "response", None)
            assert response is not None and response.status_code == 429, refused.value
            await first.session.close()
            await reader.next("session.closed")

        async def admitted() -> bool:  # the lease goes when the first session's socket has closed
            try:
                async with client_for(srv).live.connect() as again:
                    await again.session.start(session=START)
                    await Reader(again).next("session.started")
                return True
            except (InvalidStatus, APIStatusError):
                return False

        from tests.support import wait_for

        await wait_for(admitted, timeout=20, what="a Live session admitted once the first one ended")
