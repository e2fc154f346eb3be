import pytest

from openrealtime.api.embedded import embedded_server
from openrealtime.config import Settings


@pytest.fixture
async def echo_server():
    """An in-process server in echo mode (no models) on a free port."""
    async with embedded_server(Settings(port=0, engine="echo", echo_delay_s=0.2)) as server:
        yield server
