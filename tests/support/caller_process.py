"""WebRTC callers in a process of their own: for tests that kill them (SIGKILL: they vanish without a
goodbye) or that must not share the server's event loop (a burst of callers would load it).

    python -m tests.support.caller_process URL [CALLS] [--burst]

Opens CALLS calls (default 1) with openrealtime.client.rtc.RealtimeRtcClient, one after another or, with
--burst, all at once, and prints one line per call: `{"call_id": ...}` once `session.created` has arrived,
or `{"call_id": ..., "error": ...}` if it did not within 30 s. Then keeps the calls up (the microphones
send silence) until stdin closes (every call is closed, then the process exits) or it is killed.
"""

import asyncio
import json
import sys

from openrealtime.client.rtc import RealtimeRtcClient

TIMEOUT_S = 30.0


async def open_call(url: str) -> RealtimeRtcClient:
    client = RealtimeRtcClient(url, session={"type": "realtime"})
    try:
        resp = await client.connect()
        if resp.status_code != 201:
            raise RuntimeError(f"POST → {resp.status_code}: {resp.text[:300]}")
        await client.next_event("session.created", timeout=TIMEOUT_S)
        print(json.dumps({"call_id": client.call_id}), flush=True)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        print(json.dumps({"call_id": client.call_id, "error": f"{type(exc).__name__}: {exc}"[:500]}), flush=True)
    return client


async def main(url: str, calls: int, burst: bool) -> None:
    if burst:
        clients = await asyncio.gather(*(open_call(url) for _ in range(calls)))
    else:
        clients = [await open_call(url) for _ in range(calls)]
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(args[0], int(args[1]) if len(args) > 1 else 1, "--burst" in sys.argv))
