"""Transport-wide congestion control: wire format, recorder, aiortc hooks, a live call.

The wire format is checked three ways: against packets captured from Chrome (pion/rtcp's test
vectors, byte for byte), through a second parser written here straight from the draft (bit
strings, no shared code), and by round-tripping random arrival patterns.
"""

import asyncio
import random

import pytest

from openrealtime.media import twcc
from openrealtime.media.aiortc_patches import dtls_transport, server_objects
from openrealtime.media.aiortc_patches.rtp_sender import fast_audio_level_dbov
from openrealtime.media.twcc import (
    LARGE_DELTA,
    NOT_RECEIVED,
    SMALL_DELTA,
    TwccRecorder,
    parse_feedback,
    serialize_feedback,
)

# ---- golden packets (Chrome captures from pion/rtcp transport_layer_cc_test.go) ---------------------
CHROME = {
    "one_small": (bytes.fromhex("afcd0005fa17fa17 43032fa0 00990001 3de80217 20019401".replace(" ", "")),
                  dict(base=153, count=1, ref=4057090, fb=23, statuses=[1], deltas=[37000])),
    "run_7": (bytes.fromhex("afcd0007fa17fa17193dd8bb000400071063 6e0120074c2424100c0c10000003".replace(" ", "")),
              dict(base=4, count=7, ref=1074030, fb=1, statuses=[1] * 7,
                   deltas=[19000, 9000, 9000, 4000, 3000, 3000, 4000])),
    "vector_1bit": (bytes.fromhex("afcd0006fa17fa17193dd8bb0001000e10636d00ba00100c0c100002"),
                    dict(base=1, count=14, ref=1074029, fb=0, statuses=[1, 1, 1, 0, 1] + [0] * 9,
                         deltas=[4000, 3000, 3000, 4000])),
    "vector_12": (bytes.fromhex("afcd0007fa17fa1743032fa09c14000c75842000bec0c13f3b3f53903b000003"),
                        dict(base=39956, count=12, ref=7701536, fb=0,
                             statuses=[1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0],
                             deltas=[48250, 15750, 14750, 15750, 20750, 36000, 14750])),
}


@pytest.mark.parametrize("name", sorted(CHROME))
def test_chrome_packets_parse_and_reserialize_byte_identical(name):
    data, want = CHROME[name]
    fb = parse_feedback(data)
    assert (fb.base_seq, fb.status_count, fb.reference_time, fb.fb_pkt_count) == (
        want["base"], want["count"], want["ref"], want["fb"])
    assert fb.statuses == want["statuses"] and fb.deltas_us == want["deltas"]
    assert draft_parse(data) == [(s, a) for s, a in fb.arrivals()]
    again = serialize_feedback(fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.fb_pkt_count,
                               [a for _, a in fb.arrivals()])
    assert again == data


def test_two_bit_vector_and_large_deltas_packet():
    """pion's 'example3' (two large deltas, run-length chunks); its P bit is bogus, so FCI only."""
    data = bytes.fromhex("afcd0007fa17fa17193dd8bb01740006 45b15a40 40022004 1ffe1f9a d000d000".replace(" ", ""))
    fb = parse_feedback(data[4:], fci_only=True)
    assert fb.statuses == [LARGE_DELTA, LARGE_DELTA, SMALL_DELTA, SMALL_DELTA, SMALL_DELTA, SMALL_DELTA]
    assert fb.deltas_us == [2047500, 2022500, 52000, 0, 52000, 0]


# ---- an independent parser, written from the draft's text -------------------------------------------
def draft_parse(packet: bytes) -> list[tuple[int, int | None]]:
    """§3.1: header, base seq, status count, 24-bit reference time × 64 ms, chunks, deltas × 250 µs."""
    bits = "".join(f"{b:08b}" for b in packet)
    assert bits[0:2] == "10" and int(bits[3:8], 2) == 15 and int(bits[8:16], 2) == 205
    length = (int(bits[16:32], 2) + 1) * 4
    if bits[2] == "1":  # padding: last octet counts the padding octets
        length -= packet[length - 1]
    base = int(bits[96:112], 2)
    count = int(bits[112:128], 2)
    ref = int(bits[128:152], 2)
    if ref >= 1 << 23:
        ref -= 1 << 24
    pos = 160
    symbols: list[int] = []
    while len(symbols) < count:
        chunk = bits[pos:pos + 16]
        pos += 16
        if chunk[0] == "0":
            symbols += [int(chunk[1:3], 2)] * int(chunk[3:], 2)
        elif chunk[1] == "0":
            symbols += [int(c) for c in chunk[2:]]
        else:
            symbols += [int(chunk[i:i + 2], 2) for i in range(2, 16, 2)]
    symbols = symbols[:count]
    t = ref * 64000
    out = []
    for i, sym in enumerate(symbols):
        seq = (base + i) % 65536
        if sym == 1:
            t += int(bits[pos:pos + 8], 2) * 250
            pos += 8
        elif sym == 2:
            v = int(bits[pos:pos + 16], 2)
            t += (v - 65536 if v >= 32768 else v) * 250
            pos += 16
        out.append((seq, t if sym else None))
    assert pos <= length * 8
    return out


@pytest.mark.parametrize("seed", range(40))
def test_random_round_trip_both_parsers(seed):
    rng = random.Random(seed)
    n = rng.choice([1, 2, 7, 14, 15, 40, 300, 9000])
    base = rng.randrange(65536)
    t = rng.randrange(0, 10**9)
    arrivals: list[int | None] = []
    for i in range(n):
        r = rng.random()
        if i and r < 0.15:
            arrivals.append(None)                       # lost
            continue
        if r < 0.25:
            t += rng.randrange(-30000, 0)               # reordered: negative delta
        elif r < 0.3:
            t += rng.randrange(64000, 5_000_000)        # large gap
        else:
            t += rng.randrange(0, 20000)
        arrivals.append(t)
    if arrivals[0] is None:
        arrivals[0] = t
    data = serialize_feedback(0x11223344, 0x55667788, base, seed, arrivals)
    assert len(data) % 4 == 0
    fb = parse_feedback(data)
    mine = fb.arrivals()
    assert mine == draft_parse(data)
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.fb_pkt_count) == (0x11223344, 0x55667788, base, seed)
    for i, ((seq, got), true) in enumerate(zip(mine, arrivals)):
        assert seq == (base + i) % 65536
        if true is None:
            assert got is None
        else:
            assert got is not None and abs(got - true) <= 125, (i, got, true)  # no drift


def test_long_runs_use_run_length_chunks():
    arrivals = [0] + [None] * 20000 + [1000]
    data = serialize_feedback(1, 2, 0, 0, arrivals)
    assert len(data) < 40, "a 20000-packet loss run costs a few run-length chunks"
    assert [a for _, a in parse_feedback(data).arrivals()] == [0] + [None] * 20000 + [1000]


# ---- the recorder -------------------------------------------------------------------------------------
def test_recorder_windows_are_contiguous_and_report_losses():
    rec = TwccRecorder(sender_ssrc=7)
    seqs = [65530, 65531, 65533, 65532, 65535, 0, 1]  # 65534 lost, 65532/65533 reordered, wraps
    for i, s in enumerate(seqs):
        rec.record(s, 1_000_000 + i * 5000, 99)
    first = [parse_feedback(p) for p in rec.build()]
    assert len(first) == 1 and first[0].base_seq == 65530 and first[0].media_ssrc == 99
    got = dict(first[0].arrivals())
    assert got[65534] is None and list(got) == [65530, 65531, 65532, 65533, 65534, 65535, 0, 1]
    assert got[65532] > got[65533], "arrival order is kept (negative delta)"
    rec.record(65534, 1_100_000, 99)        # too late: already reported lost
    rec.record(4, 1_105_000, 99)            # 2, 3 lost
    second = parse_feedback(rec.build()[0])
    assert second.base_seq == 2, "the next feedback starts where the previous one ended"
    assert second.statuses == [NOT_RECEIVED, NOT_RECEIVED, SMALL_DELTA]
    assert rec.late == 1 and rec.build() == []
    assert second.fb_pkt_count == (first[0].fb_pkt_count + 1) % 256


def test_recorder_splits_big_windows():
    rec = TwccRecorder()
    for i in range(1000):
        rec.record(i, i * 1000, 1)
    packets = rec.build()
    assert len(packets) == 3 and all(len(p) < 1300 for p in packets)
    seen = [s for p in packets for s, a in parse_feedback(p).arrivals()]
    assert seen == list(range(1000))


def test_recorder_reports_each_packet_once_across_wraps():
    """Built every 5 packets over 100k (the 16-bit sequence wraps): each feedback covers exactly the packets
    since the last one, and nothing is kept (constant work per packet; bench/media_plane.py prints the cost)."""
    rec = TwccRecorder()
    n = 100_000
    for i in range(n):
        rec.record(i & 0xFFFF, i * 1000, 1)
        if i % 5 == 4:
            packets = rec.build()
            assert len(packets) == 1 and rec.pending == 0
            expected = [((i - k) & 0xFFFF, (i - k) * 1000) for k in (4, 3, 2, 1, 0)]
            assert parse_feedback(packets[0]).arrivals() == expected
    assert rec.packets == n and rec.late == 0 and rec.feedbacks_built == n // 5


# ---- incoming feedback ---------------------------------------------------------------------------------
def test_feedback_is_taken_out_of_a_compound_rtcp_packet():
    """aiortc's parser reads FMT=15 as a NACK list: the server's transport takes transport-cc out first and
    leaves the rest of the compound packet (here a receiver report) to aiortc."""
    from aiortc.rtp import RtcpPacket, RtcpRrPacket

    rr = bytes(RtcpRrPacket(ssrc=0x1234))
    found, rest = dtls_transport.split_twcc(rr + CHROME["run_7"][0] + rr)
    assert len(found) == 1 and isinstance(found[0], dtls_transport.RtcpTwccPacket) and found[0].lost == []
    assert parse_feedback(found[0].payload, fci_only=True).status_count == 7
    assert (found[0].ssrc, found[0].media_ssrc) == (0xFA17FA17, 0x193DD8BB)
    assert rest == rr + rr and [type(p) for p in RtcpPacket.parse(rest)] == [RtcpRrPacket, RtcpRrPacket]
    assert dtls_transport.split_twcc(rr) == ([], rr)


# ---- a live call ----------------------------------------------------------------------------------------
async def test_live_call_feedback_both_ways(echo_server, monkeypatch):
    """aiortc client ↔ server: each side stamps transport-wide sequence numbers and sends feedback;
    the feedback the client receives about its packets parses into arrival info for exactly the
    sequence numbers it stamped."""
    from openrealtime.client.rtc import RealtimeRtcClient

    with server_objects():  # the client runs the server's aiortc objects too: it stamps and sends feedback
        client = RealtimeRtcClient(echo_server.url, session={"type": "realtime"})
        resp = await client.connect()
    assert resp.status_code == 201
    assert twcc.TWCC_URI in resp.text and "transport-cc" in resp.text
    await client.next_event("session.created")
    client_transport = client.pc.getTransceivers()[0].sender.transport
    state = dtls_transport.twcc_state(client_transport)
    reports: list = []
    original = twcc.TwccSendStats.on_feedback

    def capture(self, fci):
        fb = original(self, fci)
        if self is state.send:
            reports.append(fb)
        return fb

    monkeypatch.setattr(twcc.TwccSendStats, "on_feedback", capture)
    await asyncio.sleep(2.0)
    call = echo_server.state.calls.get(client.call_id)
    server_state = dtls_transport.peek_twcc_state(call.pc.getTransceivers()[0].receiver.transport)
    await client.close()

    assert server_state is not None
    srv = server_state.counters()
    print("server TWCC:", srv, "client TWCC:", state.counters())
    assert srv["rtp_recorded"] > 50 and srv["feedback_sent"] >= 10
    assert srv["stamped"] > 50 and srv["feedback_received"] >= 10, "the client's feedback about our audio"
    assert reports and all(r is not None for r in reports)
    reported = [seq for r in reports for seq, t in r.arrivals() if t is not None]
    assert len(reported) == len(set(reported)) > 50
    assert max(reported) < state.send.next_seq, "only sequence numbers the client stamped"
    times = [t for r in reports for _, t in r.arrivals() if t is not None]
    assert max(times) - min(times) > 1_000_000, "arrival times span the call (µs)"


def test_fast_audio_level_matches_aiortc():
    import av
    import numpy as np
    from aiortc import rtp

    rng = np.random.default_rng(7)
    for amplitude in (0, 1, 30, 1000, 12000, 32767):
        for layout, channels in (("mono", 1), ("stereo", 2)):
            frame = av.AudioFrame(format="s16", layout=layout, samples=480)
            data = rng.integers(-amplitude, amplitude + 1, 480 * channels, dtype=np.int16)
            frame.planes[0].update(data.astype("<i2").tobytes())
            assert fast_audio_level_dbov(frame) == rtp.compute_audio_level_dbov(frame), (amplitude, layout)
