"""Every public route on every node: a request is answered here or forwarded to the node that should
answer it, unchanged for the client (design notes: ../shared/spec/scale-out.md §2.2-2.3).

* `POST /v1/realtime/calls` (and the beta `POST /v1/realtime`): the call goes to the least-loaded live
  node that takes calls (cluster/placement.py; this node is one candidate like any other). Another
  node gets the client's request as it came, signed (cluster/auth.py), and answers it with its own
  ICE candidates; a node that cannot be reached, is full or draining → the next one. The store
  unreachable → answered here.
* hangup, `GET /v1/realtime/calls/{id}` and the sideband WebSocket go to the call's owner (the call
  map; while the store is unreachable, the nodes last seen are asked); the sideband's frames are piped
  both ways and close codes kept.
* `GET /v1/realtime/calls` lists every node's calls, each with its `"node"`.

A request signed by another node is answered here and never forwarded again: that is the loop
guard. The owner still checks the client's own credentials (they travel with the request), so a
node signature never stands in for a client's key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from fastapi import Request, WebSocket
from fastapi.responses import JSONResponse, Response
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..cluster.auth import SIGNATURE_HEADER, NodeAuthError, NodeSigner, NodeVerifier
from ..cluster.cancellation import raise_if_cancelled
from ..cluster.placement import RecentPlacements, placement_order
from ..cluster.store import ClusterStore, NodeRecord, StoreUnavailable
from ..limits import WS_MAX_FRAME_BYTES
from .errors import ApiError

log = logging.getLogger("openrealtime.cluster")

CONNECT_TIMEOUT_S = 1.0  # a node that does not accept within this is skipped (the next one is tried)
FORWARD_TIMEOUT_S = 10.0  # a whole forwarded request (the owner builds its answer meanwhile)
LIST_TIMEOUT_S = 3.0  # one node's part of the cluster-wide call list
PROBE_TIMEOUT_S = 2.0  # asking a node whether it owns a call, while the store is unreachable
SUSPECT_S = 10.0  # a node that did not answer a forward gets no placement this long (≥ a dead node's TTL)
TABLE_REFRESH_S = 3.0  # the node table is read at least this often (for routing while the store is down)
# headers that describe one hop, not the request (RFC 9110 §7.6.1), and the ones httpx sets itself
_HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"}
_REPLY_HEADERS = ("content-type", "location", "retry-after", "www-authenticate")
CLIENT_HEADER = "X-Openrealtime-Client"  # the client's address, added by the node that forwards a request
_UNSENDABLE_CLOSE = {1005, 1006, 1015}  # close codes that only describe a closure, never sent
# a node answering these is full, draining or not ready: the call goes to the next node
_NEXT_NODE_CODES = {"too_many_calls", "too_many_conversations", "server_shutting_down", "server_not_ready"}


def _target(scope: Mapping[str, Any]) -> str:
    """The request target exactly as it arrived (path and query), which the signature covers."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    return (path + (b"?" + query if query else b"")).decode("latin-1")


def _not_found(call_id: str, why: str = "it may have ended already") -> ApiError:
    return ApiError(404, f"Call '{call_id}' not found ({why}).", code="call_not_found", param="call_id")


def _reply(resp: httpx.Response) -> Response:
    headers = {k: resp.headers[k] for k in _REPLY_HEADERS if k in resp.headers}
    return Response(resp.content, status_code=resp.status_code, headers=headers)


def _error_code(resp: httpx.Response) -> str | None:
    try:
        return resp.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


class ClusterRouter:
    """This node's view of the cluster for routing public requests (one per serving app)."""

    def __init__(self, store: ClusterStore, node_id: str, secret: str, local: Callable[[], NodeRecord]) -> None:
        self.store = store
        self.node_id = node_id
        self.signer = NodeSigner(secret, node_id)
        self.verifier = NodeVerifier(secret)
        self.local = local  # this node's record from its live state (fresher than its last heartbeat)
        self.recent = RecentPlacements()
        self.known: dict[str, NodeRecord] = {}  # the node table last read (used while the store is down)
        self.suspects: dict[str, float] = {}  # node id → until when it is skipped (it did not answer)
        self.store_up = True
        self.counts: Counter[str] = Counter()  # what was routed where (cluster/metrics.py)
        self._http: httpx.AsyncClient | None = None
        self._refresher: asyncio.Task | None = None

    # ---- lifetime ----------------------------------------------------------------------------
    def start(self) -> None:
        """Keep the node table fresh on the serving loop (placements also read it, each time)."""
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop(), name="cluster-table")

    async def _refresh_loop(self) -> None:
        while True:
            await self.refresh()
            raise_if_cancelled()
            await asyncio.sleep(TABLE_REFRESH_S)

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:  # on the serving loop; environment proxies never apply between nodes
            self._http = httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(FORWARD_TIMEOUT_S,
                                                                                  connect=CONNECT_TIMEOUT_S))
        return self._http

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
            self._refresher = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ---- who sent it -------------------------------------------------------------------------
    def from_node(self, scope: Mapping[str, Any], headers: Mapping[str, str], body: bytes = b"") -> str | None:
        """The id of the node that forwarded this request here (answer it here, never forward it again),
        or None for a client's own request. A bad node signature is refused (401)."""
        if SIGNATURE_HEADER.lower() not in {k.lower() for k in headers}:
            return None
        method = "GET" if scope["type"] == "websocket" else scope["method"]
        try:
            return self.verifier.verify(method, _target(scope), headers, body)
        except NodeAuthError as exc:
            log.warning("node request refused: %s", exc)
            raise ApiError(401, f"Node-to-node request refused: {exc}.", code="invalid_node_signature") from None

    def _signed(self, method: str, url: httpx.URL, headers: Mapping[str, str], body: bytes = b"",
                client: str | None = None) -> dict[str, str]:
        out = {k: v for k, v in headers.items() if k.lower() not in _HOP_HEADERS and not k.lower().startswith(
            "x-openrealtime-")}
        out.update(self.signer.headers(method, url.raw_path.decode("ascii"), body))
        if client:
            out[CLIENT_HEADER] = client
        return out

    # ---- the node table ----------------------------------------------------------------------
    async def live_nodes(self) -> list[NodeRecord]:
        """The live nodes, this one from its own state; `StoreUnavailable` while the store is down."""
        try:
            nodes = await self.store.live_nodes()
        except StoreUnavailable:
            if self.store_up:
                log.warning("cluster store unreachable: new calls are answered here, calls elsewhere are "
                            "found by asking the %d nodes last seen", len(self.known) - (self.node_id in self.known))
            self.store_up = False
            raise
        self.store_up = True
        table = {n.node_id: n for n in nodes}
        table[self.node_id] = self.local()
        self.known = table
        return list(table.values())

    async def refresh(self) -> None:
        """Read the node table now; the store being down is only noted."""
        try:
            await self.live_nodes()
        except StoreUnavailable:
            pass
        except Exception:  # noqa: BLE001 - a bug here must not end the refreshes
            log.exception("cluster node table not read")

    # ---- new calls ---------------------------------------------------------------------------
    async def place_call(self, request: Request, body: bytes) -> Response | None:
        """Forward a new call to the node it is placed on and return that node's reply; None: answer it here."""
        try:
            nodes = await self.live_nodes()
        except StoreUnavailable:
            self.counts["placed_here_store_down"] += 1
            return None
        for node in self._unsuspected(placement_order(nodes, self.recent)):
            if node.node_id == self.node_id:
                self.counts["placed_here"] += 1
                return None
            resp = await self._send(request.method, node, _target(request.scope), request.headers, body,
                                    client=client_host(request))
            if resp is None:
                self.suspects[node.node_id] = time.monotonic() + SUSPECT_S
                continue
            if resp.status_code in (429, 503) and _error_code(resp) in _NEXT_NODE_CODES:
                log.info("call placement: node=%s answered %d %s, trying the next", node.node_id,
                         resp.status_code, _error_code(resp))
                continue
            if resp.status_code == 201:
                self.recent.note(node.node_id)
                self.counts["forwarded"] += 1
            return _reply(resp)
        self.counts["placed_here_no_other"] += 1  # no other node took it: this one's own admission answers
        return None

    def _unsuspected(self, order: list[NodeRecord]) -> list[NodeRecord]:
        """`order` without the nodes that recently did not answer (a dead node's record lives on until its
        TTL), unless no other node is left."""
        now = time.monotonic()
        self.suspects = {k: until for k, until in self.suspects.items() if until > now}
        kept = [n for n in order if n.node_id not in self.suspects]
        return kept or order

    async def _send(self, method: str, node: NodeRecord, target: str, headers: Mapping[str, str],
                    body: bytes = b"", *, timeout: float = FORWARD_TIMEOUT_S,
                    client: str | None = None) -> httpx.Response | None:
        """`method target` signed to `node`; None when the node cannot be reached or does not answer."""
        url = httpx.URL(node.internal_url + target)
        try:
            return await self.http.request(method, url, content=body,
                                           headers=self._signed(method, url, headers, body, client),
                                           timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S))
        except httpx.HTTPError as exc:
            self.counts["forward_failed"] += 1
            log.warning("node=%s did not answer %s %s: %s: %s", node.node_id, method, target.split("?")[0],
                        type(exc).__name__, exc)
            return None

    # ---- requests about one call -------------------------------------------------------------
    async def owner_of(self, call_id: str, headers: Mapping[str, str]) -> NodeRecord | None:
        """The other live node that owns `call_id`, or None (unknown, or this node's). While the store
        is unreachable the nodes last seen are asked (with the client's own credentials, `headers`)."""
        try:
            owner = await self.store.call_node(call_id)
            if owner is None or owner == self.node_id:
                return None
            return {n.node_id: n for n in await self.live_nodes()}.get(owner)
        except StoreUnavailable:
            return await self._probe(call_id, headers)

    async def _probe(self, call_id: str, headers: Mapping[str, str]) -> NodeRecord | None:
        others = [n for n in self.known.values() if n.node_id != self.node_id]
        target = f"/v1/realtime/calls/{call_id}"
        replies = await asyncio.gather(*(self._send("GET", n, target, headers, timeout=PROBE_TIMEOUT_S)
                                         for n in others))
        return next((n for n, r in zip(others, replies) if r is not None and r.status_code == 200), None)

    async def forward(self, request: Request, node: NodeRecord, body: bytes = b"") -> Response:
        """The owner's reply to this request; 404 `call_not_found` if the owner does not answer (it died)."""
        resp = await self._send(request.method, node, _target(request.scope), request.headers, body)
        if resp is None:
            call_id = request.path_params.get("call_id", "")
            raise _not_found(call_id, f"its node {node.node_id} does not answer")
        return _reply(resp)

    # ---- the cluster-wide call list ----------------------------------------------------------
    async def list_calls(self, request: Request, here: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """This node's calls (`here`) and every other live node's, each with its "node", oldest first."""
        try:
            nodes = await self.live_nodes()
        except StoreUnavailable:
            nodes = list(self.known.values())
        others = [n for n in nodes if n.node_id != self.node_id]
        replies = await asyncio.gather(*(self._send("GET", n, "/v1/realtime/calls", request.headers,
                                                    timeout=LIST_TIMEOUT_S) for n in others))
        calls = list(here)
        for node, resp in zip(others, replies):
            if resp is None or resp.status_code != 200:
                log.warning("call list: node=%s left out (%s)", node.node_id,
                            "no answer" if resp is None else resp.status_code)
                continue
            calls.extend(resp.json().get("data", []))
        return sorted(calls, key=lambda c: c.get("created_at") or 0)

    # ---- the sideband WebSocket --------------------------------------------------------------
    async def proxy_websocket(self, websocket: WebSocket, node: NodeRecord) -> None:
        """Pipe this (not yet accepted) WebSocket to the same route on `node`: its handshake reply is this
        one's, then frames go both ways and each side's close code reaches the other."""
        target = _target(websocket.scope)
        url = httpx.URL(node.internal_url.replace("http", "ws", 1) + target)
        offered = list(websocket.scope.get("subprotocols") or [])
        headers = self._signed("GET", url, {k: v for k, v in websocket.headers.items()
                                            if k.lower() not in ("sec-websocket-key", "sec-websocket-version",
                                                                 "sec-websocket-extensions",
                                                                 "sec-websocket-protocol")})
        try:
            upstream = await connect(str(url), additional_headers=headers, subprotocols=offered or None,
                                     max_size=WS_MAX_FRAME_BYTES, compression=None, open_timeout=FORWARD_TIMEOUT_S,
                                     proxy=None)
        except InvalidStatus as exc:  # the owner refused the handshake: its reply is ours
            reply = exc.response
            headers = {k: reply.headers[k] for k in _REPLY_HEADERS if k in reply.headers}
            await websocket.send_denial_response(Response(reply.body or b"", status_code=reply.status_code,
                                                          headers=headers))
            return
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self.counts["forward_failed"] += 1
            log.warning("node=%s did not take a sideband: %s: %s", node.node_id, type(exc).__name__, exc)
            error = _not_found(websocket.query_params.get("call_id", ""), f"its node {node.node_id} does not answer")
            await websocket.send_denial_response(JSONResponse(error.error.http_body(), status_code=error.status))
            return
        self.counts["sidebands_piped"] += 1
        async with upstream:
            await websocket.accept(subprotocol=upstream.subprotocol)
            await _pipe(websocket, upstream)


async def _pipe(websocket: WebSocket, upstream: ClientConnection) -> None:
    async def client_to_owner() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code") or 1000
                await upstream.close(1000 if code in _UNSENDABLE_CLOSE else code, message.get("reason") or "")
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes")
            if data is not None:
                await upstream.send(data)

    async def owner_to_client() -> None:
        try:
            async for message in upstream:
                if isinstance(message, str):
                    await websocket.send_text(message)
                else:
                    await websocket.send_bytes(message)
        except ConnectionClosed:
            pass
        received = upstream.protocol.close_rcvd
        if received is None or received.code in _UNSENDABLE_CLOSE:
            code, reason = 1011, "the call's node went away"
        else:
            code, reason = received.code, received.reason
        await websocket.close(code, reason)

    tasks = [asyncio.create_task(client_to_owner()), asyncio.create_task(owner_to_client())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None and not isinstance(
                    task.exception(), (ConnectionClosed, RuntimeError, OSError)):
                log.error("sideband pipe failed", exc_info=task.exception())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def cluster_router(scope_holder: Request | WebSocket) -> ClusterRouter | None:
    return getattr(scope_holder.app.state, "cluster_router", None)


async def route_new_call(request: Request, body: bytes) -> Response | None:
    """The reply of the node a new call is placed on; None: answer it here (alone, placed here, or the
    request was forwarded here by another node)."""
    router = cluster_router(request)
    if router is None or router.from_node(request.scope, request.headers, body) is not None:
        return None
    return await router.place_call(request, body)


async def route_to_owner(request: Request, call_id: str) -> Response | None:
    """The owner's reply to a request about a call this node does not have; None: not found anywhere."""
    router = cluster_router(request)
    if router is None or router.from_node(request.scope, request.headers) is not None:
        return None
    owner = await router.owner_of(call_id, request.headers)
    return None if owner is None else await router.forward(request, owner)


def client_host(request: Request) -> str:
    """The client's address: the peer's, or for a request another node forwarded here (its signature was
    checked by `route_new_call` before anything else), the address that node saw."""
    forwarded = request.headers.get(CLIENT_HEADER)
    if forwarded and cluster_router(request) is not None and SIGNATURE_HEADER in request.headers:
        return forwarded
    return request.client.host if request.client else "-"


def node_of(request: Request | WebSocket) -> str | None:
    router = cluster_router(request)
    return None if router is None else router.node_id


async def websocket_owner(websocket: WebSocket, call_id: str, token: str | None) -> NodeRecord | None:
    """The other node a sideband for `call_id` is piped to; None: not found anywhere else."""
    router = cluster_router(websocket)
    if router is None or router.from_node(websocket.scope, websocket.headers) is not None:
        return None
    return await router.owner_of(call_id, {"authorization": f"Bearer {token}"} if token else {})


async def pipe_sideband(websocket: WebSocket, owner: NodeRecord) -> None:
    router = cluster_router(websocket)
    if router is not None:  # always: websocket_owner found the owner through it
        await router.proxy_websocket(websocket, owner)
