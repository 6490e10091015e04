"""The core imports neither the web framework nor the server; layers point one way."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "securechat"
CORE = [
    "limits", "errors", "protocol", "ratelimit", "member", "room", "registry",
    "connection", "storage", "log", "origins", "config", "sources", "capacity", "failures",
    "sqlite", "memory", "schema", "storage_thread", "ledger", "actor", "counters", "startup",
    "valkey/__init__", "valkey/url", "valkey/keys", "valkey/scripts", "valkey/storage",
]  # fmt: skip
WEB = ("quart", "quart_trio", "hypercorn", "werkzeug")


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_is_free_of_the_web_stack() -> None:
    for module in CORE:
        found = imports(PACKAGE / f"{module}.py")
        bad = {name for name in found if name.split(".")[0] in WEB}
        assert not bad, f"{module} imports {bad}"
        assert not any(name.startswith("securechat.peer") for name in found), module
        assert not {"securechat.app", "securechat.server", "securechat.cli"} & found, module


def test_only_app_knows_quart_and_only_the_server_modules_know_hypercorn() -> None:
    for path in PACKAGE.glob("*.py"):
        names = imports(path)
        found = {name.split(".")[0] for name in names}
        if found & {"quart", "quart_trio", "werkzeug"}:
            assert path.stem == "app", path
        if path.stem == "app":  # the ASGI type names, which Quart's own are
            names.discard("hypercorn.typing")
        if any(name.split(".")[0] == "hypercorn" for name in names):
            # metrics launches the second listener, as server launches the first.
            allowed = ("server", "boundary", "wsstream", "app_queue", "headers", "metrics")
            assert path.stem in allowed, path


def test_modules_stay_small() -> None:
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines < 400, f"{path.name} has {lines} lines"
