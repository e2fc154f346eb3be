"""Session engine event sequences over a recording transport with scripted models, on the inline
runtime (runtime_inline.py): model work runs on the loop in order, and `settle()` runs everything
that can run, so the tests neither sleep nor poll."""

import base64
import json

from openrealtime.protocol.session import RealtimeSessionConfig, parse_session_config
from openrealtime.runtime_inline import InlineRuntime
from openrealtime.session.engine import SessionEngine
from tests.support import RecordingTransport, ScriptedLlm, fake_stack, silence, speech


def make_engine(session: dict | None = None, *, llm=None, webrtc=True, runtime=None):
    transport = RecordingTransport(webrtc=webrtc)
    config = parse_session_config(session or {"type": "realtime"})
    engine = SessionEngine(transport, config, models=fake_stack(llm=llm), runtime=runtime or InlineRuntime())
    engine.start()
    return engine, transport


def send(engine, **event):
    engine.handle_message(json.dumps(event))


async def settle(engine):
    """Everything the session can do now is done (its runtime settles)."""
    await engine.runtime.settle()


async def feed(engine, pcm: bytes, chunk_ms: int = 20):
    """Microphone audio in `chunk_ms` pieces, as the media path delivers it, each heard before the next."""
    step = 48 * chunk_ms
    for i in range(0, len(pcm), step):
        engine.feed_audio(pcm[i:i + step])
        await settle(engine)


def after(types: list[str], first: str, then: str) -> bool:
    return types.index(first) < types.index(then)


async def test_session_created_first_and_update():
    engine, t = make_engine()
    assert t.types() == ["session.created"]
    send(engine, type="session.update", session={"type": "realtime", "instructions": "Be brief."})
    assert t.events[-1]["type"] == "session.updated"
    assert t.events[-1]["session"]["instructions"] == "Be brief."


async def test_text_turn_sequence():
    engine, t = make_engine()
    send(engine, type="conversation.item.create",
         item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]})
    send(engine, type="response.create", response={"output_modalities": ["text"]})
    await settle(engine)
    types = [x for x in t.types() if x != "response.output_text.delta"]
    assert types == ["session.created", "conversation.item.added", "conversation.item.done", "response.created",
                     "response.output_item.added", "conversation.item.added", "response.content_part.added",
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "conversation.item.done", "response.done"]
    done = t.of("response.done")[0]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"] == [{"type": "output_text", "text": "Paris is the capital of France."}]
    usage = done["usage"]
    assert usage["output_tokens"] == usage["output_token_details"]["text_tokens"] > 0
    assert usage["input_token_details"]["cached_tokens"] == 20
    assert "".join(e["delta"] for e in t.of("response.output_text.delta")) == "Paris is the capital of France."


async def test_voice_turn_with_server_vad_and_playout():
    engine, t = make_engine({"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 200}}}})
    await feed(engine, silence(500) + speech(800) + silence(600))
    started = t.of("input_audio_buffer.speech_started")[0]
    stopped = t.of("input_audio_buffer.speech_stopped")[0]
    assert 250 <= started["audio_start_ms"] <= 320  # 500 ms of silence minus 200 ms prefix padding
    assert 1300 + 300 - 40 <= stopped["audio_end_ms"] <= 1300 + 300 + 80  # includes the silence duration
    assert started["item_id"] == stopped["item_id"] == t.of("input_audio_buffer.committed")[0]["item_id"]
    types = t.types()
    for a, b in [("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"),
                 ("input_audio_buffer.speech_stopped", "input_audio_buffer.committed"),
                 ("input_audio_buffer.committed", "response.created"),
                 ("response.content_part.added", "response.output_audio_transcript.delta"),
                 ("response.output_audio.done", "response.output_audio_transcript.done"),
                 ("response.output_item.done", "response.done")]:
        assert after(types, a, b), (a, b, types)
    assert "response.output_audio.delta" not in types, "no audio deltas on WebRTC"
    part = t.of("response.content_part.added")[0]["part"]
    assert part == {"type": "audio", "transcript": ""}
    completed = t.of("conversation.item.input_audio_transcription.completed")[0]
    assert completed["transcript"] == "What is the capital of France?"
    assert completed["usage"]["type"] == "tokens"
    user_item = t.of("conversation.item.added")[0]["item"]
    assert user_item["content"] == [{"type": "input_audio", "transcript": None}]
    # playout: started after the first frame leaves, stopped when it has all played
    assert t.play(1) == 1
    await settle(engine)
    assert t.types().count("output_audio_buffer.started") == 1
    t.play(400)
    assert t.of("output_audio_buffer.stopped")[0]["response_id"] == t.of("response.done")[0]["response"]["id"]
    assert after(t.types(), "response.done", "output_audio_buffer.stopped")


async def test_transcription_logprobs_only_when_included():
    voice = {"transcription": {"model": "whisper-1"},
             "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}
    engine, t = make_engine({"type": "realtime", "include": ["item.input_audio_transcription.logprobs"],
                             "audio": {"input": voice}})
    await feed(engine, silence(300) + speech(600) + silence(500))
    completed = t.of("conversation.item.input_audio_transcription.completed")[0]
    delta = t.of("conversation.item.input_audio_transcription.delta")[0]
    assert "".join(lp["token"] for lp in completed["logprobs"]) == completed["transcript"]
    assert delta["logprobs"] == completed["logprobs"]
    assert all(set(lp) == {"token", "logprob", "bytes"} and lp["logprob"] <= 0 for lp in completed["logprobs"])
    plain, t2 = make_engine({"type": "realtime", "audio": {"input": voice}})
    await feed(plain, silence(300) + speech(600) + silence(500))
    assert "logprobs" not in t2.of("conversation.item.input_audio_transcription.completed")[0]


async def test_manual_commit_and_errors():
    engine, t = make_engine({"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    send(engine, type="input_audio_buffer.commit", event_id="e1")
    err = t.events[-1]
    assert err["type"] == "error" and err["error"]["code"] == "input_audio_buffer_commit_empty"
    assert err["error"]["event_id"] == "e1"
    send(engine, type="input_audio_buffer.append", audio=base64.b64encode(speech(400)).decode())
    await settle(engine)
    assert "input_audio_buffer.speech_started" not in t.types(), "no VAD when turn_detection is null"
    send(engine, type="input_audio_buffer.commit")
    assert t.types()[-3:] == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    await settle(engine)
    assert "response.created" not in t.types(), "commit does not create a response"
    send(engine, type="input_audio_buffer.append", audio=base64.b64encode(speech(200)).decode())
    send(engine, type="input_audio_buffer.clear")
    assert t.types()[-1] == "input_audio_buffer.cleared"
    send(engine, type="input_audio_buffer.commit")
    assert t.events[-1]["error"]["code"] == "input_audio_buffer_commit_empty"


async def test_out_of_band_response_leaves_conversation_alone():
    engine, t = make_engine()
    send(engine, type="conversation.item.create",
         item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]})
    send(engine, type="response.create", response={"conversation": "none", "output_modalities": ["text"],
                                                   "metadata": {"topic": "classification"}})
    await settle(engine)
    created = t.of("response.created")[0]["response"]
    assert created["conversation_id"] is None and created["metadata"] == {"topic": "classification"}
    assert t.types().count("conversation.item.added") == 1, "only the user's item"
    assert len(engine.conversation) == 1


async def test_cancel_and_cancel_not_active():
    engine, t = make_engine(llm=ScriptedLlm("one two three four five six seven eight nine ten " * 5))
    engine.runtime.pause("llm", after=3)  # the model has written three words and is still at it
    send(engine, type="conversation.item.create",
         item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Count"}]})
    send(engine, type="response.create")
    await settle(engine)
    assert len(t.of("response.output_audio_transcript.delta")) == 3 and not t.of("response.done")
    send(engine, type="response.create", event_id="dup")
    assert t.events[-1]["error"]["code"] == "conversation_already_has_active_response"
    send(engine, type="response.cancel")
    done = t.of("response.done")[0]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "client_cancelled"
    assert done["output"][0]["status"] == "incomplete"
    send(engine, type="response.cancel", event_id="c2")
    err = t.events[-1]
    assert err["error"]["code"] == "response_cancel_not_active" and err["error"]["event_id"] == "c2"
    engine.runtime.resume("llm")
    await settle(engine)
    assert len(t.of("response.done")) == 1, "the cancelled stream stops"


async def test_barge_in_truncates_at_played_audio():
    engine, t = make_engine({"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}},
        llm=ScriptedLlm("Paris is the capital of France. It is a large city with many museums and parks."))
    await feed(engine, speech(600) + silence(500))
    assert t.play(25) == 25  # 500 ms heard
    item_id = t.of("response.done")[0]["response"]["output"][0]["id"]
    await feed(engine, speech(800))  # real speech: longer than a backchannel (barge_in.py)
    cleared = t.of("output_audio_buffer.cleared")[0]
    truncated = t.of("conversation.item.truncated")[0]
    assert cleared["response_id"] == t.of("response.done")[0]["response"]["id"]
    assert truncated == {**truncated, "item_id": item_id, "content_index": 0, "audio_end_ms": 500}
    types = t.types()
    assert after(types, "input_audio_buffer.speech_started", "output_audio_buffer.cleared")
    assert after(types, "output_audio_buffer.cleared", "conversation.item.truncated")
    assert t.play(5) == 0, "queued audio was flushed"
    heard = engine.conversation.get(item_id).content[0].transcript
    assert heard and len(heard) < len("Paris is the capital of France. It is a large city with many museums and parks.")
    assert "museums" not in heard, "unheard words are dropped from the context"


async def test_barge_in_while_generating_cancels_with_turn_detected():
    engine, t = make_engine({"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}},
        llm=ScriptedLlm("word " * 200))
    engine.runtime.pause("llm", after=6)  # the first clause (three words) is written, the model goes on
    await feed(engine, speech(500) + silence(400))
    assert t.of("response.output_audio_transcript.delta") and not t.of("response.done")
    assert engine.transport.audio_out.queued_ms > 0, "the first clause's audio is queued"
    assert t.play(3) == 3
    await feed(engine, speech(800))
    done = t.of("response.done")[0]["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "turn_detected"
    types = t.types()
    assert after(types, "input_audio_buffer.speech_started", "response.done")
    assert after(types, "response.done", "output_audio_buffer.cleared")
    assert t.of("conversation.item.truncated")[0]["audio_end_ms"] == 60


async def test_tool_call_round_trip():
    llm = ScriptedLlm({"name": "get_weather", "arguments": '{"city": "Paris"}'}, "It is sunny in Paris.")
    engine, t = make_engine({"type": "realtime", "tools": [{"type": "function", "name": "get_weather",
                                                              "parameters": {"type": "object"}}]}, llm=llm)
    send(engine, type="conversation.item.create",
         item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]})
    send(engine, type="response.create")
    await settle(engine)
    done_args = t.of("response.function_call_arguments.done")[0]
    assert done_args["name"] == "get_weather" and json.loads(done_args["arguments"]) == {"city": "Paris"}
    assert done_args["call_id"] == "call_test123"
    assert "".join(e["delta"] for e in t.of("response.function_call_arguments.delta")) == done_args["arguments"]
    assert llm.requests[0].tools[0]["function"]["name"] == "get_weather"
    fc = t.of("response.done")[0]["response"]["output"][0]
    assert fc["type"] == "function_call" and fc["status"] == "completed"
    send(engine, type="conversation.item.create",
         item={"type": "function_call_output", "call_id": "call_test123", "output": '{"sky": "sunny"}'})
    send(engine, type="response.create")
    await settle(engine)
    assert len(t.of("response.done")) == 2
    second = llm.requests[1].messages
    assert second[-2]["tool_calls"][0]["id"] == "call_test123"
    assert second[-1] == {"role": "tool", "tool_call_id": "call_test123", "content": '{"sky": "sunny"}'}


async def test_item_ordering_and_item_errors():
    engine, t = make_engine()

    def create(text, **extra):
        send(engine, type="conversation.item.create", **extra,
             item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}], "id": text})

    create("a")
    create("b")
    create("c", previous_item_id="root")
    create("d", previous_item_id="a")
    assert [i.id for i in engine.conversation.items] == ["c", "a", "d", "b"]
    assert t.of("conversation.item.added")[-1]["previous_item_id"] == "a"
    create("e", previous_item_id="nope", event_id="x1")
    assert t.events[-1]["error"]["param"] == "previous_item_id" and t.events[-1]["error"]["event_id"] == "x1"
    send(engine, type="conversation.item.retrieve", item_id="d")
    assert t.events[-1]["type"] == "conversation.item.retrieved" and t.events[-1]["item"]["id"] == "d"
    send(engine, type="conversation.item.delete", item_id="d")
    assert t.events[-1] == {**t.events[-1], "type": "conversation.item.deleted", "item_id": "d"}
    for kind in ("conversation.item.retrieve", "conversation.item.delete"):
        send(engine, type=kind, item_id="d")
        assert t.events[-1]["error"]["code"] == "item_not_found"
    send(engine, type="conversation.item.truncate", item_id="a", content_index=0, audio_end_ms=10)
    assert t.events[-1]["error"]["param"] == "item_id"
    send(engine, type="conversation.item.create",
         item={"type": "function_call_output", "call_id": "call_missing", "output": "{}"})
    assert t.events[-1]["error"]["param"] == "item.call_id"


async def test_idle_timeout_triggers_a_response():
    engine, t = make_engine({"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300, "idle_timeout_ms": 5000}}}})
    await feed(engine, speech(500) + silence(500))
    assert t.of("response.done")
    t.play(500)
    assert t.of("output_audio_buffer.stopped")
    await feed(engine, silence(5200), chunk_ms=100)
    trig = t.of("input_audio_buffer.timeout_triggered")[0]
    assert trig["audio_end_ms"] - trig["audio_start_ms"] >= 5000
    assert len(t.of("response.done")) == 2


async def test_transcription_session_never_responds():
    transport = RecordingTransport()
    engine = SessionEngine(transport, parse_session_config({"type": "transcription"}), models=fake_stack(),
                           runtime=InlineRuntime())
    engine.start()
    await feed(engine, speech(500) + silence(800))
    assert transport.of("conversation.item.input_audio_transcription.completed")
    assert "response.created" not in transport.types()
    engine.handle_message(json.dumps({"type": "response.create"}))
    assert transport.events[-1]["type"] == "error"


async def test_websocket_transport_gets_audio_deltas():
    engine, t = make_engine(webrtc=False)
    send(engine, type="conversation.item.create",
         item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]})
    send(engine, type="response.create")
    await settle(engine)
    deltas = t.of("response.output_audio.delta")
    assert deltas and sum(len(base64.b64decode(d["delta"])) for d in deltas) > 0
    assert "output_audio_buffer.started" not in t.types()
    assert isinstance(engine.config, RealtimeSessionConfig)


async def test_input_buffer_overflow_is_an_error_not_a_crash():
    from openrealtime.session.engine import SessionLimits

    transport = RecordingTransport()
    config = parse_session_config({"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    engine = SessionEngine(transport, config, models=fake_stack(), limits=SessionLimits(max_input_buffer_ms=1000),
                           runtime=InlineRuntime())
    engine.start()
    await feed(engine, speech(1500))
    errors = transport.of("error")
    assert len(errors) == 1 and errors[0]["error"]["code"] == "input_audio_buffer_overflow"
    assert engine.buffer.duration_ms <= 1000
    send(engine, type="input_audio_buffer.commit")
    assert transport.types()[-3] == "input_audio_buffer.committed"


async def test_client_content_is_bounded_per_session_and_deleting_frees_it():
    """A client cannot make the server hold unbounded text/image data: past the session's budget an item
    is refused with an error (the session goes on); deleting items frees their share."""
    engine, t = make_engine()
    engine.limits.max_client_content_bytes = 3000
    text = "x" * 1200

    def create(item_id: str) -> None:
        send(engine, type="conversation.item.create", item={"id": item_id, "type": "message", "role": "user",
                                                            "content": [{"type": "input_text", "text": text}]})

    create("item_a")
    create("item_b")
    create("item_c")  # 3600 > 3000: refused
    errors = t.of("error")
    assert len(errors) == 1 and errors[0]["error"]["code"] == "conversation_size_limit", errors
    assert [i.id for i in engine.conversation.items] == ["item_a", "item_b"]
    send(engine, type="conversation.item.delete", item_id="item_a")
    create("item_c")
    assert [i.id for i in engine.conversation.items] == ["item_b", "item_c"] and len(t.of("error")) == 1
