"""The foreground gate: the in-process LLM steps aside while a reply's first clause is synthesized."""

from __future__ import annotations

import threading
import time

from openrealtime.engines.foreground import FOREGROUND, ForegroundGate

from tests.unit.fakes import ToneTts
from tests.unit.test_engine_turns import make_engine, send, settle


def test_pause_point_returns_at_once_when_nothing_is_held():
    gate = ForegroundGate()
    assert gate.pause_point() == 0.0
    assert gate.pauses == 0


def test_pause_point_waits_until_the_holder_is_done():
    gate = ForegroundGate(max_pause_s=5.0)
    entered, release, order = threading.Event(), threading.Event(), []

    def holder() -> None:
        with gate.hold():
            entered.set()
            release.wait(5)
            order.append("foreground done")

    thread = threading.Thread(target=holder)
    thread.start()
    entered.wait(5)
    threading.Timer(0.05, release.set).start()
    waited = gate.pause_point()
    order.append("background resumed")
    thread.join()
    assert order == ["foreground done", "background resumed"]
    assert waited > 0 and gate.pauses == 1 and not gate.held


def test_a_stuck_holder_cannot_starve_the_background():
    gate = ForegroundGate(max_pause_s=0.05)
    with gate.hold():
        gate.pause_point()  # returns after max_pause_s although the hold is still on
        assert gate.held and gate.pauses == 1
    assert not gate.held


class RecordingTts(ToneTts):
    def __init__(self) -> None:
        self.held: list[tuple[str, bool]] = []

    def synthesize(self, text, *, voice, speed, cancel):
        self.held.append((text, FOREGROUND.held))
        time.sleep(0.01)
        yield from super().synthesize(text, voice=voice, speed=speed, cancel=cancel)


async def test_only_the_first_clause_is_synthesized_in_the_foreground():
    engine, t = make_engine()
    tts = engine.models.tts = RecordingTts()
    send(engine, type="conversation.item.create",
         item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]})
    send(engine, type="response.create")
    await settle(t, "response.done")
    assert len(tts.held) >= 2, tts.held
    assert tts.held[0][1] is True and all(not held for _text, held in tts.held[1:]), tts.held
    assert not FOREGROUND.held
