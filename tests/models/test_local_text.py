"""Model-free pieces of the local engines: tool-call stream parsing, clause splitting, resampling.

Not marked `models`: these run in the ordinary suite (numpy only, no weights)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from openrealtime.engines.base import TextDelta, ToolCallDelta
from openrealtime.audio.resample import resample
from openrealtime.engines.local.toolcalls import ToolCallStreamParser, parse_call
from openrealtime.engines.local.tts import clean_text, group_clauses, split_clauses

_ids = (f"call_{i}" for i in itertools.count())


def run_parser(pieces, tools=("get_weather",), prefill=""):
    parser = ToolCallStreamParser(tools_offered=list(tools), new_call_id=lambda: next(_ids), prefill=prefill)
    events = []
    for piece in pieces:
        events += parser.feed(piece)
    events += parser.finish()
    return events, parser


def text_of(events):
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def calls_of(events):
    return [(e.name, json.loads(e.arguments)) for e in events if isinstance(e, ToolCallDelta)]


def chars(s):
    return list(s)  # worst case: one character per token


@pytest.mark.parametrize("split", [lambda s: [s], chars])
def test_tagged_call_never_leaks_markup(split):
    raw = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    events, parser = run_parser(split(raw))
    assert text_of(events) == "Let me check.\n"
    assert calls_of(events) == [("get_weather", {"city": "Paris"})]
    assert "<" not in text_of(events)


def test_plain_text_streams_immediately_except_a_possible_tag_prefix():
    parser = ToolCallStreamParser(tools_offered=["get_weather"], new_call_id=lambda: "c")
    assert text_of(parser.feed("Paris is lovely")) == "Paris is lovely"
    assert text_of(parser.feed(" <tool")) == " "  # held back: could be <tool_call>
    assert text_of(parser.feed("bar> ok")) == "<toolbar> ok"


def test_two_calls_get_consecutive_indexes():
    raw = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
           '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>')
    events, _ = run_parser(chars(raw))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [d.index for d in deltas] == [0, 1]
    assert text_of(events) == ""
    assert len({d.call_id for d in deltas}) == 2


def test_unterminated_call_and_doubled_braces_are_recovered():
    events, _ = run_parser(['<tool_call>\n{{"name": "get_weather", "arguments": {"city": "Oslo"}}}\n'])
    assert calls_of(events) == [("get_weather", {"city": "Oslo"})]


def test_bare_json_reply_becomes_a_call_only_for_offered_tools():
    events, _ = run_parser(chars('```json\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n```'))
    assert calls_of(events) == [("get_weather", {"city": "Lima"})] and text_of(events) == ""
    events, parser = run_parser(['{"name": "tell_joke", "arguments": {}}'])
    assert events == [] and parser.dropped  # never spoken, flagged for a retry
    events, _ = run_parser(['{not json at all}'])
    assert text_of(events) == "{not json at all}"


def test_prefilled_call_is_completed_by_the_generated_arguments():
    events, _ = run_parser([' {"city": "Kyiv"}}\n</tool_call>'],
                           prefill='<tool_call>\n{"name": "get_weather", "arguments":')
    assert calls_of(events) == [("get_weather", {"city": "Kyiv"})]


def test_tools_alias_tag_only_when_tools_are_offered():
    raw = '<tools>\n{"name": "get_weather", "arguments": {"city": "Nice"}}\n</tools>'
    assert calls_of(run_parser([raw])[0]) == [("get_weather", {"city": "Nice"})]
    assert text_of(run_parser([raw], tools=())[0]) == raw


def test_parse_call_argument_shapes():
    assert parse_call('{"name": "f", "arguments": "{\\"a\\": 1}"}') == ("f", '{"a": 1}')
    assert parse_call('{"name": "f"}') == ("f", "{}")
    assert parse_call('{"function": {"name": "f", "arguments": {"a": 1}}}') == ("f", '{"a": 1}')
    assert parse_call("[1, 2]") is None


def test_clause_splitting_keeps_numbers_and_abbreviations():
    assert split_clauses("Hello there, how are you? Dr. Smith paid $5.50. Fine!") == [
        "Hello there,", "how are you?", "Dr. Smith paid $5.50.", "Fine!"]
    groups = group_clauses(split_clauses("Yes. Well, the weather in Paris is sunny, about twenty degrees."), 24)
    assert groups == [["Yes."], ["Well,", "the weather in Paris is sunny,"], ["about twenty degrees."]]


def test_clean_text_strips_markdown():
    assert clean_text("**Paris** is the [capital](http://x.y) of `France`.\n- one\n1. two") == \
        "Paris is the capital of France. one two"


@pytest.mark.parametrize("src,dst", [(22050, 24000), (24000, 16000), (22050, 16000), (48000, 24000)])
def test_resample_preserves_in_band_tones(src, dst):
    t = np.arange(src) / src
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    y = resample(x, src, dst)
    assert y.dtype == np.float32 and abs(y.size - dst) <= 1
    ref = np.sin(2 * np.pi * 1000 * np.arange(y.size) / dst)
    assert np.max(np.abs(y[500:-500] - ref[500:-500])) < 1e-3


def test_resample_rejects_aliases():
    src = 24000
    x = np.sin(2 * np.pi * 11000 * np.arange(src) / src).astype(np.float32)  # above 8 kHz Nyquist
    y = resample(x, src, 16000)
    assert np.sqrt(np.mean(y[500:-500] ** 2)) < 1e-3
