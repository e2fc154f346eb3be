import pytest

from openrealtime.api.embedded import embedded_server
from openrealtime.config import Settings
from tests.helpers import server_settings


@pytest.fixture
async def echo_server():
    """An in-process server in echo mode (no models) on a free port."""
    async with embedded_server(server_settings(engine="echo", echo_delay_s=0.2)) as server:
        yield server


@pytest.fixture(scope="session")
def model_stack():
    """The real default local model stack (VAD, Whisper base, Qwen2.5 1.5B, Piper), loaded once."""
    from openrealtime.engines.stack import load_model_stack
    from openrealtime.session.workers import call_in_model_thread

    stack = call_in_model_thread(lambda: load_model_stack("default"))  # model threads at low priority
    yield stack
    stack.close()


@pytest.fixture
async def voice_server(model_stack):
    """An in-process server on the real local stack."""
    async with embedded_server(server_settings(engine="local"), models=model_stack) as server:
        yield server
