"""Starting the server: the version, and one line with the real reason when it cannot start.

Each runs ``securechat`` as a real process against a real obstacle: a port held
by a socket this test opens, a data dir the process may not write. On Debian 12
the interpreter is Python 3.11.2, where a ``sys.exit`` inside ``except*`` printed
a traceback; tests/test_backup_container.py runs the same checks in the image.
"""

import importlib.metadata
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import pytest

from securechat.cli import build_parser
from tests.process import server_command

pytestmark = pytest.mark.slow

REPO: Final = Path(__file__).resolve().parent.parent


def run(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *server_command(*args)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


@contextmanager
def held_port() -> Iterator[int]:
    """A port on 127.0.0.1 that a socket of this test listens on, until the block ends."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """stderr, which must be exactly one line; nothing on stdout."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == "", result.stdout
    return lines[0]


@pytest.mark.parametrize("args", [["--version"], ["serve", "--version"]])
def test_version_is_the_installed_distributions(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"securechat {importlib.metadata.version('securechat')}\n"


def test_port_in_use_is_one_line_with_the_reason(tmp_path: Path) -> None:
    with held_port() as port:
        result = run("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1
    assert one_line(result) == (
        f"securechat: error: cannot listen on 127.0.0.1:{port}: address already in use"
    )


def test_metrics_port_in_use_names_the_metrics_address(tmp_path: Path) -> None:
    with held_port() as port:
        result = run(
            "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
            "--metrics-address", f"127.0.0.1:{port}",
        )  # fmt: skip
    assert result.returncode == 1
    assert one_line(result) == (
        f"securechat: error: cannot listen on 127.0.0.1:{port}: address already in use"
    )


def test_an_unwritable_data_dir_is_one_line_with_the_reason(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    # Root may write anywhere; in a user namespace of its own it keeps its uid (so it
    # can read the code) but loses that power over files outside (so it cannot).
    prefix = ("unshare", "--user") if os.geteuid() == 0 else ()
    data = locked / "data"
    result = run("serve", "--port", "0", "--data-dir", str(data), prefix=prefix)
    assert result.returncode == 1
    assert one_line(result) == f"securechat: error: cannot use data dir {data}: permission denied"
    assert not data.exists()


def test_start_up_errors_in_json_are_one_json_line(tmp_path: Path) -> None:
    with held_port() as port:
        result = run(
            "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
            "--log-format", "json",
        )  # fmt: skip
    assert result.returncode == 1
    line = one_line(result)
    assert re.fullmatch(
        r'\{"time": "[0-9T:.-]+Z", "level": "error", "logger": "securechat", "message": '
        rf'"cannot listen on 127.0.0.1:{port}: address already in use"\}}',
        line,
    ), line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--metrics-address", "0.0.0.0:9787"], "not a loopback address"),
        (["--metrics-address", "[::]:9787"], "not a loopback address"),
        (["--metrics-address", "metrics.example.org:9787"], "not a loopback address"),
        (["--metrics-address", "9787"], "not HOST:PORT"),
        (["--metrics-address", "::1:9787"], "in brackets"),
        (["--log-format", "xml"], "text or json"),
    ],
)
def test_bad_operator_options_are_one_line_pointing_at_serve_help(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    result = run("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), *args)
    assert result.returncode == 2
    line = one_line(result)
    assert expected in line
    assert line.endswith("(see securechat serve --help)")


def test_a_bad_variable_points_at_serve_help() -> None:
    result = subprocess.run(
        server_command("serve"),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "SECURECHAT_METRICS_ADDRESS": "10.1.2.3:9787"},
        check=False,
    )
    assert result.returncode == 2
    line = one_line(result)
    assert "not a loopback address" in line
    assert line.endswith("(see securechat serve --help)")


def test_the_readme_table_lists_every_serve_option() -> None:
    """The README's option table and ``securechat serve --help`` name the same options."""
    (serve,) = [
        choice
        for action in build_parser()._actions
        if isinstance(choices := getattr(action, "choices", None), dict)
        for name, choice in choices.items()
        if name == "serve"
    ]
    options = {
        flag
        for action in serve._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag not in ("--help", "--version")
    }
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| option | default | meaning |") :].split("\n\n", 1)[0]
    listed = set(re.findall(r"`(--[a-z0-9-]+)", table))
    assert listed == options
