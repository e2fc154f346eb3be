"""A plain aiortc answering server: the baseline for bench/call_setup.py.

POST /v1/realtime/calls (multipart `sdp`, `application/sdp`, or JSON `{"sdp": ...}`) →
201 with the SDP answer, produced with stock aiortc: `RTCPeerConnection(RTCConfiguration(
iceServers=[]))` (the default configuration minus the default Google STUN server, so nothing
leaves the host), setRemoteDescription → createAnswer → setLocalDescription, no codec or
ICE changes. When the data channel arrives it sends a `session.created`-like message.
Served by FastAPI + uvicorn with uvicorn's default loop (uvloop when installed), like ours.

    python bench/_plain_aiortc.py --port 8123
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets

import uvicorn
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()
pcs: set[RTCPeerConnection] = set()


async def _drain(track) -> None:
    try:
        while True:
            await track.recv()
    except (MediaStreamError, asyncio.CancelledError):
        return


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok", "calls": len(pcs)}


@app.post("/v1/realtime/calls", status_code=201)
async def calls(request: Request) -> Response:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        sdp = str(form["sdp"])
    elif ctype.startswith("application/json"):
        sdp = (await request.json())["sdp"]
    else:
        sdp = (await request.body()).decode()
    call_id = "rtc_" + secrets.token_hex(12)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pcs.add(pc)
    tasks: list[asyncio.Task] = []

    @pc.on("datachannel")
    def _datachannel(channel) -> None:
        channel.send(json.dumps({"type": "session.created", "event_id": "event_" + secrets.token_hex(8),
                                 "session": {"id": call_id, "object": "realtime.session"}}))

    @pc.on("track")
    def _track(track) -> None:
        tasks.append(asyncio.ensure_future(_drain(track)))

    @pc.on("connectionstatechange")
    async def _state() -> None:
        if pc.connectionState in ("failed", "closed"):
            for t in tasks:
                t.cancel()
            pcs.discard(pc)
            await pc.close()

    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    return Response(content=pc.localDescription.sdp, status_code=201, media_type="application/sdp",
                    headers={"Location": f"/v1/realtime/calls/{call_id}"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, log_level="warning")


if __name__ == "__main__":
    main()
