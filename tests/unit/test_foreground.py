"""The foreground gate: the in-process LLM steps aside while a reply's first clause is synthesized."""

from __future__ import annotations

import threading
import time

from openrealtime.engines.foreground import ForegroundGate

from tests.support import ToneTts
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


def test_a_transcription_hold_pauses_the_model_but_not_a_reply_s_first_words():
    gate = ForegroundGate(max_pause_s=0.05)
    with gate.hold(first_words=False):  # a turn's final transcription
        assert gate.held
        assert gate.pause_point(first_words=True) == 0.0  # another user's first words go on
        assert gate.pause_point() > 0  # other work waits (here: until max_pause_s)
        with gate.hold():  # a first clause's synthesis pauses the first words too
            assert gate.pause_point(first_words=True) > 0
    assert not gate.held and gate.pauses == 2


class RecordingTts(ToneTts):
    def __init__(self, gate: ForegroundGate) -> None:
        self.gate = gate
        self.held: list[tuple[str, bool]] = []

    def synthesize(self, text, *, voice, speed, cancel):
        self.held.append((text, self.gate.held))
        yield from super().synthesize(text, voice=voice, speed=speed, cancel=cancel)


async def test_only_the_first_clause_is_synthesized_in_the_foreground():
    engine, t = make_engine()
    tts = engine.models.tts = RecordingTts(engine.runtime.gate)
    send(engine, type="conversation.item.create",
         item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]})
    send(engine, type="response.create")
    await settle(engine)
    assert len(tts.held) >= 2, tts.held
    assert tts.held[0][1] is True and all(not held for _text, held in tts.held[1:]), tts.held
    assert not engine.runtime.gate.held


def test_an_announced_hold_is_waited_for_and_then_its_work():
    gate = ForegroundGate(max_pause_s=5.0)
    order: list[str] = []

    def foreground() -> None:  # starts a little after the announcement, as a TTS thread does
        time.sleep(0.03)
        with gate.hold():
            time.sleep(0.03)
            order.append("foreground done")

    gate.expect(within_s=2.0)
    thread = threading.Thread(target=foreground)
    thread.start()
    gate.pause_point()
    order.append("background resumed")
    thread.join()
    assert order == ["foreground done", "background resumed"]
    assert gate.pause_point() == 0.0  # the announcement was used up by the hold


def test_an_announced_hold_that_never_comes_expires():
    gate = ForegroundGate(max_pause_s=3600.0)  # only the announcement's own expiry can end this pause
    announced = time.monotonic()
    gate.expect(within_s=0.05)
    waited: list[float] = []

    def background() -> None:
        waited.append(gate.pause_point())
        waited.append(time.monotonic())

    thread = threading.Thread(target=background, daemon=True)
    thread.start()
    thread.join(60)
    assert waited, "the pause outlived its announcement"
    assert waited[0] > 0 and waited[1] >= announced + 0.05, "it waited for the announced hold until it expired"
    assert gate.pause_point() == 0.0 and gate.pauses == 1


def test_the_model_thread_announces_the_first_clause_on_the_delta_that_completes_it(monkeypatch):
    from openrealtime.engines.base import Finished, TextDelta
    from openrealtime.session import clauses

    announced: list[int] = []
    seen: list[int] = []
    gate = ForegroundGate()
    monkeypatch.setattr(gate, "expect", lambda *a, **k: announced.append(len(seen)))
    deltas = [TextDelta(text=t) for t in ["The", " capital", " of", " France", " is", " Paris", "."]] + [Finished(reason="stop")]
    for delta in clauses.announcing_first_clause(iter(deltas), gate):
        seen.append(1)
    # " is" (the 5th delta) completes "The capital of France": announced before it is handed on, once
    assert announced == [4] and len(seen) == len(deltas)
    announced.clear(), seen.clear()
    list(clauses.announcing_first_clause(iter(deltas), gate, spoken=False))
    assert announced == []
