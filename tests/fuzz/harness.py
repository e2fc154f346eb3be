"""Runners that feed fuzz cases to the real code the network reaches and judge the outcome.

Each `run()` returns a short outcome label ("answered", "error:invalid_json", "accepted", "dropped"...) for
the tallies, and raises `FuzzFailure` when the case ended in anything else than a clear 4xx / `error` event
or a silent drop: an exception out of the server's code, an event that does not validate, an error the
server blames on itself, a session that no longer answers. The suite's property tests and bench/fuzz.py
both use them.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from typing import Any

from openrealtime.media.call import CallOptions, RealtimeCall
from openrealtime.media.ice import IceSettings
from openrealtime.media.ice_mux import MuxSet
from openrealtime.protocol import beta as beta_protocol
from openrealtime.protocol.errors import ProtocolError
from openrealtime.protocol.parse import parse_server_event
from openrealtime.protocol.session import RealtimeSessionConfig
from openrealtime.session.engine import SessionEngine, SessionLimits
from tests.unit.fakes import RecordingTransport, fake_stack

from .event_cases import ASSISTANT_ITEM, CALL_ID, USER_ITEM

LOOP = "127.0.0.1"
# `error` codes that are about the server, not the client, but expected where they occur
EXPECTED_SERVER_CODES = {"model_not_available"}


class FuzzFailure(AssertionError):
    """A case that crashed, hung or confused the code under test."""


def describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)[-6:])


class LoopErrors:
    """Collects what the event loop's exception handler sees (task exceptions nobody retrieved...)."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []
        self._previous = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(lambda _loop, context: self.errors.append(context))

    def take(self) -> list[str]:
        out = [f"{c.get('message')}: {c.get('exception')!r} "
               f"{describe(c['exception']) if c.get('exception') else c.get('handle') or c.get('task')}"
               for c in self.errors]
        self.errors.clear()
        return out


# ---- SDP offers -------------------------------------------------------------------------------------
class OfferHarness:
    """`RealtimeCall.answer()` (validate_offer, aiortc's negotiation, our answer policy) on the shared ICE
    ports, then hangup; afterwards no call may be left attached to the ports."""

    def __init__(self) -> None:
        self.mux: MuxSet | None = None
        self.ice: IceSettings | None = None
        self.n = 0

    async def start(self) -> None:
        self.mux = MuxSet([(LOOP, LOOP)], udp_port=0, tcp_port=0)
        await self.mux.start()
        self.ice = IceSettings(addresses=((LOOP, LOOP),), mux=self.mux)

    async def run(self, sdp: str) -> str:
        self.n += 1
        call = RealtimeCall(f"rtc_fuzz{self.n}", CallOptions(ice=self.ice, connect_timeout_s=30),
                            lambda transport: SessionEngine(transport, RealtimeSessionConfig(), mode="echo"))
        try:
            answer = await call.answer(sdp)
        except ProtocolError as exc:
            if exc.code != "invalid_offer" or not exc.message:
                raise FuzzFailure(f"unexpected ProtocolError {exc.code}: {exc.message}") from None
            outcome = "invalid_offer"
        except Exception as exc:
            await call.hangup("fuzz")
            raise FuzzFailure("answer() raised " + describe(exc)) from None
        else:
            if not answer.startswith("v=0\r\n") or "m=audio" not in answer:
                raise FuzzFailure(f"answer is not an SDP answer with audio: {answer[:200]!r}")
            outcome = "answered"
        await asyncio.wait_for(call.hangup("fuzz"), 10)
        return outcome

    def attached(self) -> int:
        return self.mux.calls if self.mux is not None else 0

    async def close(self) -> None:
        if self.mux is not None:
            await self.mux.close()


# ---- client events -----------------------------------------------------------------------------------
class EngineHarness:
    """A SessionEngine (real) on a recording transport with scripted models (or the echo engine), prepared
    with a user message, an assistant answer with audio (voice now locked) and a function call, so that
    valid references exist. Every server event it emits must validate; an `error` must blame the client."""

    def __init__(self, mode: str = "local", *, max_event_bytes: int = 1 << 20, beta: bool = False) -> None:
        self.mode = mode
        self.beta = beta  # client messages pass the beta translation first, as on a beta connection
        self.transport = RecordingTransport(webrtc=True)
        models = fake_stack() if mode == "local" else None
        self.engine = SessionEngine(self.transport, RealtimeSessionConfig(), mode=mode, models=models,
                                    limits=SessionLimits(max_event_bytes=max_event_bytes), echo_delay_s=0.01)
        self.assistant_id = ASSISTANT_ITEM
        self._seen = 0

    async def start(self) -> None:
        self.engine.start()
        self._send({"type": "conversation.item.create",
                    "item": {"id": USER_ITEM, "type": "message", "role": "user",
                             "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]}})
        self._send({"type": "conversation.item.create",
                    "item": {"type": "function_call", "call_id": CALL_ID, "name": "get_weather",
                             "arguments": "{}"}})
        if self.mode == "local":
            self._send({"type": "response.create"})
            done = await self.wait_for("response.done")
            item = next(o for o in done["response"]["output"] if o.get("role") == "assistant")
            self.assistant_id = item["id"]
        self.new_events()

    def _send(self, event: dict[str, Any]) -> None:
        self.engine.handle_message(json.dumps(event))

    def new_events(self) -> list[dict[str, Any]]:
        events = self.transport.events[self._seen:]
        self._seen = len(self.transport.events)
        return events

    async def wait_for(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        start = self._seen
        while loop.time() < deadline:
            for event in self.transport.events[start:]:
                if event["type"] == kind:
                    return event
            await asyncio.sleep(0.01)
        raise FuzzFailure(f"no {kind} within {timeout} s: the session is stuck "
                          f"(last events {[e['type'] for e in self.transport.events[-8:]]})")

    def check(self, events: list[dict[str, Any]]) -> list[str]:
        """Each event validates; errors blame the client; responses do not fail. Returns error codes."""
        codes = []
        for event in events:
            try:
                parse_server_event(event)
            except Exception as exc:
                raise FuzzFailure(f"server event {event.get('type')} does not validate: {exc}") from None
            if event["type"] == "error":
                err = event["error"]
                if not err.get("message") or (err.get("type") != "invalid_request_error"
                                              and err.get("code") not in EXPECTED_SERVER_CODES):
                    raise FuzzFailure(f"error event blames the server: {err}")
                codes.append(err.get("code") or "-")
            elif event["type"] == "response.done" and event["response"]["status"] == "failed":
                raise FuzzFailure(f"a response failed: {event['response'].get('status_details')}")
        return codes

    async def run(self, raw: str | bytes) -> str:
        if isinstance(raw, str):
            raw = raw.replace(ASSISTANT_ITEM, self.assistant_id)
        try:
            if self.beta:
                raw = beta_protocol.client_text_to_ga(raw, self.engine.limits.max_event_bytes)
            self.engine.handle_message(raw)
        except Exception as exc:
            raise FuzzFailure("handle_message raised " + describe(exc)) from None
        for _ in range(3):
            await asyncio.sleep(0)
        codes = self.check(self.new_events())
        return f"error:{codes[0]}" if codes else "accepted"

    async def check_alive(self) -> None:
        """The session still answers: any response is cancelled and finishes, a session.update is applied,
        and (with models) a new response completes."""
        engine = self.engine
        if engine.closed:
            raise FuzzFailure("the session closed itself")
        for run in [r for r in (engine.active, *engine.out_of_band.values()) if r is not None]:
            run.cancel("client_cancelled")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while engine.active is not None or engine.out_of_band:
            if loop.time() > deadline:
                raise FuzzFailure("a cancelled response never finished")
            await asyncio.sleep(0.01)
        self.check(self.new_events())
        self._send({"type": "session.update", "event_id": "evt_probe",
                    "session": {"type": engine.config.type, "include": None}})
        updated = await self.wait_for("session.updated")
        if self.mode == "local" and engine.config.type == "realtime":
            self._send({"type": "response.create", "response": {"conversation": "none",
                                                                "output_modalities": ["text"]}})
            done = await self.wait_for("response.done")
            if done["response"]["status"] != "completed":
                raise FuzzFailure(f"probe response ended {done['response']['status']}")
        self.check(self.new_events())
        del updated

    def close(self) -> None:
        self.engine.close("fuzz")
