"""Conversation truncation (`truncation`): a sticky window that keeps the model's cached prefix."""

import json

from openrealtime.protocol.items import FunctionCallItem, FunctionCallOutputItem, InputTextContent, UserMessageItem
from openrealtime.session import chat_request as engine_module
from openrealtime.session.conversation import ContextWindow
from tests.support import ScriptedLlm
from tests.unit.test_engine_turns import make_engine, settle


def user(i: int, n: int = 100) -> UserMessageItem:
    return UserMessageItem(id=f"u{i}", content=[InputTextContent(text="x" * n)])


def size_of(item) -> int:
    return 100


def test_window_moves_only_on_overflow_and_then_keeps_the_retention_share():
    window = ContextWindow()
    items = [user(i) for i in range(10)]  # 1000 chars
    assert window.select(items, size_of, budget=1000, retention=0.5) == items and window.first_kept is None
    items.append(user(10))  # 1100 > 1000: cut down to ≤ 500
    kept = window.select(items, size_of, budget=1000, retention=0.5)
    assert [i.id for i in kept] == ["u6", "u7", "u8", "u9", "u10"] and window.first_kept == "u6"
    for n in range(11, 16):  # the next turns reuse the same start until the budget overflows again
        items.append(user(n))
        assert window.select(items, size_of, budget=1000, retention=0.5)[0].id == "u6"
    items.append(user(16))  # u6..u16 = 1100 > 1000
    assert window.select(items, size_of, budget=1000, retention=0.5)[0].id == "u12"


def test_disabled_never_cuts_and_a_tool_output_never_leads():
    items = [user(i) for i in range(20)]
    assert len(ContextWindow().select(items, size_of, budget=500, retention=None)) == 20
    call = FunctionCallItem(id="c1", call_id="call_1", name="f", arguments="{}")
    output = FunctionCallOutputItem(id="o1", call_id="call_1", output="{}")
    items = [user(0), call, output, user(1), user(2)]
    kept = ContextWindow().select(items, size_of, budget=400, retention=0.5)
    assert [i.id for i in kept] == ["u1", "u2"]


async def test_engine_keeps_the_prompt_prefix_across_turns(monkeypatch):
    monkeypatch.setattr(engine_module, "CONTEXT_CHARS", 2000)
    llm = ScriptedLlm("Noted.")
    engine, t = make_engine({"type": "realtime", "truncation": {"type": "retention_ratio", "retention_ratio": 0.5}},
                            llm=llm)
    firsts = []
    for turn in range(12):
        engine.handle_message(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"{turn} " + "y" * 300}]}}))
        engine.handle_message(json.dumps({"type": "response.create", "response": {"output_modalities": ["text"]}}))
        await settle(engine)
        firsts.append(llm.requests[-1].messages[1]["content"][:3].strip())
        assert sum(len(m["content"] or "") for m in llm.requests[-1].messages[1:]) <= 2000
    # first overflow at turn 6 (6 × 306 chars + answers > 2000); the start then holds for several turns
    assert all(m["role"] == "user" for m in (r.messages[1] for r in llm.requests)), "the window starts at a user turn"
    changes = [i for i in range(1, len(firsts)) if firsts[i] != firsts[i - 1]]
    assert 1 <= len(changes) <= 3, firsts
    assert all(b - a >= 3 for a, b in zip(changes, changes[1:])), firsts


async def test_token_limit_after_instructions_tightens_the_budget():
    llm = ScriptedLlm("Noted.")
    engine, t = make_engine({"type": "realtime", "truncation": {
        "type": "retention_ratio", "retention_ratio": 0.5, "token_limits": {"post_instructions": 200}}}, llm=llm)
    for turn in range(6):
        engine.handle_message(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"{turn} " + "z" * 300}]}}))
        engine.handle_message(json.dumps({"type": "response.create", "response": {"output_modalities": ["text"]}}))
        await settle(engine)
        # 200 tokens ≈ 800 characters after the instructions (far under the default budget)
        assert sum(len(m["content"] or "") for m in llm.requests[-1].messages[1:]) <= 200 * engine_module.CHARS_PER_TOKEN
    # without the limit all six turns fit the default budget; with it the oldest are cut
    assert not llm.requests[-1].messages[1]["content"].startswith(("0 ", "1 ", "2 "))


async def test_a_negative_token_limit_is_rejected():
    engine, t = make_engine({"type": "realtime"})
    engine.handle_message(json.dumps({"type": "session.update", "session": {"type": "realtime", "truncation": {
        "type": "retention_ratio", "retention_ratio": 0.5, "token_limits": {"post_instructions": -1}}}}))
    await settle(engine)
    error = t.of("error")[-1]["error"]
    # the error names the field inside the object, not the union's other members ("auto", "disabled")
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_value", error
    assert error["param"] == "session.truncation.token_limits.post_instructions", error
