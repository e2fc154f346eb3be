"""Every aiortc / aioice internal openrealtime touches is pinned (aiortc_patches/contract.py), and holds on
the installed versions: if one of these fails, aiortc or aioice changed under openrealtime, and the pin's
`why` says which module to re-read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from openrealtime.media.aiortc_patches import contract

ROOT = Path(__file__).resolve().parents[2] / "openrealtime"


def test_the_versions_are_the_pinned_ones():
    for name, (version, wanted) in contract.SUPPORTED.items():
        assert version.startswith(wanted), f"{name} {version}: openrealtime is written for {wanted}x"


@pytest.mark.parametrize("pin", contract.PINS, ids=lambda pin: f"{pin.owner}.{pin.name}")
def test_pin_holds(pin):
    assert contract.check(pin) == [], pin.why


def test_the_pins_are_unique_and_say_who_relies_on_them():
    labels = [pin.label for pin in contract.PINS]
    assert len(labels) == len(set(labels))
    assert all(pin.why for pin in contract.PINS)


def test_every_name_mangled_aiortc_attribute_in_the_code_is_pinned():
    """A private attribute of an aiortc class read by its mangled name (`_RTCRtpReceiver__codecs`) anywhere
    in openrealtime/ has a pin."""
    pinned = {(pin.owner.rsplit(".", 1)[-1], pin.name) for pin in contract.PINS}
    used = set()
    for path in ROOT.rglob("*.py"):
        for cls, name in re.findall(r"_(RTC\w+?|HeaderExtensionsMap)(__\w+)", path.read_text()):
            used.add((cls, name))
    assert used, "the scan finds the mangled names the patches use"
    assert used <= pinned, sorted(used - pinned)


def test_a_changed_internal_is_named():
    pin = contract.Pin("aiortc.rtcrtpreceiver.RTCRtpReceiver", "__jitter_buffer", contract.STATE, "test",
                       set_in="receive")
    assert contract.check(pin) == ["aiortc.rtcrtpreceiver.RTCRtpReceiver.__jitter_buffer: no longer set in "
                                   "aiortc.rtcrtpreceiver.RTCRtpReceiver.receive"]
    gone = contract.Pin("aiortc.rtcrtpsender.RTCRtpSender", "_no_such_method", contract.COROUTINE, "test")
    assert contract.check(gone) == ["aiortc.rtcrtpsender.RTCRtpSender._no_such_method: gone"]
    moved = contract.Pin("aiortc.rtcrtpsender.RTCRtpSender", "_next_encoded_frame", contract.COROUTINE, "test",
                         params=("self",), markers=("no such line",))
    assert contract.check(moved) == [
        "aiortc.rtcrtpsender.RTCRtpSender._next_encoded_frame: takes ('self', 'codec'), not ('self',)",
        "aiortc.rtcrtpsender.RTCRtpSender._next_encoded_frame: its source lacks 'no such line'"]
