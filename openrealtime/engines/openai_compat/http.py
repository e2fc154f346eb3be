"""HTTP plumbing shared by the OpenAI-compatible clients: endpoints, errors, cancellable streams.

`RemoteEndpoint` names one server (`base_url` ends with `/v1`, as in the OpenAI SDK) and the
command-line flags that configure it, so every error can say which flag to fix.

`BackgroundStream` reads a streamed HTTP response in a helper thread and hands the bytes to the
caller through a queue. The caller (a model worker thread of the session engine, shared by all
sessions) waits on that queue in 20 ms slices and checks `cancel` between them, so a barge-in
frees it within ~20 ms even while the server is still evaluating a prompt and has sent nothing.
On cancel the socket is shut down (which wakes the helper's blocked read and tells the server the
client is gone, so vLLM / llama.cpp / Ollama stop generating); before the response headers have
arrived the helper closes the response as soon as they do.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..base import BackendError, BackendTimeout

log = logging.getLogger(__name__)

ROLES = {"llm": "LLM", "stt": "speech-to-text", "tts": "text-to-speech"}
_POLL_S = 0.02


class RemoteEngineError(BackendError):
    """A remote model server could not be used. The message names the flag to fix."""


class RemoteTimeout(RemoteEngineError, BackendTimeout):
    """A remote model server accepted a request and then sent nothing in time."""


@dataclass(frozen=True)
class RemoteEndpoint:
    """One OpenAI-compatible server: `base_url` (…/v1), optional API key and model name.

    `role` ("llm" | "stt" | "tts") only shapes error messages ("check --llm-url ...").
    """

    base_url: str
    api_key: str | None = None
    model: str | None = None
    role: str = "llm"
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0  # longest silence tolerated inside a response (prompt evaluation)
    # a streamed response that sends nothing for this long after the request is abandoned
    # (--backend-first-token-timeout), and one that stops sending for this long once it has begun
    # (--backend-stall-timeout): a hung server fails the response instead of holding the session
    first_token_timeout_s: float = 30.0
    stall_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        url = (self.base_url or "").strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{self.flag('url')} must be an http(s) URL such as http://localhost:8000/v1, "
                             f"not {self.base_url!r}")
        object.__setattr__(self, "base_url", url)
        if self.role not in ROLES:
            raise ValueError(f"unknown endpoint role {self.role!r}")

    # -- naming -------------------------------------------------------------------------------
    def flag(self, what: str) -> str:
        return f"--{self.role}-{what}"

    @property
    def label(self) -> str:
        return f"{ROLES[self.role]} server at {self.base_url}"

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    # -- clients ------------------------------------------------------------------------------
    def client(self) -> httpx.Client:
        """A pooled client (keep-alive saves a TCP/TLS handshake per request; thread-safe)."""
        timeout = httpx.Timeout(connect=self.connect_timeout_s, read=self.read_timeout_s,
                                write=self.read_timeout_s, pool=self.connect_timeout_s)
        return httpx.Client(headers=self.headers(), timeout=timeout, follow_redirects=True,
                            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))


# ---- errors ---------------------------------------------------------------------------------
def server_message(body: bytes | str, limit: int = 300) -> tuple[str, str | None]:
    """(message, param) from an error body: OpenAI's {"error": {...}}, FastAPI's {"detail"}, or text."""
    import json

    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    param = None
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:limit], None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            param = err.get("param") if isinstance(err.get("param"), str) else None
            msg = err.get("message") or err.get("detail") or data.get("detail") or data.get("message")
        else:
            msg = err
        if msg is None:
            msg = text
        if not isinstance(msg, str):
            msg = json.dumps(msg)[:limit]
        return msg.strip()[:limit], param
    return text.strip()[:limit], None


def status_error(endpoint: RemoteEndpoint, path: str, status: int, body: bytes | str) -> RemoteEngineError:
    """A clear error for an HTTP error status, naming the flag most likely to fix it."""
    message, _param = server_message(body)
    where = f"{endpoint.label} returned {status} for {endpoint.url(path)}"
    detail = f" ({message})" if message else ""
    lowered = message.lower()
    if status in (401, 403):
        hint = f"check {endpoint.flag('key')} (the server's API key)"
    elif status == 404 and "model" in lowered:
        hint = f"check {endpoint.flag('model')} (the model name the server serves; GET {endpoint.url('models')} lists them)"
    elif status == 404:
        suffix = "" if endpoint.base_url.endswith("/v1") else f", e.g. {endpoint.base_url}/v1"
        hint = f"check {endpoint.flag('url')} ends with /v1{suffix}"
    elif status in (400, 422) and "model" in lowered and ("not found" in lowered or "does not exist" in lowered):
        hint = f"check {endpoint.flag('model')}"
    elif status == 429:
        hint = "the server is rate limiting or out of quota"
    elif status >= 500:
        hint = "the server failed; see its log"
    else:
        hint = ""
    return RemoteEngineError(f"{where}{detail}" + (f": {hint}" if hint else ""))


def connection_error(endpoint: RemoteEndpoint, exc: Exception) -> RemoteEngineError:
    if isinstance(exc, httpx.TimeoutException):
        what = "timed out" if not isinstance(exc, httpx.ConnectTimeout) else "did not accept a connection in time"
        return RemoteEngineError(f"{endpoint.label} {what} ({type(exc).__name__}); check {endpoint.flag('url')} "
                                 f"and that the server is up and not overloaded")
    return RemoteEngineError(f"cannot reach the {endpoint.label} ({type(exc).__name__}: {exc}): is it running? "
                             f"check {endpoint.flag('url')}")


# ---- streams --------------------------------------------------------------------------------
def _shutdown_socket(response: httpx.Response | None) -> None:
    """Wake a read blocked on `response` in another thread (close() alone does not on Linux)."""
    if response is None:
        return
    stream = response.extensions.get("network_stream")
    sock = None
    try:
        sock = stream.get_extra_info("socket") if stream is not None else None
    except Exception:  # noqa: BLE001 - best effort
        sock = None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class BackgroundStream:
    """A streamed request read in a helper thread; iterate `chunks()` after `open()`.

    `open()` returns the response once its headers are in (None if `cancel` was set first) and
    raises `RemoteEngineError` for connection failures and error statuses (`error_body` keeps the
    body of the last error for callers that adapt and retry). Always `close()` (or use `with`).
    """

    def __init__(self, client: httpx.Client, endpoint: RemoteEndpoint, method: str, path: str,
                 cancel: threading.Event, **request: Any) -> None:
        self.endpoint = endpoint
        self.path = path
        self.cancel = cancel
        self._request = client.build_request(method, endpoint.url(path), **request)
        self._client = client
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._finished = False  # the reader is done with the connection (it may be back in the pool)
        self._response: httpx.Response | None = None
        self._thread: threading.Thread | None = None
        self.status: int | None = None
        self.error_body: bytes = b""
        self._started = False  # body bytes have arrived (the stall timeout applies from then on)
        self._last_data = time.monotonic()  # the request's start, then the latest body bytes

    def __enter__(self) -> BackgroundStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> None:
        put = self._queue.put
        try:
            response = self._client.send(self._request, stream=True)
        except Exception as exc:  # noqa: BLE001 - delivered to the caller
            put(("error", exc))
            return
        with self._lock:
            self._response = response
        try:
            if self._stop.is_set():
                return
            if response.status_code >= 400:
                response.read()
                put(("status", response))
                return
            put(("headers", response))
            for chunk in response.iter_bytes():
                if self._stop.is_set():
                    return
                if chunk:
                    put(("data", chunk))
            put(("end", None))
        except Exception as exc:  # noqa: BLE001
            put(("error", exc))
        finally:
            with self._lock:
                self._finished = True
                response.close()

    def _get(self) -> tuple[str, Any] | None:
        """Next item from the reader, or None once `cancel` is set. Raises `RemoteTimeout` when the
        server sends nothing for `first_token_timeout_s` (before its first body bytes) or
        `stall_timeout_s` (after them); the request is then abandoned like a cancelled one."""
        while True:
            if self.cancel.is_set():
                return None
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                limit = self.endpoint.stall_timeout_s if self._started else self.endpoint.first_token_timeout_s
                if time.monotonic() - self._last_data >= limit:
                    self.close()
                    raise self._timeout(limit)
                continue
            if item[0] == "data":
                self._started = True
                self._last_data = time.monotonic()
            return item

    def _timeout(self, limit: float) -> RemoteTimeout:
        endpoint = self.endpoint
        if self._started:
            what, flag = f"stopped sending for {limit:g} s in the middle of its answer", "--backend-stall-timeout"
        else:
            what, flag = f"sent no answer within {limit:g} s", "--backend-first-token-timeout"
        return RemoteTimeout(f"{endpoint.label} {what} to {endpoint.url(self.path)}; the request was abandoned. "
                             f"Check that the server is up and not overloaded (or raise {flag})")

    def open(self) -> httpx.Response | None:
        self._last_data = time.monotonic()
        self._thread = threading.Thread(target=self._read, name="or-http-stream", daemon=True)
        self._thread.start()
        item = self._get()
        if item is None:
            return None
        kind, value = item
        if kind == "headers":
            return value
        if kind == "status":
            self.status = value.status_code
            self.error_body = value.content
            raise status_error(self.endpoint, self.path, value.status_code, value.content)
        if kind == "error":
            raise connection_error(self.endpoint, value)
        raise RemoteEngineError(f"{self.endpoint.label}: unexpected stream state {kind!r}")  # pragma: no cover

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives; stops quietly when `cancel` is set."""
        while True:
            item = self._get()
            if item is None:
                return
            kind, value = item
            if kind == "data":
                yield value
            elif kind == "end":
                return
            elif kind == "error":
                if self.cancel.is_set():
                    return
                if isinstance(value, httpx.HTTPError):
                    raise RemoteEngineError(
                        f"{self.endpoint.label}: the response to {self.path} broke off "
                        f"({type(value).__name__}: {value})") from value
                raise value

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if not self._finished:  # never touch a connection the pool may have handed to someone else
                _shutdown_socket(self._response)


def list_models(endpoint: RemoteEndpoint, client: httpx.Client | None = None) -> list[str] | None:
    """Model ids from `GET {base}/models`; None when the server has no such route (404/405).

    Raises `RemoteEngineError` naming the flag to fix when the server cannot be reached, rejects
    the key, or answers 404 at `base` while `base + "/v1"` works (a forgotten `/v1`).
    """
    own = client is None
    client = client or endpoint.client()
    try:
        try:
            response = client.get(endpoint.url("models"))
        except httpx.HTTPError as exc:
            raise connection_error(endpoint, exc) from exc
        if response.status_code in (404, 405):
            if not endpoint.base_url.endswith("/v1"):
                try:
                    alt = client.get(endpoint.base_url + "/v1/models")
                except httpx.HTTPError:
                    alt = None
                if alt is not None and alt.status_code == 200:
                    raise RemoteEngineError(
                        f"{endpoint.label} has no {endpoint.url('models')} but {endpoint.base_url}/v1/models "
                        f"exists: set {endpoint.flag('url')} {endpoint.base_url}/v1")
            return None
        if response.status_code >= 400:
            raise status_error(endpoint, "models", response.status_code, response.content)
        try:
            data = response.json()
        except ValueError:
            return None
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            items = (data.get("models") if isinstance(data, dict) else None) or []
        ids = []
        for item in items:
            if isinstance(item, dict):
                name = item.get("id") or item.get("name") or item.get("model")
                if name:
                    ids.append(str(name))
            elif isinstance(item, str):
                ids.append(item)
        return ids
    finally:
        if own:
            client.close()
