"""Every client event type, mutated around its schema, into a real SessionEngine (scripted models; the echo
engine; a beta connection's translation): each message is applied or answered with one `error` event that
blames the client, every server event validates, no response fails, and the session keeps answering."""

import asyncio
import base64
import random
import json
import threading

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from openrealtime.api.body import parse_offer_body
from openrealtime.api.errors import ApiError
from openrealtime.protocol import beta as beta_protocol
from openrealtime.protocol.errors import ProtocolError
from openrealtime.protocol.parse import error_event, parse_client_event
from openrealtime.protocol.server_events import to_json
from openrealtime.protocol.session import RealtimeSessionConfig
from openrealtime.session.engine import SessionEngine
from tests.fuzz.event_cases import VALID, event_case
from tests.fuzz.harness import EngineHarness, LoopErrors
from tests.support import RecordingTransport, ScriptedStt, fake_stack

# cases come from a seed; one session takes every case, so a failure depends on what came before: no shrinking
STATEFUL = settings(derandomize=True, deadline=None, database=None, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck))
PROBE_EVERY = 100


def fuzz_engine(mode: str, examples: int, *, beta: bool = False) -> dict[str, int]:
    loop = asyncio.new_event_loop()
    errors = LoopErrors()
    errors.install(loop)
    harness = EngineHarness(mode, beta=beta)
    loop.run_until_complete(harness.start())
    outcomes: dict[str, int] = {}

    @settings(STATEFUL, max_examples=examples)
    @given(seed=st.integers(0, 2**32 - 1))
    def fuzz(seed):
        _kind, raw = event_case(random.Random(seed), huge=1 << 14)
        outcome = loop.run_until_complete(harness.run(raw))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if sum(outcomes.values()) % PROBE_EVERY == 0:
            loop.run_until_complete(harness.check_alive())
        assert errors.take() == []

    try:
        fuzz()
        loop.run_until_complete(harness.check_alive())
        assert errors.take() == []
    finally:
        harness.close()
        loop.close()
    return outcomes


def test_every_event_type_has_valid_instances_that_are_applied():
    loop = asyncio.new_event_loop()
    harness = EngineHarness("local")
    try:
        loop.run_until_complete(harness.start())
        accepted = set()
        for kind, instances in VALID.items():
            for event in instances:
                if loop.run_until_complete(harness.run(json.dumps(event))) == "accepted":
                    accepted.add(kind)
            loop.run_until_complete(harness.check_alive())
        assert accepted == set(VALID) - {"conversation.item.delete", "response.cancel"}, accepted
    finally:
        harness.close()
        loop.close()


def test_mutated_events_on_the_local_engine():
    outcomes = fuzz_engine("local", 2000)
    assert outcomes.get("accepted", 0) > 50 and len(outcomes) > 8, outcomes


def test_mutated_events_on_the_echo_engine():
    outcomes = fuzz_engine("echo", 500)
    assert outcomes.get("accepted") and len(outcomes) > 4, outcomes


def test_mutated_events_through_the_beta_translation():
    fuzz_engine("local", 800, beta=True)


# ---- what the fuzzing found ---------------------------------------------------------------------------------
def _error(raw: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_event(raw)
    to_json(error_event(info.value))  # the error event itself can be sent
    return info.value


def test_a_number_python_will_not_convert_is_invalid_json():
    # json.loads raised a plain ValueError ("Exceeds the limit (4300 digits)"), which escaped the session
    err = _error('{"type": "session.update", "n": ' + "9" * 5000 + "}")
    assert err.code == "invalid_json" and "digits" in err.message
    with pytest.raises(ApiError) as info:
        parse_offer_body("application/json", b'{"sdp": "v=0", "x": ' + b"1" * 4301 + b"}")
    assert info.value.status == 400 and info.value.error.code == "invalid_json"


def test_lone_surrogates_are_invalid_json():
    # "\ud800" decodes to a str that can never be encoded to UTF-8: the first event echoing it failed to send
    assert _error('{"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": '
                  '[{"type": "input_text", "text": "\\ud800"}]}}').code == "invalid_json"
    assert _error(b'{"type": "response.create", "event_id": "\\udc00"}').code == "invalid_json"
    event = parse_client_event('{"type": "response.create", "event_id": "\\ud83d\\ude00"}')  # a pair is fine
    assert event.event_id == "\U0001F600"
    with pytest.raises(ApiError) as info:
        parse_offer_body("application/json", b'{"sdp": "v=0", "session": {"instructions": "\\ud800"}}')
    assert info.value.error.code == "invalid_json"


def test_a_sniffed_event_id_with_a_lone_surrogate_is_dropped():
    err = _error('{"type": "response.create", "event_id": "\\ud800", ')
    assert err.code == "invalid_json" and err.event_id is None


async def test_a_voice_locked_session_update_with_a_non_object_audio_is_an_error():
    harness = EngineHarness("local")
    await harness.start()  # the assistant has spoken: the voice is locked
    for audio in ([1], "x", {"output": ["marin"]}):
        outcome = await harness.run(json.dumps({"type": "session.update", "session": {"type": "realtime",
                                                                                       "audio": audio}}))
        assert outcome == "error:invalid_type", (audio, outcome)
    await harness.check_alive()
    harness.close()


@pytest.mark.parametrize("fmt", ["audio/pcm", "audio/pcmu"])
async def test_an_empty_audio_append_is_accepted(fmt):
    harness = EngineHarness("local")
    await harness.start()
    format_obj = {"type": fmt, "rate": 24000} if fmt == "audio/pcm" else {"type": fmt}
    assert await harness.run(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"format": format_obj}}}})) == "accepted"
    assert await harness.run('{"type": "input_audio_buffer.append", "audio": ""}') == "accepted"
    assert harness.engine.buffer.duration_ms == 0
    await harness.check_alive()
    harness.close()


@pytest.mark.parametrize("event", [
    {"type": "conversation.item.create", "item": {"type": "message", "role": "assistant",
                                                  "content": [{"type": {"x": 1}, "text": "hi"}]}},
    {"type": "session.update", "session": {"input_audio_format": "pcm16", "audio": {"input": "x"}}},
    {"type": "session.update", "session": {"voice": "alloy", "audio": {"output": [1]}}},
    {"type": "response.create", "response": {"voice": "alloy", "audio": "x"}},
    {"type": "response.create", "response": {"voice": "alloy", "audio": {"output": 5}}},
])
async def test_beta_translation_leaves_bad_shapes_for_validation(event):
    harness = EngineHarness("local", beta=True)
    await harness.start()
    assert (await harness.run(json.dumps(event))).startswith("error:invalid_")
    await harness.check_alive()
    harness.close()


def test_beta_translation_fills_a_null_response_audio():
    text = beta_protocol.client_text_to_ga(json.dumps({"type": "response.create", "response": {
        "voice": "marin", "audio": None}}), 1 << 20)
    assert json.loads(text)["response"]["audio"] == {"output": {"voice": "marin"}}


class GatedStt(ScriptedStt):
    """Transcribes once `release` is set."""

    def __init__(self) -> None:
        super().__init__("the words")
        self.release = threading.Event()

    def transcribe(self, audio, **kw):
        self.release.wait(10)
        return super().transcribe(audio, **kw)


async def test_cancelling_a_response_does_not_cancel_the_transcription_it_waits_for():
    # the response awaited the transcripts with gather(), whose cancellation cancelled them: the
    # transcription task then failed (InvalidStateError), no completed event, and later turns had no words
    stt = GatedStt()
    transport = RecordingTransport()
    engine = SessionEngine(transport, RealtimeSessionConfig(), models=fake_stack(stt=stt))
    engine.start()
    loop = asyncio.get_running_loop()
    errors: list = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    engine.handle_message(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}, "turn_detection": None}}}}))
    audio = base64.b64encode(bytes(4800)).decode()
    engine.handle_message(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_audio", "audio": audio}]}}))
    engine.handle_message('{"type": "response.create"}')
    await asyncio.sleep(0.05)
    engine.handle_message('{"type": "response.cancel"}')
    stt.release.set()
    for _ in range(200):
        if transport.of("conversation.item.input_audio_transcription.completed"):
            break
        await asyncio.sleep(0.01)
    assert transport.of("conversation.item.input_audio_transcription.completed")[0]["transcript"] == "the words"
    assert transport.of("response.done")[0]["response"]["status"] == "cancelled"
    assert errors == []
    engine.close()
