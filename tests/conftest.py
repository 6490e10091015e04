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

The container tests' session fixtures (podman, the bases, the relay image) are
here, so that every test file that runs the image shares one build of it.
"""

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from tests.browser import require_chromium
from tests.containers import REPO, Bases, Podman, build_bases, check_podman, run_id, unavailable
from tests.harness import ServerHandle, make_config, start_server
from tests.valkey import Valkey, running_valkey


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


# ----- the container tests' session fixtures (tests/containers.py says how) -----------------


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    configured = Podman.configure(tmp_path_factory.mktemp("podman"))
    reason = check_podman(configured)
    if reason is not None:
        unavailable(reason)
    return configured


@pytest.fixture(scope="session")
def session_tag() -> str:
    return run_id()


@pytest.fixture(scope="session")
def bases(
    podman: Podman, tmp_path_factory: pytest.TempPathFactory, session_tag: str
) -> Iterator[Bases]:
    made: Bases | None = None
    try:
        made = build_bases(podman, tmp_path_factory.mktemp("bases"), session_tag)
        yield made
    finally:
        if made is not None:
            podman.remove_images(made.python, made.tor)


@pytest.fixture(scope="session")
def relay_image(podman: Podman, bases: Bases, session_tag: str) -> Iterator[str]:
    tag = f"localhost/securechat-test:{session_tag}"
    try:
        podman.build(REPO, tag, base=bases.python)
        yield tag
    finally:
        podman.remove_images(tag)


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[Valkey]:
    """A real redis-server for this test (tests/valkey.py), stopped by PID at its end."""
    with running_valkey(tmp_path / "valkey") as server:
        yield server
