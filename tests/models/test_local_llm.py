"""llama.cpp language model with the default Qwen2.5-Coder-1.5B: answers, tools, cancel, caching."""

from __future__ import annotations

import json
import threading

import pytest

from openrealtime.engines.base import ChatRequest, Finished, LanguageModel, TextDelta, ToolCallDelta
from openrealtime.engines.local.llm import LlamaCppLLM

pytestmark = pytest.mark.models

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIMER_TOOL = {
    "type": "function",
    "function": {
        "name": "set_timer",
        "description": "Start a countdown timer",
        "parameters": {"type": "object", "properties": {"minutes": {"type": "number"}}, "required": ["minutes"]},
    },
}


@pytest.fixture(scope="module")
def llm() -> LlamaCppLLM:
    model = LlamaCppLLM("qwen2.5-1.5b")
    model.warmup()
    return model


def run(llm, request, cancel=None):
    events = list(llm.stream_chat(request, cancel or threading.Event()))
    assert isinstance(events[-1], Finished)
    assert not any(isinstance(e, Finished) for e in events[:-1])
    return events


def text(events):
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_interface(llm):
    assert isinstance(llm, LanguageModel)
    assert llm.supports_images is False


def test_answers_a_factual_question_with_usage(llm):
    events = run(llm, ChatRequest(messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
                                  temperature=0.0))
    assert "Paris" in text(events)
    done = events[-1]
    assert done.reason == "stop"
    assert done.input_tokens > 10 and done.output_tokens >= 1
    # warmup cached the default system prompt, so the prefix is reused
    assert done.cached_tokens >= 20


def test_second_turn_reuses_the_cached_prefix_and_is_fast(llm):
    history = [{"role": "system", "content": "You are a terse geography quiz bot."},
               {"role": "user", "content": "Name the capital of Italy in one word."}]
    first = run(llm, ChatRequest(messages=history, temperature=0.0, max_tokens=8))
    history += [{"role": "assistant", "content": text(first)},
                {"role": "user", "content": "And of Spain? One word."}]
    second = run(llm, ChatRequest(messages=history, temperature=0.0, max_tokens=8))
    done = second[-1]
    # everything up to the first answer came from the KV cache: only the new turn was evaluated
    assert done.cached_tokens >= first[-1].input_tokens - 2, (done, first[-1])
    assert done.input_tokens - done.cached_tokens < 30
    assert "Madrid" in text(second)


def test_prefill_with_partial_words_leaves_only_the_tail_to_evaluate(llm):
    history = [{"role": "system", "content": "You are a terse geography quiz bot."},
               {"role": "user", "content": "Name the capital of Portugal in one word."}]
    cold = run(llm, ChatRequest(messages=history, temperature=0.0, max_tokens=8, session_key="prefill"))
    history.append({"role": "assistant", "content": text(cold)})
    partial = [*history, {"role": "user", "content": "And what is the capital city of"}]
    evaluated = llm.prefill(ChatRequest(messages=partial, session_key="prefill"))
    assert evaluated >= 8
    # a cancelled prefill evaluates nothing more
    cancel = threading.Event()
    cancel.set()
    assert llm.prefill(ChatRequest(messages=[*history, {"role": "user", "content": "Something else entirely"}],
                                   session_key="prefill"), cancel) == 0
    full = [*history, {"role": "user", "content": "And what is the capital city of Norway? One word."}]
    done = run(llm, ChatRequest(messages=full, temperature=0.0, max_tokens=8, session_key="prefill"))
    uncached = done[-1].input_tokens - done[-1].cached_tokens
    assert uncached <= 14, done[-1]  # the rest of the words and the assistant header
    assert "Oslo" in text(done)


def test_complete_prefill_leaves_nothing_to_evaluate_when_the_user_stops_there(llm):
    history = [{"role": "system", "content": "You are a terse geography quiz bot."},
               {"role": "user", "content": "What is the capital of Italy? One word."}]
    assert llm.prefill(ChatRequest(messages=history, session_key="complete"), complete=True) >= 10
    done = run(llm, ChatRequest(messages=history, temperature=0.0, max_tokens=8, session_key="complete"))
    assert done[-1].input_tokens - done[-1].cached_tokens == 1, done[-1]  # only the last token, for its logits
    assert "Rome" in text(done)


def test_tool_call_is_streamed_as_tool_call_delta(llm):
    events = run(llm, ChatRequest(messages=[{"role": "user", "content": "What's the weather like in Tokyo right now?"}],
                                  tools=[WEATHER_TOOL, TIMER_TOOL], temperature=0.0))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls, events
    assert calls[0].name == "get_weather" and calls[0].call_id.startswith("call_")
    assert "tokyo" in json.loads(calls[0].arguments)["city"].lower()
    assert "<tool_call>" not in text(events) and "{" not in text(events)
    assert events[-1].reason == "tool_calls"


def test_tool_result_turn_produces_an_answer(llm):
    messages = [
        {"role": "user", "content": "What's the weather like in Tokyo right now?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 21, "sky": "clear"}'},
    ]
    events = run(llm, ChatRequest(messages=messages, tools=[WEATHER_TOOL, TIMER_TOOL], temperature=0.0, max_tokens=40))
    assert "21" in text(events) and events[-1].reason == "stop"


def test_named_tool_choice_forces_that_tool(llm):
    events = run(llm, ChatRequest(messages=[{"role": "user", "content": "I'm flying to Oslo tomorrow."}],
                                  tools=[WEATHER_TOOL, TIMER_TOOL],
                                  tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                  temperature=0.0))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [c.name for c in calls] == ["get_weather"]
    assert "oslo" in calls[0].arguments.lower()


def test_tool_choice_none_hides_the_tools(llm):
    events = run(llm, ChatRequest(messages=[{"role": "user", "content": "What's the weather like in Tokyo? Reply in one sentence."}],
                                  tools=[WEATHER_TOOL, TIMER_TOOL], tool_choice="none", temperature=0.0, max_tokens=30))
    assert not any(isinstance(e, ToolCallDelta) for e in events)
    assert text(events).strip()


def test_cancel_stops_a_long_generation_promptly(llm):
    cancel = threading.Event()
    request = ChatRequest(messages=[{"role": "user", "content": "Count from 1 to 300, one number per line."}],
                          temperature=0.0, max_tokens=800)
    events = []
    for event in llm.stream_chat(request, cancel):
        events.append(event)
        if not cancel.is_set() and sum(isinstance(e, TextDelta) for e in events) == 5:
            cancel.set()
    done = events[-1]
    assert done.reason == "cancelled"
    assert done.output_tokens <= 6  # stopped at the next token, not at max_tokens
    assert sum(isinstance(e, TextDelta) for e in events) <= 6, "at most the token in flight after the cancel"


def test_max_tokens_ends_with_length(llm):
    events = run(llm, ChatRequest(messages=[{"role": "user", "content": "Write a long poem about the sea."}],
                                  temperature=0.0, max_tokens=5))
    assert events[-1].reason == "length" and events[-1].output_tokens == 5


def test_waiting_request_can_be_cancelled_while_another_runs(llm):
    first_started = threading.Event()
    results = {}

    def long_one():
        for event in llm.stream_chat(ChatRequest(messages=[{"role": "user", "content": "Tell me a long story."}],
                                                 temperature=0.0, max_tokens=20), threading.Event()):
            first_started.set()
            results["first"] = event

    worker = threading.Thread(target=long_one)
    worker.start()
    assert first_started.wait(30)
    cancel = threading.Event()
    cancel.set()
    queued = list(llm.stream_chat(ChatRequest(messages=[{"role": "user", "content": "Hi"}]), cancel))
    assert [type(e) for e in queued] == [Finished] and queued[0].reason == "cancelled"
    worker.join(60)
    assert results["first"].reason in ("length", "stop")


def test_images_are_dropped_not_fatal(llm):
    events = run(llm, ChatRequest(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Say OK."},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]}], temperature=0.0, max_tokens=5))
    assert events[-1].reason in ("stop", "length")


def test_interleaved_sessions_keep_their_own_cached_history(llm):
    histories = {
        "sess_a": [{"role": "system", "content": "You are assistant A. The code word is apple."}],
        "sess_b": [{"role": "system", "content": "You are assistant B. The code word is banana."}],
    }
    last = {}
    for question in ("What is the code word? One word.", "Say it again, one word."):
        for key, history in histories.items():
            history.append({"role": "user", "content": question})
            events = run(llm, ChatRequest(messages=history, temperature=0.0, max_tokens=6, session_key=key))
            history.append({"role": "assistant", "content": text(events)})
            last[key] = events[-1]
    # on its second turn each session got its own history back from a KV snapshot
    for key, done in last.items():
        assert done.input_tokens - done.cached_tokens < 25, (key, done)
    assert "apple" in histories["sess_a"][-1]["content"].lower()
    assert "banana" in histories["sess_b"][-1]["content"].lower()


def _concurrently(llm, requests: dict[str, ChatRequest], cancels: dict[str, threading.Event] | None = None,
                  on_event=None) -> dict[str, list]:
    """Each request's events, all streamed at once (one thread each, as the server's llm pool does)."""
    results: dict[str, list] = {}
    cancels = cancels or {}

    def consume(key: str) -> None:
        events = []
        for event in llm.stream_chat(requests[key], cancels.get(key, threading.Event())):
            events.append(event)
            if on_event is not None:
                on_event(key, events)
        results[key] = events

    threads = [threading.Thread(target=consume, args=(key,)) for key in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert set(results) == set(requests)
    return results


CODE_WORDS = {"sess_red": "apple", "sess_green": "banana", "sess_blue": "cherry"}


def test_concurrent_sessions_each_get_their_own_answer_and_history(llm):
    """Three conversations decoded in one batch: each answer comes from its own conversation, and each
    session's next turn reuses its own cached history, never another's."""
    histories = {key: [{"role": "system", "content": f"You are a quiz bot. The secret code word is {word}."}]
                 for key, word in CODE_WORDS.items()}
    for question in ("What is the secret code word? Answer with the word only.", "Say the code word again."):
        for history in histories.values():
            history.append({"role": "user", "content": question})
        requests = {key: ChatRequest(messages=list(history), temperature=0.0, max_tokens=8, session_key=key)
                    for key, history in histories.items()}
        results = _concurrently(llm, requests)
        for key, events in results.items():
            answer = text(events).lower()
            assert CODE_WORDS[key] in answer, (key, answer)
            assert not any(word in answer for other, word in CODE_WORDS.items() if other != key), (key, answer)
            histories[key].append({"role": "assistant", "content": text(events)})
    for key, events in results.items():  # the second turn: only the new words were evaluated
        done = events[-1]
        assert done.input_tokens - done.cached_tokens < 25, (key, done)
    for key in CODE_WORDS:
        llm.forget_session(key)


def test_cancelling_one_of_several_concurrent_replies_leaves_the_others_intact(llm):
    count = "Count from 1 to 12 in digits, separated by commas, nothing else."
    requests = {key: ChatRequest(messages=[{"role": "user", "content": count}], temperature=0.0, max_tokens=60,
                                 session_key=key) for key in ("sess_a", "sess_b", "sess_c")}
    cancels = {"sess_b": threading.Event()}

    def cancel_b_early(key: str, events: list) -> None:
        if key == "sess_b" and sum(isinstance(e, TextDelta) for e in events) == 3:
            cancels["sess_b"].set()

    results = _concurrently(llm, requests, cancels, on_event=cancel_b_early)
    assert results["sess_b"][-1].reason == "cancelled"
    assert results["sess_b"][-1].output_tokens <= 4
    for key in ("sess_a", "sess_c"):
        assert results[key][-1].reason in ("stop", "length")
        assert "10, 11, 12" in text(results[key]), text(results[key])
    for key in requests:
        llm.forget_session(key)
