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
import logging
import struct
import traceback
from typing import Any

from openrealtime.limits import MAX_BODY_BYTES
from openrealtime.media import aiortc_patches
from openrealtime.media.call import CallOptions, RealtimeCall
from openrealtime.media.ice import IceSettings
from openrealtime.media.ice_mux import MuxSet
from openrealtime.protocol import beta as beta_protocol
from openrealtime.protocol.errors import ProtocolError
from openrealtime.protocol.parse import parse_server_event
from openrealtime.protocol.session import RealtimeSessionConfig
from openrealtime.runtime_inline import InlineRuntime
from openrealtime.engines.echo import EchoStack
from openrealtime.session.engine import SessionEngine, SessionLimits
from tests.support import RecordingTransport, fake_stack

from .event_cases import ASSISTANT_ITEM, CALL_ID, USER_ITEM

LOOP = "127.0.0.1"
# `error` codes that are about the server, not the client, but expected where they occur
EXPECTED_SERVER_CODES = {"model_not_available"}


class FuzzFailure(AssertionError):
    """A case that crashed, hung or confused the code under test."""


def describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)[-6:])


class _ErrorRecords(logging.Handler):
    """ERROR records of openrealtime's loggers (installed once; LoopErrors drains it)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        detail = "".join(traceback.format_exception(*record.exc_info)[-4:]) if record.exc_info else ""
        self.records.append(f"{record.name}: {record.getMessage()} {detail}")


_ERROR_RECORDS = _ErrorRecords()


class LoopErrors:
    """What the code reports instead of raising: the event loop's exception handler (task exceptions nobody
    retrieved...) and ERROR records of openrealtime's loggers (the runtime logs a session task that failed)."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        logger = logging.getLogger("openrealtime")
        if _ERROR_RECORDS not in logger.handlers:
            logger.addHandler(_ERROR_RECORDS)
        if logger.getEffectiveLevel() > logging.ERROR:
            logger.setLevel(logging.ERROR)
        _ERROR_RECORDS.records.clear()

    def take(self) -> list[str]:
        out = [f"{c.get('message')}: {c.get('exception')!r} "
               f"{describe(c['exception']) if c.get('exception') else c.get('handle') or c.get('task')}"
               for c in self.errors]
        out += _ERROR_RECORDS.records
        self.errors.clear()
        _ERROR_RECORDS.records.clear()
        return out


# ---- call bodies ------------------------------------------------------------------------------------
def parse_call_body(content_type: str, body: bytes) -> str:
    """What POST /v1/realtime/calls does before the SDP reaches aiortc: an outcome label, or FuzzFailure."""
    from openrealtime.api.body import parse_offer_body
    from openrealtime.api.errors import ApiError
    from openrealtime.protocol.session import parse_session_config

    # headers reach the app as latin-1 text (h11/starlette), whatever bytes the client sent
    content_type = content_type.encode("utf-8", "surrogatepass").decode("latin-1")
    try:
        offer = parse_offer_body(content_type, body)
        parse_session_config(offer.session)
    except ApiError as exc:
        if not 400 <= exc.status < 500 or not exc.error.message or exc.error.type != "invalid_request_error":
            raise FuzzFailure(f"{exc.status} {exc.error.type}: {exc.error.message}") from None
        return f"{exc.status}:{exc.error.code}"
    except ProtocolError as exc:
        if not exc.message or not (exc.param or "").startswith("session"):
            raise FuzzFailure(f"session error without a session param: {exc.param} {exc.message}") from None
        return f"400:{exc.code}"
    except Exception as exc:
        raise FuzzFailure("parsing the body raised " + describe(exc)) from None
    if not isinstance(offer.sdp, str):
        raise FuzzFailure(f"the offer is a {type(offer.sdp).__name__}")
    return "parsed"


# ---- SDP offers -------------------------------------------------------------------------------------
class OfferHarness:
    """`RealtimeCall.answer()` (validate_offer, aiortc's negotiation, our answer policy) on the shared ICE
    ports, then hangup; afterwards no call may be left attached to the ports."""

    def __init__(self) -> None:
        self.mux: MuxSet | None = None
        self.ice: IceSettings | None = None
        self.n = 0

    async def start(self) -> None:
        aiortc_patches.install()  # what the server does at startup (api/state.py)
        self.mux = MuxSet([(LOOP, LOOP)], udp_port=0, tcp_port=0)
        await self.mux.start()
        self.ice = IceSettings(addresses=((LOOP, LOOP),), mux=self.mux)

    async def run(self, sdp: str) -> str:
        self.n += 1
        call = RealtimeCall(f"rtc_fuzz{self.n}", CallOptions(ice=self.ice, connect_timeout_s=30),
                            lambda transport: SessionEngine(transport, RealtimeSessionConfig(), models=EchoStack()))
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
    valid references exist. Every server event it emits must validate; an `error` must blame the client.
    The session runs on the inline runtime: after each case everything it started has run (`settle`), so
    a session that does not answer is stuck, not slow."""

    def __init__(self, mode: str = "local", *, max_event_bytes: int = 1 << 20, beta: bool = False) -> None:
        self.mode = mode
        self.beta = beta  # client messages pass the beta translation first, as on a beta connection
        self.transport = RecordingTransport(webrtc=True)
        self.runtime = InlineRuntime()
        models = fake_stack() if mode == "local" else EchoStack(loopback_delay_s=0.01)
        self.engine = SessionEngine(self.transport, RealtimeSessionConfig(), models=models,
                                    limits=SessionLimits(max_event_bytes=max_event_bytes), runtime=self.runtime)
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

    async def wait_for(self, kind: str) -> dict[str, Any]:
        """The first `kind` event since the last case, once the session has settled."""
        start = self._seen
        await self.runtime.settle()
        for event in self.transport.events[start:]:
            if event["type"] == kind:
                return event
        raise FuzzFailure(f"no {kind}: the session is stuck "
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
        await self.runtime.settle()
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
        await self.runtime.settle()
        if engine.active is not None or engine.out_of_band:
            raise FuzzFailure("a cancelled response never finished")
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


# ---- RTP / RTCP into a live call -------------------------------------------------------------------------------
class MediaHarness:
    """A real call: an aiortc client (microphone playing speech, a video transceiver, `oai-events`) connected
    to a RealtimeCall on the echo engine over the shared ICE ports. Cases go to the server's DTLS transport
    as decrypted RTP/RTCP (`_handle_rtp_data` / `_handle_rtcp_data`, what its receive loop calls after SRTP,
    where any exception would end that loop and with it the call), or through the client's SRTP session
    over the network. `check_alive()`: the call is connected, its receive loop runs, the echo of the
    microphone keeps arriving and the data channel answers."""

    def __init__(self) -> None:
        self.offers = OfferHarness()
        self.client = None
        self.call: RealtimeCall | None = None
        self.thread_errors: list[str] = []

    async def start(self) -> None:
        import threading

        from aiortc import RTCSessionDescription
        from aiortc import sdp as aiortc_sdp

        from openrealtime.client.rtc import RealtimeRtcClient
        from tests.support import speechlike

        from .rtp_cases import MediaContext

        threading.excepthook = lambda args: self.thread_errors.append(
            f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}")
        await self.offers.start()
        # the client is built from the server's aiortc objects too, so it offers what the server implements
        # (transport-cc) and its cases reach that code
        with aiortc_patches.server_objects():
            self.client = client = RealtimeRtcClient("http://unused", video=True)
            await client.pc.setLocalDescription(await client.pc.createOffer())
            self.call = RealtimeCall("rtc_fuzzmedia", CallOptions(ice=self.offers.ice),
                                     lambda transport: SessionEngine(transport, RealtimeSessionConfig(),
                                                                     models=EchoStack(loopback_delay_s=0.05)))
            answer = await self.call.answer(client.pc.localDescription.sdp)
            await client.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await client.next_event("session.created", timeout=15)
        self.speech = speechlike(2.0).tobytes()
        client.mic.play(self.speech * 2)
        desc = aiortc_sdp.SessionDescription.parse(answer)
        offer = aiortc_sdp.SessionDescription.parse(client.pc.localDescription.sdp)
        pts = {m.kind: [c.payloadType for c in m.rtp.codecs] for m in desc.media if m.kind in ("audio", "video")}
        ssrcs = {m.kind: (m.ssrc[0].ssrc if m.ssrc else 0) for m in offer.media}
        ext = {e.uri: e.id for m in desc.media for e in m.rtp.headerExtensions}
        senders = tuple(s._ssrc for s in self.call.pc.getSenders())
        self.ctx = MediaContext(audio_pt=pts["audio"][0], video_pt=pts["video"][0],
                                other_pts=tuple(pts["audio"][1:]), audio_ssrc=ssrcs["audio"],
                                video_ssrc=ssrcs["video"], our_ssrcs=senders,
                                twcc_id=ext.get("http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-"
                                                "extensions-01", 3),
                                mid_id=ext.get("urn:ietf:params:rtp-hdrext:sdes:mid", 1),
                                mids=tuple(m.rtp.muxId for m in desc.media))
        self.server_dtls = self.call.pc.getTransceivers()[0].receiver.transport
        self.client_dtls = client.pc.getTransceivers()[0].sender.transport
        self._reported_drops = 0
        await self.check_alive()

    def _dropped(self) -> int:
        sctp = self.call.pc.sctp
        return self.server_dtls.__dict__.get("_or_dropped", 0) + (sctp.__dict__.get("_or_dropped", 0) if sctp else 0)

    def _last_drop(self) -> str:
        sctp = self.call.pc.sctp
        return " / ".join(str(getattr(o, "_or_dropped_last", "")) for o in (self.server_dtls, sctp) if o)

    async def _handle(self, what: str, handle) -> str:
        before = self._dropped()
        try:
            await handle
        except Exception as exc:
            raise FuzzFailure(f"{what} ended the receive loop: " + describe(exc)) from None
        if self._dropped() != before:  # the server's transport kept the call alive, but the receive path raised
            raise FuzzFailure(f"the receive path failed on {what}: {self._last_drop()}")
        return "handled"

    async def rtp(self, data: bytes) -> str:
        from aiortc import clock

        return await self._handle("RTP", self.server_dtls._handle_rtp_data(data, arrival_time_ms=clock.current_ms()))

    async def rtcp(self, data: bytes) -> str:
        return await self._handle("RTCP", self.server_dtls._handle_rtcp_data(data))

    async def message(self, data: str | bytes) -> str:
        """A message on the client's `oai-events` channel (what comes back is judged by check_events)."""
        try:
            self.client.channel.send(data)
        except Exception:
            return "unsendable"  # larger than the server's max-message-size, say
        await asyncio.sleep(0)
        return "sent"

    def check_events(self) -> dict[str, int]:
        """Every event the client got validates, and every `error` blames the client; error codes counted."""
        codes: dict[str, int] = {}
        for event in self.client.log:
            clean = {k: v for k, v in event.items() if k != "_t"}
            try:
                parse_server_event(clean)
            except Exception as exc:
                raise FuzzFailure(f"server event {event.get('type')} does not validate: {exc}") from None
            if event["type"] == "error":
                err = event["error"]
                if err.get("type") != "invalid_request_error" and err.get("code") not in EXPECTED_SERVER_CODES:
                    raise FuzzFailure(f"error event blames the server: {err}")
                codes[err.get("code")] = codes.get(err.get("code"), 0) + 1
        return codes

    async def sctp(self, stream_id: int, pp_id: int, data: bytes) -> str:
        """An SCTP user message under the data channels (DCEP, odd payload protocol ids, bad UTF-8)."""
        before = self._dropped()
        try:
            await self.client.pc.sctp._send(stream_id, pp_id, data)
        except Exception:
            return "unsendable"
        for _ in range(10):  # it crosses the network: give it a moment (the server's SCTP transport drops)
            await asyncio.sleep(0.001)
            if self._dropped() != before:
                self._reported_drops += self._dropped() - before
                return "dropped"
        return "sent"

    async def over_srtp(self, data: bytes) -> str:
        """Through the client's SRTP session and the network (aiortc picks SRTP or SRTCP by the packet type;
        what it cannot protect is not sent). RTP goes out under SSRCs of its own: SRTP's replay protection
        would otherwise drop the microphone's packets after a fuzzed sequence number ran ahead of them."""
        if len(data) >= 12 and not 192 <= data[1] <= 223:
            data = data[:8] + struct.pack("!I", 0xF0220000 + data[11] % 4) + data[12:]
        try:
            await self.client_dtls._send_rtp(data)
        except Exception:
            return "unsendable"
        return "sent"

    async def check_alive(self, timeout: float = 10.0) -> None:
        client, call = self.client, self.call
        if call.closed.is_set() or call.state != "connected" and call.stats.connected_at is not None:
            raise FuzzFailure(f"the call ended ({call.stats.end_reason})")
        task = getattr(self.server_dtls, "_task", None)
        if task is None or task.done():
            raise FuzzFailure("the server's DTLS receive loop is gone")
        if self.thread_errors:
            raise FuzzFailure("a media thread died: " + "; ".join(self.thread_errors))
        for receiver in (t.receiver for t in call.pc.getTransceivers()):
            task = receiver._RTCRtpReceiver__rtcp_task
            if task is not None and task.done():
                raise FuzzFailure(f"the {receiver.track.kind if receiver.track else '?'} receiver's RTCP task "
                                  f"ended: {task.exception() if not task.cancelled() else 'cancelled'!r}")
        if self._dropped() > self._reported_drops:
            self._reported_drops = self._dropped()
            raise FuzzFailure(f"the receive path failed on a packet: {self._last_drop()}")
        if client.mic.pending_s < 1.0:
            client.mic.play(self.speech)
        before = client.audio.voiced_frames
        client.send({"type": "session.update", "event_id": "evt_probe",
                     "session": {"type": "realtime", "instructions": "still here"}})
        try:
            await client.next_event("session.updated", timeout=timeout)
        except asyncio.TimeoutError:
            raise FuzzFailure("the data channel no longer answers") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while client.audio.voiced_frames <= before:
            if loop.time() > deadline:
                raise FuzzFailure("the echo of the microphone stopped arriving")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        import threading

        threading.excepthook = threading.__excepthook__
        if self.client is not None:
            await self.client.close()
        if self.call is not None:
            await asyncio.wait_for(self.call.hangup("fuzz"), 10)
        attached = self.offers.attached()
        await self.offers.close()
        if attached:
            raise FuzzFailure("the call is still attached to the ICE ports after its hangup")


# ---- a whole server over HTTP and WebSocket, with a live call beside -------------------------------------------
class LiveCall:
    """The call that must not notice the fuzzing: an aiortc client whose microphone plays speech to the echo
    engine; `check()` wants more of its voice back than last time and an answer on its data channel."""

    def __init__(self, url: str, api_key: str = "test") -> None:
        from openrealtime.client.rtc import RealtimeRtcClient

        self.client = RealtimeRtcClient(url, api_key, session={"type": "realtime"})
        self.heard = 0
        self.checks = 0

    async def start(self) -> None:
        from tests.support import speechlike

        resp = await self.client.connect()
        if resp.status_code != 201:
            raise RuntimeError(f"the live call was refused: {resp.status_code} {resp.text[:200]}")
        await self.client.next_event("session.created", timeout=15)
        self.speech = speechlike(2.0).tobytes()
        self.client.mic.play(self.speech * 3)
        await self.check()

    async def check(self, timeout: float = 10.0) -> None:
        client = self.client
        if client.mic.pending_s < 3.0:
            client.mic.play(self.speech * 2)
        client.send({"type": "session.update", "session": {"type": "realtime", "instructions": "live"}})
        try:
            await client.next_event("session.updated", timeout=timeout)
        except asyncio.TimeoutError:
            raise FuzzFailure("the live call's data channel stopped answering") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while client.audio.voiced_frames <= self.heard:
            if loop.time() > deadline:
                raise FuzzFailure("the live call stopped echoing")
            await asyncio.sleep(0.05)
        if client.pc.connectionState != "connected":
            raise FuzzFailure(f"the live call is {client.pc.connectionState}")
        self.heard = client.audio.voiced_frames
        self.checks += 1

    async def close(self) -> None:
        await self.client.close()


class ServerHarness:
    """Cases over the network to a running server (in-process in the suite, a subprocess in bench/fuzz.py):
    POST /v1/realtime/calls bodies, client events on a WebSocket session (GA or beta), raw WebSocket frames.
    A 5xx, a close code the server blames on itself (1011), an event that does not validate or an `error`
    that is not the client's is a failure; `check_alive()` also wants /healthz and a fresh session."""

    def __init__(self, url: str, api_key: str = "test") -> None:
        import httpx

        self.url = url.rstrip("/")
        self.api_key = api_key
        self.http = httpx.AsyncClient(timeout=30)
        self.sessions: dict[bool, Any] = {}
        self.events: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        self._readers: dict[bool, asyncio.Task] = {}
        self.calls_answered = 0

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.url.split("://", 1)[1].rsplit(":", 1)
        return host, int(port)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    # ---- HTTP -----------------------------------------------------------------------------------------
    async def post_call(self, content_type: str, body: bytes, path: str = "/v1/realtime/calls") -> str:
        import httpx

        headers = {**self._auth(), "Content-Type": content_type.encode("utf-8", "surrogatepass")}  # any bytes
        try:
            resp = await self.http.post(self.url + path, content=body, headers=headers)
        except httpx.LocalProtocolError:
            return "unsendable"  # a header value the HTTP client will not write (control characters)
        except httpx.HTTPError as exc:
            if len(body) > MAX_BODY_BYTES:  # refused (413) while we were still sending: the socket is reset
                return "413:reset"
            raise FuzzFailure(f"POST {path} got no answer: {exc!r}") from None
        if resp.status_code == 201:
            self.calls_answered += 1
            call_id = resp.headers["location"].rsplit("/", 1)[-1]
            hang = await self.http.post(f"{self.url}/v1/realtime/calls/{call_id}/hangup", headers=self._auth())
            if hang.status_code == 404 and hang.json()["error"]["code"] == "call_not_found":
                return "201:ended"  # it ended by itself already (ICE failed at once: no usable candidate)
            if hang.status_code != 200:
                raise FuzzFailure(f"hangup of an answered call: {hang.status_code} {hang.text[:200]}")
            return "201"
        if not 400 <= resp.status_code < 500:
            raise FuzzFailure(f"POST {path} answered {resp.status_code}: {resp.text[:300]}")
        try:
            body_json = resp.json()
            assert set(body_json) == {"error"} and set(body_json["error"]) == {"message", "type", "param", "code"}
        except Exception:
            raise FuzzFailure(f"a {resp.status_code} not in OpenAI's error shape: {resp.text[:300]}") from None
        return f"{resp.status_code}:{body_json['error']['code']}"

    # ---- client events on a WebSocket session ------------------------------------------------------------------
    async def _session(self, beta: bool):
        from websockets.asyncio.client import connect

        ws = self.sessions.get(beta)
        if ws is not None and ws.close_code is None:
            return ws
        if ws is not None:  # judged once, then a new session
            del self.sessions[beta]
            self._judge_close(ws)
        headers = self._auth() | ({"OpenAI-Beta": "realtime=v1"} if beta else {})
        ws = await connect(self.url.replace("http", "ws", 1) + "/v1/realtime?model=gpt-realtime",
                           additional_headers=headers, max_size=None, ping_interval=None)  # no client keepalive:
        # its 1011 "keepalive ping timeout" would be about this (busy) process, not the server
        self.sessions[beta] = ws
        self._readers[beta] = asyncio.ensure_future(self._read(ws, beta))
        return ws

    async def _read(self, ws, beta: bool) -> None:
        try:
            async for message in ws:
                self.events[beta].append(json.loads(message))
        except Exception:
            return

    def _judge_close(self, ws) -> None:
        if ws.close_code in (1011, 1006) or (ws.close_code or 0) >= 4000 and ws.close_code != 4001:
            raise FuzzFailure(f"the WebSocket session was closed with {ws.close_code} {ws.close_reason!r}")

    async def ws_event(self, raw: str | bytes, *, beta: bool = False) -> str:
        ws = await self._session(beta)
        try:
            await ws.send(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass").decode(
                "utf-8", "replace"))
        except Exception:
            self._judge_close(ws)
            return f"closed:{ws.close_code}"
        return "sent"

    def check_events(self, beta: bool = False) -> dict[str, int]:
        codes: dict[str, int] = {}
        for event in self.events[beta]:
            if beta:  # beta shapes are translated GA events: check the error shape only
                ok = event.get("type") != "error" or set(event["error"]) >= {"type", "code", "message"}
            else:
                try:
                    parse_server_event(event)
                    ok = True
                except Exception:
                    ok = False
            if not ok:
                raise FuzzFailure(f"server event {event.get('type')} does not validate: {str(event)[:300]}")
            if event.get("type") == "error":
                err = event["error"]
                if err.get("type") != "invalid_request_error" and err.get("code") not in EXPECTED_SERVER_CODES:
                    raise FuzzFailure(f"error event blames the server: {err}")
                codes[err.get("code")] = codes.get(err.get("code"), 0) + 1
        return codes

    # ---- raw WebSocket frames ---------------------------------------------------------------------------------
    async def ws_frames(self, frames: list[bytes]) -> str:
        """A fresh connection: the frames, then what the server does within a moment (close code / events)."""
        from .ws_cases import CLOSE, frame, handshake, read_frame

        host, port = self.host_port
        try:
            reader, writer = await handshake(host, port, "/v1/realtime?model=gpt-realtime", self._auth())
        except (ConnectionError, OSError, asyncio.TimeoutError) as exc:
            raise FuzzFailure(f"WebSocket handshake failed: {exc!r}") from None
        outcome = "open"
        try:
            for data in frames:
                writer.write(data)
            await writer.drain()
            while True:
                opcode, payload = await asyncio.wait_for(read_frame(reader), 0.1)
                if opcode == CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    if code == 1011:
                        raise FuzzFailure(f"the server closed with 1011 (its own error): {payload[2:]!r}")
                    outcome = f"closed:{code}"
                    break
                if opcode == 0x1:
                    event = json.loads(payload)
                    if event.get("type") == "error":
                        err = event["error"]
                        if err.get("type") != "invalid_request_error" and err.get("code") not in EXPECTED_SERVER_CODES:
                            raise FuzzFailure(f"error event blames the server: {err}")
                        outcome = f"error:{err.get('code')}"
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            try:
                if outcome == "open" or outcome.startswith("error"):
                    writer.write(frame(CLOSE, struct.pack("!H", 1000)))
                writer.close()
            except Exception:
                pass
        return outcome

    # ---- liveness -------------------------------------------------------------------------------------
    async def check_alive(self) -> None:
        from websockets.asyncio.client import connect

        resp = await self.http.get(self.url + "/healthz")
        if resp.status_code != 200:
            raise FuzzFailure(f"/healthz answered {resp.status_code}")
        try:
            async with connect(self.url.replace("http", "ws", 1) + "/v1/realtime?model=gpt-realtime",
                               additional_headers=self._auth()) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        except Exception as exc:
            raise FuzzFailure(f"a new WebSocket session failed: {exc!r}") from None
        if first.get("type") != "session.created":
            raise FuzzFailure(f"a new session began with {first.get('type')}")
        for beta, ws in list(self.sessions.items()):  # the fuzzed sessions answer too
            if ws.close_code is not None:
                del self.sessions[beta]
                self._judge_close(ws)
                continue
            start = len(self.events[beta])
            await ws.send(json.dumps({"type": "session.update", "event_id": "evt_probe",
                                      "session": {"type": "realtime", "instructions": "probe"}}))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not any(e.get("type") == "session.updated" for e in self.events[beta][start:]):
                if loop.time() > deadline or ws.close_code is not None:
                    raise FuzzFailure("a fuzzed WebSocket session stopped answering")
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        for ws in self.sessions.values():
            await ws.close()
        for task in self._readers.values():
            task.cancel()
        await self.http.aclose()
