"""Shared fixtures.

How these tests are written:
- The real thing first: a real Hypercorn server on an ephemeral port on 127.0.0.1
  (``server``), real WebSocket clients (trio-websocket), real SQLite in a temporary
  data dir. Actor tests over memory channels come on top, never instead.
- Deterministic: actor tests wait with ``trio.testing.wait_all_tasks_blocked()``,
  and anything about time runs on ``autojump_clock``; every network wait is bounded
  by ``trio.fail_after``.
- Everything a test starts, it stops: servers by their shutdown event, processes
  by kill in a ``finally``.
"""

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.browser import require_chromium
from tests.harness import ServerHandle, make_config, start_server


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[ServerHandle]:
    handle = await start_server(nursery, make_config(tmp_path / "data"))
    yield handle
    await handle.stop()


@pytest.fixture
def needs_chromium() -> None:
    """For browser tests: Chromium must be there (tests/browser.py says how to get it)."""
    require_chromium()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a client process: its own state dir, the source on the path."""
    return os.environ | {
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "PYTHONUNBUFFERED": "1",
    }
