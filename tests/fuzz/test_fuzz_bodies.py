"""POST /v1/realtime/calls bodies as the route parses them (multipart with odd parts and boundaries, JSON with
odd types and depths, raw application/sdp, odd Content-Types): each one gives an offer and a session, or a
4xx in OpenAI's error shape. (tests/fuzz/test_fuzz_server.py sends some through a real server.)"""

import random

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from openrealtime.api.body import parse_offer_body
from openrealtime.api.errors import ApiError
from tests.fuzz.body_cases import body_case
from tests.fuzz.harness import parse_call_body
from tests.fuzz.sdp_cases import real_offers

OFFERS = real_offers()
FUZZ = settings(derandomize=True, deadline=None, database=None, phases=[Phase.generate],
                suppress_health_check=list(HealthCheck))


parse = parse_call_body


@settings(FUZZ, max_examples=3000)
@given(seed=st.integers(0, 2**32 - 1))
def test_bodies_parse_or_get_a_4xx(seed):
    ctype, body = body_case(random.Random(seed), OFFERS, huge=1 << 14)
    parse(ctype, body)


def test_every_encoding_and_many_refusals_are_reached():
    outcomes = {}
    for seed in range(600):
        outcome = parse(*body_case(random.Random(seed), OFFERS, huge=1 << 12))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes["parsed"] > 50 and len(outcomes) >= 8, outcomes


# ---- what the fuzzing found --------------------------------------------------------------------------------
def test_a_boundary_longer_than_the_parser_takes_is_a_400():
    # python-multipart raises in its constructor for a boundary over 256 bytes: that was outside the try (500)
    boundary = "b" * 300
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"sdp\"\r\n\r\n{OFFERS['aiortc-1.16']}\r\n"
            f"--{boundary}--\r\n").encode()
    with pytest.raises(ApiError) as info:
        parse_offer_body(f"multipart/form-data; boundary={boundary}", body)
    assert info.value.status == 400 and info.value.error.code == "invalid_body"
