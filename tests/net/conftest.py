"""Network-namespace fixtures: a veth-linked namespace with UDP to the root namespace dropped."""

import pytest

from tests.net.netns import Netns, NetnsUnavailable, reap_stale


@pytest.fixture
def udp_blocked_netns():
    """A fresh namespace (unique name) whose UDP to/from the root-side veth address is dropped.

    Fails (never skips) when namespaces cannot be created: the ICE-TCP fallback must be tested.
    Removed on teardown, also when the test fails.
    """
    reap_stale()
    ns = Netns()
    try:
        ns.create()
    except NetnsUnavailable as exc:
        pytest.fail(str(exc))
    try:
        ns.block_udp()
        yield ns
    finally:
        ns.close()
