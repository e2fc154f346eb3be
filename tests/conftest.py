import pytest

from openrealtime.api.embedded import embedded_server
from openrealtime.config import Settings
from tests.helpers import server_settings


@pytest.fixture
async def echo_server():
    """An in-process server in echo mode (no models) on a free port."""
    async with embedded_server(server_settings(engine="echo", echo_delay_s=0.2)) as server:
        yield server
