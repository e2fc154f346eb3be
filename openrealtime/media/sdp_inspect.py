"""`openrealtime inspect-sdp FILE|-`: the seed review's WebRTC tables for any SDP offer or answer.

The parser is our own, line based and forgiving: LF or CRLF, unknown lines and attributes are
kept (``other``) instead of raising, so that a broken or exotic SDP can still be inspected
(aiortc's parser throws on some inputs). Input may also be the JSON of an
``RTCSessionDescription`` (``{"type": "offer", "sdp": "..."}``) or a string copied from a JS
console with literal ``\\r\\n`` escapes.

``inspect_sdp(text) -> dict`` (JSON-serialisable); ``render_text(report) -> str`` (aligned
tables); ``main_inspect(path, as_json) -> int`` for the CLI.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

# ---- vocabularies ---------------------------------------------------------------------------
EXTENSION_NAMES = {
    "urn:ietf:params:rtp-hdrext:ssrc-audio-level": "audio-level",
    "urn:ietf:params:rtp-hdrext:csrc-audio-level": "csrc-audio-level",
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": "abs-send-time",
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01": "transport-wide-cc",
    "http://www.webrtc.org/experiments/rtp-hdrext/transport-wide-cc-02": "transport-wide-cc-02",
    "urn:ietf:params:rtp-hdrext:sdes:mid": "mid",
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id": "rid",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id": "repaired-rid",
    "urn:ietf:params:rtp-hdrext:toffset": "toffset",
    "urn:3gpp:video-orientation": "video-orientation",
    "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay": "playout-delay",
    "http://www.webrtc.org/experiments/rtp-hdrext/video-content-type": "video-content-type",
    "http://www.webrtc.org/experiments/rtp-hdrext/video-timing": "video-timing",
    "http://www.webrtc.org/experiments/rtp-hdrext/color-space": "color-space",
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time": "abs-capture-time",
    "http://www.webrtc.org/experiments/rtp-hdrext/generic-frame-descriptor-00": "generic-frame-descriptor",
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension":
        "dependency-descriptor",
    "http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00": "video-layers-allocation",
    "http://www.webrtc.org/experiments/rtp-hdrext/inband-cn": "inband-cn",
}
# how the summary's "RTP header" row names them (the seed writes RID, R-RID)
SUMMARY_EXT_NAMES = {"mid": "MID", "rid": "RID", "repaired-rid": "R-RID"}
NON_MEDIA_CODECS = {"rtx", "red", "ulpfec", "flexfec-03", "cn", "telephone-event"}
CODEC_DISPLAY = {"opus": "Opus", "h264": "H.264", "h265": "H.265", "vp8": "VP8", "vp9": "VP9", "av1": "AV1",
                 "pcmu": "PCMU", "pcma": "PCMA", "g722": "G722", "red": "RED", "cn": "CN", "isac": "ISAC",
                 "ilbc": "iLBC", "telephone-event": "telephone-event", "ulpfec": "ULPFEC", "rtx": "RTX"}

# (profile_idc, mask, value, name): WebRTC's h264_profile_level_id.cc patterns, RFC 6184 §8.1
_H264_PATTERNS = (
    (0x42, 0x4F, 0x40, "constrained baseline"),
    (0x4D, 0x8F, 0x80, "constrained baseline"),
    (0x58, 0xCF, 0xC0, "constrained baseline"),
    (0x42, 0x4F, 0x00, "baseline"),
    (0x58, 0xCF, 0x80, "baseline"),
    (0x4D, 0xAF, 0x00, "main"),
    (0x64, 0xFF, 0x00, "high"),
    (0x64, 0xFF, 0x0C, "constrained high"),
    (0xF4, 0xFF, 0x00, "predictive high 4:4:4"),
)
_H264_OTHER = {0x6E: "high 10", 0x7A: "high 4:2:2", 0x53: "scalable baseline", 0x56: "scalable high",
               0x76: "multiview high", 0x80: "stereo high", 0x58: "extended"}


def h264_profile(profile_level_id: str) -> dict[str, Any]:
    """Decode an H.264 ``profile-level-id`` (6 hex digits) into profile name and level."""
    pli = (profile_level_id or "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{6}", pli):
        return {"profile_level_id": profile_level_id, "profile": "invalid", "level": None}
    idc, iop, level_idc = int(pli[0:2], 16), int(pli[2:4], 16), int(pli[4:6], 16)
    name = next((n for p, mask, val, n in _H264_PATTERNS if p == idc and iop & mask == val), None)
    if name is None:
        name = _H264_OTHER.get(idc, f"unknown (profile_idc {idc})")
    if level_idc == 11 and iop & 0x10 and idc in (0x42, 0x4D, 0x58):
        level = "1b"
    elif level_idc == 9:
        level = "1b"
    else:
        level = f"{level_idc // 10}.{level_idc % 10}" if level_idc else "?"
    return {"profile_level_id": pli, "profile": name, "level": level}


# ---- low-level parsing ----------------------------------------------------------------------
def normalize_input(text: str) -> str:
    """Accept SDP text, an RTCSessionDescription JSON object, or a JS string with \\r\\n escapes."""
    stripped = text.strip().lstrip("\ufeff")
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
            if isinstance(obj, dict) and isinstance(obj.get("sdp"), str):
                return obj["sdp"]
        except ValueError:
            pass
    if "\n" not in stripped and ("\\r\\n" in stripped or "\\n" in stripped):
        stripped = stripped.strip('"\'').replace("\\r\\n", "\n").replace("\\n", "\n")
    return stripped


def _split_lines(text: str) -> list[str]:
    return [ln.strip() for ln in re.split(r"\r\n|\n|\r", text) if ln.strip()]


def _attr(line: str) -> tuple[str, str | None]:
    body = line[2:]
    if ":" in body:
        name, value = body.split(":", 1)
        return name.strip(), value.strip()
    return body.strip(), None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _fmtp(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        if "=" in part:
            k, v = part.split("=", 1)
            params[k.strip()] = v.strip()
        else:
            params[part] = ""   # e.g. RED "111/111", or a bare flag
    return params


def parse_candidate(value: str) -> dict[str, Any] | None:
    """``foundation component transport priority address port typ type [key value]...``"""
    parts = value.split()
    if len(parts) < 8 or parts[6] != "typ":
        return None
    cand: dict[str, Any] = {
        "foundation": parts[0], "component": _int(parts[1]), "transport": parts[2].lower(),
        "priority": _int(parts[3]), "ip": parts[4], "port": _int(parts[5]), "type": parts[7],
        "tcptype": None, "raddr": None, "rport": None, "extra": {},
    }
    rest = parts[8:]
    for i in range(0, len(rest) - 1, 2):
        key, val = rest[i], rest[i + 1]
        if key == "tcptype":
            cand["tcptype"] = val
        elif key == "raddr":
            cand["raddr"] = val
        elif key == "rport":
            cand["rport"] = _int(val)
        else:
            cand["extra"][key] = val   # generation, ufrag, network-id, network-cost, ...
    ip = cand["ip"]
    cand["family"] = "mdns" if ip.endswith(".local") else ("ipv6" if ":" in ip else "ipv4")
    return cand


# ---- section model --------------------------------------------------------------------------
def _new_media(index: int, line: str) -> dict[str, Any]:
    parts = line[2:].split()
    kind = parts[0] if parts else "?"
    port = _int(parts[1].split("/")[0]) if len(parts) > 1 else None
    proto = parts[2] if len(parts) > 2 else ""
    fmts = parts[3:]
    return {
        "index": index, "kind": kind, "port": port, "proto": proto, "formats": fmts,
        "rejected": port == 0, "mid": None, "direction": None, "bundle_only": False,
        "connection": None, "rtcp": None, "rtcp_mux": False, "rtcp_rsize": False,
        "ice_ufrag": None, "ice_pwd": False, "ice_options": [], "setup": None, "fingerprints": [],
        "candidates": [], "end_of_candidates": False,
        "codecs": [], "header_extensions": [], "rtcp_fb_wildcard": [],
        "ssrcs": {}, "ssrc_groups": [], "rids": [], "simulcast": None, "msid": [],
        "sctp_port": None, "max_message_size": None, "sctpmap": None, "crypto": [],
        "other": [],
    }


def _codec(m: dict[str, Any], pt: str) -> dict[str, Any]:
    for c in m["codecs"]:
        if c["pt"] == pt:
            return c
    c = {"pt": pt, "name": None, "clock_rate": None, "channels": None, "fmtp": {}, "fmtp_raw": None,
         "rtcp_fb": [], "h264": None, "apt": None, "rtx_pt": None}
    m["codecs"].append(c)
    return c


def _parse(text: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    session: dict[str, Any] = {
        "version": None, "origin": None, "name": None, "timing": None, "connection": None,
        "groups": [], "msid_semantic": None, "extmap_allow_mixed": False, "ice_lite": False,
        "ice_ufrag": None, "ice_pwd": False, "ice_options": [], "setup": None, "fingerprints": [],
        "header_extensions": [], "other": [],
    }
    media: list[dict[str, Any]] = []
    warnings: list[str] = []
    for lineno, line in enumerate(_split_lines(text), 1):
        if len(line) < 2 or line[1] != "=":
            warnings.append(f"line {lineno}: not an SDP line: {line[:60]!r}")
            continue
        t, value = line[0], line[2:]
        if t == "m":
            media.append(_new_media(len(media), line))
            continue
        target = media[-1] if media else session
        if t == "v":
            session["version"] = value
        elif t == "o":
            p = value.split()
            session["origin"] = {"username": p[0] if p else None, "session_id": p[1] if len(p) > 1 else None,
                                 "version": p[2] if len(p) > 2 else None,
                                 "address": p[5] if len(p) > 5 else None}
        elif t == "s":
            session["name"] = value
        elif t == "t":
            session["timing"] = value
        elif t == "c":
            target["connection"] = value
        elif t == "a":
            _parse_attr(session, media[-1] if media else None, line, warnings, lineno)
        else:
            target["other"].append(line)
    return session, media, warnings


def _parse_attr(session: dict[str, Any], m: dict[str, Any] | None, line: str, warnings: list[str],
                lineno: int) -> None:
    name, value = _attr(line)
    target = m if m is not None else session
    v = value or ""
    if name in ("sendrecv", "sendonly", "recvonly", "inactive"):
        if m is not None:
            m["direction"] = name
        else:
            session["direction"] = name
    elif name == "group":
        p = v.split()
        if p:
            session["groups"].append({"semantics": p[0], "mids": p[1:]})
    elif name == "msid-semantic":
        session["msid_semantic"] = v
    elif name == "extmap-allow-mixed":
        session["extmap_allow_mixed"] = True
    elif name == "ice-lite":
        session["ice_lite"] = True
    elif name == "ice-ufrag":
        target["ice_ufrag"] = v
    elif name == "ice-pwd":
        target["ice_pwd"] = bool(v)
    elif name == "ice-options":
        target["ice_options"] = v.split()
    elif name == "setup":
        target["setup"] = v
    elif name == "fingerprint":
        p = v.split(None, 1)
        target["fingerprints"].append({"algorithm": p[0].lower() if p else "", "value": p[1] if len(p) > 1 else ""})
    elif name == "extmap":
        p = v.split()
        if p:
            ident, _, direction = p[0].partition("/")
            uri = p[1] if len(p) > 1 else ""
            target["header_extensions"].append({
                "id": _int(ident), "direction": direction or None, "uri": uri,
                "name": EXTENSION_NAMES.get(uri, uri.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]),
            })
    elif m is None:
        session["other"].append(line)
    elif name == "mid":
        m["mid"] = v
    elif name == "bundle-only":
        m["bundle_only"] = True
    elif name == "rtcp":
        m["rtcp"] = v
    elif name == "rtcp-mux":
        m["rtcp_mux"] = True
    elif name == "rtcp-rsize":
        m["rtcp_rsize"] = True
    elif name == "candidate":
        cand = parse_candidate(v)
        if cand is None:
            warnings.append(f"line {lineno}: unparsable candidate: {v[:60]!r}")
        else:
            m["candidates"].append(cand)
    elif name == "end-of-candidates":
        m["end_of_candidates"] = True
    elif name == "rtpmap":
        p = v.split(None, 1)
        if len(p) == 2:
            c = _codec(m, p[0])
            enc = p[1].split("/")
            c["name"] = enc[0]
            c["clock_rate"] = _int(enc[1]) if len(enc) > 1 else None
            c["channels"] = _int(enc[2]) if len(enc) > 2 else None
    elif name == "fmtp":
        p = v.split(None, 1)
        if p:
            c = _codec(m, p[0])
            c["fmtp_raw"] = p[1] if len(p) > 1 else ""
            c["fmtp"] = _fmtp(c["fmtp_raw"])
    elif name == "rtcp-fb":
        p = v.split(None, 1)
        if len(p) == 2:
            if p[0] == "*":
                m["rtcp_fb_wildcard"].append(p[1])
            else:
                _codec(m, p[0])["rtcp_fb"].append(p[1])
    elif name == "ssrc":
        p = v.split(None, 1)
        if p:
            entry = m["ssrcs"].setdefault(p[0], {})
            if len(p) > 1:
                key, _, val = p[1].partition(":")
                entry[key] = val
    elif name == "ssrc-group":
        p = v.split()
        if p:
            m["ssrc_groups"].append({"semantics": p[0], "ssrcs": p[1:]})
    elif name == "rid":
        p = v.split(None, 2)
        if p:
            m["rids"].append({"id": p[0], "direction": p[1] if len(p) > 1 else None,
                              "params": p[2] if len(p) > 2 else ""})
    elif name == "simulcast":
        m["simulcast"] = v
    elif name == "msid":
        m["msid"].append(v)
    elif name == "sctp-port":
        m["sctp_port"] = _int(v)
    elif name == "max-message-size":
        m["max_message_size"] = _int(v)
    elif name == "sctpmap":
        m["sctpmap"] = v
    elif name == "crypto":
        m["crypto"].append(v)
    else:
        m["other"].append(line)


# ---- analysis -------------------------------------------------------------------------------
def _finish_codecs(m: dict[str, Any]) -> None:
    by_pt = {c["pt"]: c for c in m["codecs"]}
    for c in m["codecs"]:
        if c["name"] is None and c["pt"].isdigit() and int(c["pt"]) < 35:
            c["name"] = {0: "PCMU", 8: "PCMA", 9: "G722", 13: "CN", 18: "G729"}.get(int(c["pt"]))
        lname = (c["name"] or "").lower()
        c["rtcp_fb"] = c["rtcp_fb"] + [fb for fb in m["rtcp_fb_wildcard"] if fb not in c["rtcp_fb"]]
        if lname == "h264":
            c["h264"] = h264_profile(c["fmtp"].get("profile-level-id", "42000a"))
            c["h264"]["packetization_mode"] = _int(c["fmtp"].get("packetization-mode", "0"))
        if lname == "rtx":
            c["apt"] = c["fmtp"].get("apt")
            base = by_pt.get(c["apt"] or "")
            if base is not None:
                base["rtx_pt"] = c["pt"]
    # keep m= line order
    order = {pt: i for i, pt in enumerate(m["formats"])}
    m["codecs"].sort(key=lambda c: order.get(c["pt"], len(order)))


def _codec_label(c: dict[str, Any]) -> str:
    name = c["name"] or f"pt{c['pt']}"
    label = f"{name}/{c['clock_rate']}" if c["clock_rate"] else name
    if c["channels"]:
        label += f"/{c['channels']}"
    return label


def _display(name: str | None) -> str:
    return CODEC_DISPLAY.get((name or "?").lower(), name or "?")


def guess_type(session: dict[str, Any], media: list[dict[str, Any]]) -> str:
    roles = {m["setup"] for m in media if m["setup"]} | ({session["setup"]} if session["setup"] else set())
    if "actpass" in roles:
        return "offer"
    if roles & {"active", "passive"}:
        return "answer"
    return "unknown"


def _ice(session: dict[str, Any], media: list[dict[str, Any]]) -> dict[str, Any]:
    seen: dict[tuple, dict[str, Any]] = {}
    for m in media:
        for c in m["candidates"]:
            key = (c["foundation"], c["component"], c["transport"], c["ip"], c["port"], c["type"], c["tcptype"])
            if key not in seen:
                seen[key] = dict(c, mids=[])
            seen[key]["mids"].append(m["mid"] if m["mid"] is not None else str(m["index"]))
    ufrags = [u for u in [session["ice_ufrag"]] + [m["ice_ufrag"] for m in media] if u]
    options = sorted({o for o in session["ice_options"] + [o for m in media for o in m["ice_options"]]})
    eoc = [m["mid"] if m["mid"] is not None else str(m["index"]) for m in media if m["end_of_candidates"]]
    return {
        "ufrags": list(dict.fromkeys(ufrags)), "pwd": bool(session["ice_pwd"] or any(m["ice_pwd"] for m in media)),
        "ice_lite": session["ice_lite"], "options": options,
        "candidates": list(seen.values()), "candidate_lines": sum(len(m["candidates"]) for m in media),
        "end_of_candidates": bool(eoc), "end_of_candidates_mids": eoc,
    }


def _dtls(session: dict[str, Any], media: list[dict[str, Any]]) -> dict[str, Any]:
    fps = [dict(f, scope="session") for f in session["fingerprints"]]
    per_m: dict[tuple[str, str], list[str]] = {}
    for m in media:
        for f in m["fingerprints"]:
            per_m.setdefault((f["algorithm"], f["value"]), []).append(m["mid"] or str(m["index"]))
    for (alg, value), mids in per_m.items():
        if any(x["algorithm"] == alg and x["value"] == value for x in fps):
            continue
        scope = "every m-section" if len(mids) == len(media) and len(media) > 1 else "mid " + " ".join(mids)
        fps.append({"algorithm": alg, "value": value, "scope": scope})
    roles = [r for r in [session["setup"]] + [m["setup"] for m in media] if r]
    return {"setup": list(dict.fromkeys(roles)), "fingerprints": fps,
            "setup_by_mid": {(m["mid"] or str(m["index"])): m["setup"] or session["setup"] for m in media}}


def _kinds_label(kinds: set[str]) -> str:
    order = ["audio", "video"]
    ks = [k for k in order if k in kinds] + sorted(kinds - set(order))
    return " & ".join(ks)


def _summary(report: dict[str, Any]) -> list[dict[str, str]]:
    session, media, ice, dtls = report["session"], report["media"], report["ice"], report["dtls"]
    active = [m for m in media if not m["rejected"]]
    rows: list[tuple[str, str]] = []

    # PeerConnection
    bundles = [g for g in session["groups"] if g["semantics"] == "BUNDLE"]
    mids = [m["mid"] for m in active]
    if bundles and all(mid in bundles[0]["mids"] for mid in mids):
        pc = f"Single PeerConnection using BUNDLE (mids {' '.join(bundles[0]['mids'])})"
    elif bundles:
        pc = f"BUNDLE groups {[g['mids'] for g in bundles]}, not covering every m-section"
    else:
        pc = f"No BUNDLE: {len(active)} separate transports"
    rows.append(("PeerConnection", pc))

    # ICE / TURN
    cands = ice["candidates"]
    if not cands:
        ice_txt = "No candidates in the SDP (trickled separately or not gathered)"
    else:
        types = {c["type"] for c in cands}
        if types == {"host"}:
            ice_txt = "Host-candidates only (no STUN or TURN server)"
        else:
            names = {"host": "host", "srflx": "STUN (srflx)", "prflx": "prflx", "relay": "TURN (relay)"}
            ice_txt = "Candidates: " + ", ".join(names.get(t, t) for t in sorted(types))
        by_t: dict[str, int] = {}
        for c in cands:
            label = c["transport"].upper() + (f" {c['tcptype']}" if c["tcptype"] else "")
            by_t[label] = by_t.get(label, 0) + 1
        fams = sorted({c["family"] for c in cands})
        comps = sorted({c["component"] for c in cands if c["component"] is not None})
        ice_txt += (f"; {len(cands)} unique: " + ", ".join(f"{n} {k}" for k, n in by_t.items())
                    + f"; {'/'.join(fams)}" + ("" if comps == [1] else f"; components {comps}"))
    ice_txt += "; ice-lite" if ice["ice_lite"] else ""
    ice_txt += "; end-of-candidates " + ("present" if ice["end_of_candidates"] else "absent")
    rows.append(("ICE/TURN", ice_txt))

    # SRTP
    rtp_media = [m for m in active if m["kind"] in ("audio", "video")]
    if any(m["crypto"] for m in rtp_media):
        srtp = "SDES-SRTP (a=crypto keys in the SDP)"
    elif dtls["fingerprints"]:
        algs = sorted({f["algorithm"] for f in dtls["fingerprints"]})
        srtp = f"Standard DTLS-SRTP (setup {'/'.join(dtls['setup']) or '?'}; {', '.join(algs)} fingerprint)"
    elif rtp_media:
        srtp = "None (no fingerprint, no crypto)"
    else:
        srtp = "n/a (no RTP media)"
    rows.append(("SRTP Encryption", srtp))

    rows.append(("Audio Transmission", _media_summary([m for m in active if m["kind"] == "audio"], "audio")))
    rows.append(("Video transmission", _media_summary([m for m in active if m["kind"] == "video"], "video")))

    dcs = [m for m in active if m["kind"] == "application"]
    if dcs:
        d = dcs[0]
        details = []
        if d["sctp_port"] is not None:
            details.append(f"sctp-port {d['sctp_port']}")
        if d["sctpmap"]:
            details.append(f"sctpmap {d['sctpmap']} (legacy)")
        details.append(f"max-message-size {d['max_message_size']}" if d["max_message_size"] is not None
                       else "max-message-size absent (64 KiB assumed)")
        dc = ("Standard SCTP over DTLS" if "DTLS/SCTP" in d["proto"] else f"{d['proto']}") + f" ({', '.join(details)})"
    else:
        dc = "none"
    rows.append(("DataChannels", dc))

    # RTP header extensions: name -> kinds
    ext_kinds: dict[str, set[str]] = {}
    for m in rtp_media:
        for e in m["header_extensions"] + session["header_extensions"]:
            ext_kinds.setdefault(e["name"], set()).add(m["kind"])
    if ext_kinds:
        groups: dict[str, list[str]] = {}
        for name, kinds in ext_kinds.items():
            groups.setdefault(_kinds_label(kinds), []).append(SUMMARY_EXT_NAMES.get(name, name))
        rtp = "; ".join(f"{', '.join(names)} for {k}" for k, names in groups.items())
    else:
        rtp = "no header extensions"
    if session["extmap_allow_mixed"]:
        rtp += "; extmap-allow-mixed"
    rows.append(("RTP header", rtp))

    # RTCP
    fbs = {fb for m in rtp_media for c in m["codecs"] for fb in c["rtcp_fb"]}
    has_rtx = any((c["name"] or "").lower() == "rtx" for m in rtp_media for c in m["codecs"])
    if "transport-cc" in fbs or "transport-wide-cc" in ext_kinds:
        bwe = "BWE with transport-wide-cc"
    elif "goog-remb" in fbs:
        bwe = "BWE with REMB"
    else:
        bwe = "no BWE feedback"
    feats = {"NACK": "nack" in fbs, "PLI": "nack pli" in fbs, "FIR": "ccm fir" in fbs,
             "REMB": "goog-remb" in fbs, "RTX": has_rtx}
    present = [k for k, v in feats.items() if v]
    absent = [k for k, v in feats.items() if not v]
    rtcp = bwe + "; " + ("/".join(present) if present else "no NACK/PLI")
    if absent and present:
        rtcp += f" (no {', '.join(absent)})"
    mux = [m for m in rtp_media if m["rtcp_mux"]]
    if rtp_media:
        rtcp += "; rtcp-mux" if len(mux) == len(rtp_media) else "; rtcp-mux missing on some m-sections"
        if all(m["rtcp_rsize"] for m in rtp_media):
            rtcp += ", rtcp-rsize"
    else:
        rtcp = "n/a (no RTP media)"
    rows.append(("RTCP", rtcp))
    return [{"aspect": a, "value": v} for a, v in rows]


def _media_summary(ms: list[dict[str, Any]], kind: str) -> str:
    if not ms:
        return "none"
    m = ms[0]
    codecs = [c for c in m["codecs"] if c["name"]]
    base = [c for c in codecs if (c["name"] or "").lower() not in NON_MEDIA_CODECS]
    names = list(dict.fromkeys(_display(c["name"]) for c in base))
    direction = m["direction"] or "sendrecv"
    if kind == "audio":
        if not names:
            return f"no codecs ({direction})"
        first = base[0]
        txt = names[0]
        if (first["name"] or "").lower() == "opus":
            txt += " with in-band FEC" if first["fmtp"].get("useinbandfec") == "1" else " without in-band FEC"
        if len(names) > 1:
            txt += f", {'/'.join(names[1:])} fallback"
        lower = {(c["name"] or "").lower() for c in codecs}
        dtx = any(c["fmtp"].get("usedtx") == "1" for c in codecs)
        extras = [x for x, ok in (("DTX", dtx), ("RED", "red" in lower)) if ok]
        missing = [x for x, ok in (("DTX", dtx), ("RED", "red" in lower)) if not ok]
        parts = [txt]
        if extras:
            parts.append("with " + " and ".join(extras))
        if missing:
            parts.append("no " + " or ".join(missing))
        others = [_display(n) for n in ("cn", "telephone-event") if n in lower]
        if others:
            parts.append(", ".join(others))
        return "; ".join(parts) + f" ({direction})"
    # video
    if not names:
        return f"no codecs ({direction})"
    txt = f"{names[0]}-only" if len(names) == 1 else ", ".join(names)
    has_rtx = any((c["name"] or "").lower() == "rtx" for c in codecs)
    simulcast = bool(m["simulcast"] or m["rids"] or any(g["semantics"] == "SIM" for g in m["ssrc_groups"]))
    fec = any((c["name"] or "").lower() in ("ulpfec", "flexfec-03", "red") for c in codecs)
    without = [x for x, ok in (("simulcast", simulcast), ("RTX", has_rtx)) if not ok]
    with_ = [x for x, ok in (("simulcast", simulcast), ("RTX", has_rtx), ("RED/FEC", fec)) if ok]
    if without:
        txt += " without " + ", ".join(without)
    if with_:
        txt += (" with " if not without else "; with ") + ", ".join(with_)
    profiles = list(dict.fromkeys(c["h264"]["profile"] for c in codecs if c["h264"]))
    if profiles:
        txt += f"; H.264 profiles: {', '.join(profiles)}"
    return txt + f" ({direction})"


def inspect_sdp(text: str) -> dict[str, Any]:
    """Parse an SDP offer or answer into the review's tables (a JSON-serialisable dict).

    Keys: ``type`` (offer/answer/unknown, from the DTLS setup roles), ``line_endings``,
    ``session`` (origin, groups, msid-semantic, extmap-allow-mixed, ice-lite), ``ice``
    (ufrags, options, unique ``candidates`` with the mids they appear in, end-of-candidates),
    ``dtls`` (setup roles, fingerprints), ``media`` (per m-section: kind, mid, direction, codecs
    with fmtp/rtcp-fb/H.264 profile/RTX pairing, header extensions, rtcp-mux/rsize, ssrcs,
    ssrc-groups, rids, simulcast, sctp-port, max-message-size, unknown lines in ``other``),
    ``summary`` (rows like the seed's table) and ``warnings``.
    """
    text = normalize_input(text)
    crlf = text.count("\r\n")
    lf = text.count("\n") - crlf
    session, media, warnings = _parse(text)
    for m in media:
        _finish_codecs(m)
    if session["version"] is None:
        warnings.append("no v= line")
    if not media:
        warnings.append("no m= sections")
    for m in media:
        if m["kind"] in ("audio", "video") and not m["rejected"] and not m["rtcp_mux"]:
            warnings.append(f"m={m['kind']} mid {m['mid']}: no a=rtcp-mux")
        if m["mid"] is None and not m["rejected"]:
            warnings.append(f"m={m['kind']} #{m['index']}: no a=mid")
    report: dict[str, Any] = {
        "type": guess_type(session, media),
        "line_endings": "CRLF" if crlf and not lf else ("LF" if lf and not crlf else ("mixed" if crlf else "none")),
        "session": {k: v for k, v in session.items() if k not in ("fingerprints", "setup", "ice_ufrag", "ice_pwd",
                                                                   "ice_options")},
        "ice": _ice(session, media),
        "dtls": _dtls(session, media),
        "media": media,
        "warnings": warnings,
    }
    for m in media:   # per-m ICE/DTLS are summarised above; keep candidates once (in "ice")
        m["candidate_count"] = len(m.pop("candidates"))
    report["summary"] = _summary(report)
    return report


# ---- text rendering -------------------------------------------------------------------------
def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)


def render_text(report: dict[str, Any]) -> str:
    """Aligned (Markdown-style) tables: summary, session, ICE, DTLS, then each m-section."""
    out: list[str] = []
    s = report["session"]
    out.append(f"SDP {report['type']} ({report['line_endings']} line endings, {len(report['media'])} m-sections)")
    out.append("")
    out.append("Summary")
    out.append(_table(["Aspect", "Value"], [[r["aspect"], r["value"]] for r in report["summary"]]))
    out.append("")
    origin = s["origin"] or {}
    rows = [["origin", f"{origin.get('username')} {origin.get('session_id')} {origin.get('version')} "
                       f"{origin.get('address')}" if origin else None],
            ["groups", "; ".join(f"{g['semantics']} {' '.join(g['mids'])}" for g in s["groups"]) or "none"],
            ["msid-semantic", s["msid_semantic"]], ["extmap-allow-mixed", s["extmap_allow_mixed"]]]
    out.append("Session")
    out.append(_table(["Field", "Value"], rows))
    out.append("")
    ice = report["ice"]
    out.append("ICE")
    out.append(_table(["Field", "Value"], [
        ["ufrag", ", ".join(ice["ufrags"]) or "none"], ["pwd", "present" if ice["pwd"] else "absent"],
        ["ice-lite", ice["ice_lite"]], ["ice-options", " ".join(ice["options"]) or "none"],
        ["candidates", f"{len(ice['candidates'])} unique ({ice['candidate_lines']} lines)"],
        ["end-of-candidates", ("present in mids " + " ".join(ice["end_of_candidates_mids"]))
         if ice["end_of_candidates"] else "absent"],
    ]))
    if ice["candidates"]:
        out.append("")
        out.append(_table(
            ["Foundation", "Comp", "Transport", "IP", "Port", "Priority", "Type", "tcptype", "raddr:rport", "mids"],
            [[c["foundation"], c["component"], c["transport"].upper(), c["ip"], c["port"], c["priority"], c["type"],
              c["tcptype"] or "", f"{c['raddr']}:{c['rport']}" if c["raddr"] else "", " ".join(c["mids"])]
             for c in ice["candidates"]]))
    out.append("")
    dtls = report["dtls"]
    out.append("DTLS")
    out.append(_table(["Field", "Value"], [["setup", ", ".join(dtls["setup"]) or "none"]]
                      + [[f"fingerprint ({f['scope']})", f"{f['algorithm']} {f['value']}"]
                         for f in dtls["fingerprints"]]))
    for m in report["media"]:
        out.append("")
        title = f"m={m['kind']} mid={m['mid']} {m['proto']} port {m['port']}" + (" (rejected)" if m["rejected"] else "")
        out.append(title)
        rtp = m["kind"] in ("audio", "video")
        rows = [
            ["direction", m["direction"] or "(default sendrecv)"], ["bundle-only", m["bundle_only"] or None],
            ["rtcp-mux", m["rtcp_mux"] if rtp else None], ["rtcp-rsize", m["rtcp_rsize"] if rtp else None],
            ["rtcp", m["rtcp"]], ["candidates", m["candidate_count"] or None],
            ["end-of-candidates", m["end_of_candidates"] or None],
            ["msid", "; ".join(m["msid"]) or None],
            ["ssrcs", "; ".join(f"{k} {v.get('cname', '')}".strip() for k, v in m["ssrcs"].items()) or None],
            ["ssrc-groups", "; ".join(f"{g['semantics']} {' '.join(g['ssrcs'])}" for g in m["ssrc_groups"]) or None],
            ["rids", "; ".join(f"{r['id']} {r['direction']} {r['params']}".strip() for r in m["rids"]) or None],
            ["simulcast", m["simulcast"]], ["crypto", "; ".join(m["crypto"]) or None],
        ] + ([["sctp-port", m["sctp_port"]], ["max-message-size", m["max_message_size"]], ["sctpmap", m["sctpmap"]]]
             if m["kind"] == "application" else [])
        out.append(_table(["Field", "Value"], [r for r in rows if r[1] is not None]))
        if m["codecs"]:
            out.append("")
            out.append(_table(["PT", "Codec", "fmtp", "Profile", "rtcp-fb", "RTX"], [
                [c["pt"], _codec_label(c), c["fmtp_raw"] or "",
                 f"{c['h264']['profile']} {c['h264']['level']}" if c["h264"] else "",
                 ", ".join(c["rtcp_fb"]), c["rtx_pt"] or (f"apt={c['apt']}" if c["apt"] else "")]
                for c in m["codecs"]]))
        if m["header_extensions"]:
            out.append("")
            out.append(_table(["ID", "Extension", "URI", "Direction"], [
                [e["id"], e["name"], e["uri"], e["direction"] or ""] for e in m["header_extensions"]]))
        if m["other"]:
            out.append("")
            out.append("other lines: " + "; ".join(m["other"]))
    if report["warnings"]:
        out.append("")
        out.append("Warnings")
        out.extend(f"- {w}" for w in report["warnings"])
    return "\n".join(out) + "\n"


# ---- CLI entry ------------------------------------------------------------------------------
def main_inspect(path: str, as_json: bool) -> int:
    """Read an SDP from ``path`` (``-`` = stdin), print the report; 0 ok, 2 on bad input."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
    except OSError as exc:
        print(f"inspect-sdp: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    source = "stdin" if path == "-" else path
    if not text.strip():
        print(f"inspect-sdp: {source} is empty; expected an SDP offer or answer (starting with 'v=0').",
              file=sys.stderr)
        return 2
    report = inspect_sdp(text)
    if report["session"]["version"] is None and not report["media"]:
        print(f"inspect-sdp: {source} does not look like SDP (no 'v=' line and no 'm=' sections).",
              file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        sys.stdout.write(render_text(report))
    return 0
