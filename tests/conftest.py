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

A module marked ``two_relays`` runs each test that takes ``server`` twice: against one
process on SQLite, and against two relay processes sharing one redis-server, with
successive ``connect`` calls alternating between them (tests/relays.py); a test of
such a module that only one process can answer is marked ``one_process(reason)``.

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
from tests.relays import Deployment, RoundRobin, running_deployment
from tests.valkey import Valkey, running_valkey

ONE_PROCESS = "sqlite"
TWO_RELAYS = "valkey-2"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``server`` in a module marked ``two_relays``: both deployments, unless ``one_process``."""
    if (
        "server_deployment" in metafunc.fixturenames
        and metafunc.definition.get_closest_marker("two_relays") is not None
        and metafunc.definition.get_closest_marker("one_process") is None
    ):
        metafunc.parametrize("server_deployment", [ONE_PROCESS, TWO_RELAYS], indirect=True)


@pytest.fixture(scope="session")
def session_relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Two relays on one redis-server, started once for the whole run, stopped by PID."""
    with running_deployment(tmp_path_factory.mktemp("two-relays"), 2) as deployment:
        yield deployment


@pytest.fixture
def server_deployment(request: pytest.FixtureRequest) -> Iterator[Deployment | None]:
    """The shared two relays when ``server`` is parametrized so; None for one process.

    The relays must be running before a test and still be after it: a test that
    killed one fails, with its log, and the next test finds it restarted.
    """
    if getattr(request, "param", ONE_PROCESS) == ONE_PROCESS:
        yield None
        return
    deployment: Deployment = request.getfixturevalue("session_relays")
    deployment.ensure_running()
    yield deployment
    deployment.assert_running()


@pytest.fixture
async def server(
    nursery: trio.Nursery, tmp_path: Path, server_deployment: Deployment | None
) -> AsyncIterator[ServerHandle | RoundRobin]:
    if server_deployment is not None:
        yield server_deployment.round_robin()
        return
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
