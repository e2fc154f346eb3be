import asyncio
import signal
import sys
from pathlib import Path

import pytest

from openrealtime.api.embedded import embedded_server
from tests.support import server_settings

TESTS = Path(__file__).parent
# Each directory under tests/ is a lane of the same name (pyproject.toml registers the markers).
LANES = ("unit", "media", "integration", "models", "browser", "compat", "net", "e2e", "fuzz", "cluster", "sip", "live")
# The tests in tests/unit that drive the session engine (scripted models) are the `engine` lane too.
ENGINE_MODULES = ("test_engine_*.py", "test_workers.py", "test_foreground.py", "test_context_window.py",
                  "test_clauses.py", "test_mcp_tools.py")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark every test with its lane, from its directory: `pytest -m unit` is the fast lane."""
    for item in items:
        path = Path(item.path)
        try:
            lane = path.relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if lane in LANES:
            item.add_marker(lane)
            if lane == "unit" and any(path.match(pattern) for pattern in ENGINE_MODULES):
                item.add_marker("engine")


@pytest.hookimpl(hookwrapper=True, optionalhook=True)  # pytest-timeout's hook
def pytest_timeout_set_timer(item, settings):
    """A test stopped by its timeout also prints the stack of every asyncio task of its loop (pytest-timeout
    prints the threads only, and a hung async test's main thread just sits in the loop's select)."""
    yield
    if settings.method != "signal" or signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None):
        return
    fail = signal.getsignal(signal.SIGALRM)

    def dump_tasks_then_fail(signum, frame):
        try:
            tasks = asyncio.all_tasks(asyncio.get_running_loop())
        except RuntimeError:  # no loop running in this thread: nothing more to show
            tasks = set()
        for task in tasks:
            print(f"~~~~~ asyncio task {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
            task.print_stack(file=sys.stderr)
        fail(signum, frame)

    signal.signal(signal.SIGALRM, dump_tasks_then_fail)


@pytest.fixture
async def echo_server():
    """An in-process server in echo mode (no models) on a free port."""
    async with embedded_server(server_settings(engine="echo", echo_delay_s=0.2)) as server:
        yield server


@pytest.fixture(scope="session")
def model_runtime():
    """The runtime (worker pools, foreground gate) of the servers that share `model_stack`."""
    from openrealtime.runtime import Runtime

    runtime = Runtime()
    yield runtime
    runtime.close()


@pytest.fixture(scope="session")
def model_stack(model_runtime):
    """The real default local model stack (VAD, Whisper base, Qwen2.5 1.5B, Piper), loaded once."""
    from openrealtime.engines.stack import load_model_stack
    from openrealtime.runtime import call_in_model_thread

    # model threads at low priority; the LLM steps aside through the shared runtime's gate
    stack = call_in_model_thread(lambda: load_model_stack("default", gate=model_runtime.gate))
    yield stack
    stack.close()


@pytest.fixture
async def voice_server(model_stack, model_runtime):
    """An in-process server on the real local stack."""
    async with embedded_server(server_settings(engine="local"), models=model_stack, runtime=model_runtime) as server:
        yield server
