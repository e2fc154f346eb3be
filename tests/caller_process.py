"""A WebRTC caller in a process of its own, for tests that kill it (SIGKILL: it vanishes without a goodbye).

    python -m tests.caller_process URL [CALLS]

Opens CALLS calls (default 1) with openrealtime.client.rtc.RealtimeRtcClient, prints one line per call
once `session.created` has arrived: `{"call_id": ...}`, then keeps them up (the microphone sends silence)
until it is killed.
"""

import asyncio
import json
import sys

from openrealtime.client.rtc import RealtimeRtcClient


async def main(url: str, calls: int) -> None:
    clients = []
    for _ in range(calls):
        client = RealtimeRtcClient(url, session={"type": "realtime"})
        resp = await client.connect()
        if resp.status_code != 201:
            raise SystemExit(f"POST → {resp.status_code}: {resp.text}")
        await client.next_event("session.created", timeout=30)
        clients.append(client)
        print(json.dumps({"call_id": client.call_id}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1))
