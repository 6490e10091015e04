"""The deploy files that need no container: settings, compose variables, the systemd unit.

- deploy/securechat.env.example names exactly the variables ``securechat serve``
  reads, each at its real default, in a form podman and systemd read alike;
- deploy/.env.example lists exactly the compose files' own variables and defaults,
  and no variable there has an empty default (podman-compose 1.0.3 would pass
  it on literally);
- compose.yaml's health check is the Quadlet unit's, as one shell string;
- deploy/systemd/securechat.service passes ``systemd-analyze verify`` and
  ``security`` (the service itself cannot be started here: the test machines
  have no systemd as PID 1), and its command line is one ``securechat serve``
  accepts;
- deploy/tor/onion-client-auth makes a matching X25519 pair in Tor's formats
  (tests/test_containers.py has tor load it);
- the documented commands are the ones the tests run.
"""

import argparse
import base64
import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Final

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, a dependency of podman-compose
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from securechat.cli import ENV_PREFIX, build_parser, config_from_args
from securechat.config import Config
from tests.containers import REPO, unavailable
from tests.test_containers import quadlet_health_cmd, read_unit, values

DEPLOY: Final = REPO / "deploy"
SETTINGS_EXAMPLE: Final = DEPLOY / "securechat.env.example"
COMPOSE_ENV_EXAMPLE: Final = DEPLOY / ".env.example"
COMPOSE_FILE: Final = DEPLOY / "compose.yaml"
COMPOSE_SCALE_FILE: Final = DEPLOY / "compose.scale.yaml"  # relays on Valkey, HAProxy
SYSTEMD_UNIT: Final = DEPLOY / "systemd" / "securechat.service"
CLIENT_AUTH: Final = DEPLOY / "tor" / "onion-client-auth"
DEPLOY_DOC: Final = REPO / "docs" / "deploy.md"

# A commented-out setting: "#NAME=value".
SETTING: Final = re.compile(r"^#(SECURECHAT_[A-Z0-9_]+)=(.*)$", re.MULTILINE)
# A compose variable with its default: "${NAME:-default}".
COMPOSE_VARIABLE: Final = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")
EXPOSURE_THRESHOLD: Final = 15  # systemd-analyze security, in tenths: at most 1.5 ("OK")
SYSTEMD_UNIT_DIRS: Final = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
COMMAND_TIMEOUT: Final = 30.0


def serve_variables() -> set[str]:
    """Every SECURECHAT_* variable ``securechat serve`` reads: one per long option."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    serve = commands.choices["serve"]
    flags = {s for action in serve._actions for s in action.option_strings if s.startswith("--")}
    flags -= {"--help", "--version"}  # answers, not settings
    return {ENV_PREFIX + flag[2:].replace("-", "_").upper() for flag in flags}


def example_settings() -> dict[str, str]:
    found = SETTING.findall(SETTINGS_EXAMPLE.read_text())
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), "a setting is listed twice"
    return dict(found)


def test_settings_example_names_every_serve_variable() -> None:
    listed = set(example_settings())
    expected = serve_variables()
    assert listed - expected == set(), "listed, but securechat serve does not read it"
    assert expected - listed == set(), "read by securechat serve, missing from the example"


def test_settings_example_gives_the_real_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    parser = build_parser()
    assert config_from_args(parser, parser.parse_args(["serve"])) == Config()
    for name, value in example_settings().items():
        monkeypatch.setenv(name, value)
    # Every line uncommented as it stands changes nothing.
    assert config_from_args(parser, parser.parse_args(["serve"])) == Config()


def test_settings_example_reads_the_same_in_podman_and_systemd() -> None:
    """Comments and commented-out settings only, in the subset both parsers agree on.

    podman's --env-file keeps quotes and a trailing backslash as part of the
    value where systemd's EnvironmentFile= strips or joins them; neither is used.
    """
    for number, line in enumerate(SETTINGS_EXAMPLE.read_text().splitlines(), 1):
        assert line == "" or line.startswith("#"), f"line {number} is set: {line!r}"
        if SETTING.match(line):
            value = line.split("=", 1)[1]
            assert not re.search(r"['\"\\$`]|^\s|\s$", value), f"line {number}: {line!r}"


def compose_variables() -> dict[str, str | None]:
    """Both compose files' variables (one .env serves both)."""
    lines = [*COMPOSE_FILE.read_text().splitlines(), *COMPOSE_SCALE_FILE.read_text().splitlines()]
    found = COMPOSE_VARIABLE.findall("\n".join(s for s in lines if not s.lstrip().startswith("#")))
    return {name: default or None for name, default in found}


def test_compose_variables_have_defaults_and_are_listed() -> None:
    variables = compose_variables()
    for name, default in variables.items():
        # podman-compose 1.0.3 leaves "${NAME:-}" in place, literally.
        assert default, f"${{{name}}} in compose.yaml needs a non-empty default"
    listed = SETTING.findall(COMPOSE_ENV_EXAMPLE.read_text())
    assert dict(listed) == variables
    # SECURECHAT_PORT means the relay's own port, as on the command line.
    assert "SECURECHAT_PORT" not in variables
    assert "SECURECHAT_PUBLISH_PORT" in variables


def test_compose_health_check_is_the_quadlet_one() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    relay = compose["services"]["securechat"]
    # One string: podman-compose 1.0.x garbles the list form. Run by /bin/sh, as
    # Quadlet runs HealthCmd, so one command serves both (and the image test runs it).
    assert [relay["healthcheck"]["test"]] == quadlet_health_cmd()
    assert relay["env_file"] == "securechat.env"
    for service in compose["services"].values():
        # podman-restart.service starts only these after a reboot.
        assert service["restart"] == "always"
        assert service["mem_limit"]
        assert service["pids_limit"]


# ----- the systemd unit -----------------------------------------------------------------


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        unavailable("systemd-analyze is not installed (scripts/test installs systemd)")
    return found


def analyze(systemd_analyze: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze, *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def exec_start() -> list[str]:
    (line,) = values(read_unit(SYSTEMD_UNIT), "Service", "ExecStart")
    return shlex.split(line)


def test_systemd_unit_verifies(systemd_analyze: str, tmp_path: Path) -> None:
    """``systemd-analyze verify`` in a root of its own, where ExecStart's program exists.

    verify loads the unit as systemd would (unknown keys, unparsable values and
    missing dependencies are reported) and checks that ExecStart's program is
    there; --root gives it /opt/securechat without touching the host's /opt.
    """
    root = tmp_path / "root"
    system = next((d for d in SYSTEMD_UNIT_DIRS if d.is_dir()), None)
    assert system is not None, "systemd's own units are not installed"
    shutil.copytree(system, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    shutil.copy(SYSTEMD_UNIT, root / "etc" / "systemd" / "system")
    program = root / exec_start()[0].lstrip("/")
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)

    done = analyze(systemd_analyze, "verify", f"--root={root}", SYSTEMD_UNIT.name)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # warnings (an unknown key, a bad value) too

    done = analyze(
        systemd_analyze, "security", "--offline=true", f"--threshold={EXPOSURE_THRESHOLD}",
        "--no-pager", str(SYSTEMD_UNIT),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr


def test_systemd_unit_runs_securechat_serve_in_its_state_directory() -> None:
    unit = read_unit(SYSTEMD_UNIT)
    program, *args = exec_start()
    assert program == "/opt/securechat/bin/securechat"
    state = values(unit, "Service", "StateDirectory")
    assert state == ["securechat"]
    assert args == ["serve", "--data-dir", f"%S/{state[0]}"]
    parser = build_parser()
    given = [arg.replace("%S", "/var/lib") for arg in args]  # %S: /var/lib for system units
    config = config_from_args(parser, parser.parse_args(given))
    assert config.data_dir == Path("/var/lib/securechat")
    assert config.host == "127.0.0.1"
    # The documented settings file, optional ("-"), as deploy/securechat.env.example says.
    assert values(unit, "Service", "EnvironmentFile") == ["-/etc/securechat/securechat.env"]
    assert "/etc/securechat/securechat.env" in SETTINGS_EXAMPLE.read_text()
    for key, value in {
        "DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "Restart": "on-failure",
        "LimitNOFILE": "65536", "UMask": "0077",
    }.items():  # fmt: skip
        assert values(unit, "Service", key) == [value], key
    assert values(unit, "Install", "WantedBy") == ["multi-user.target"]


# ----- Tor client authorization -----------------------------------------------------------

ADDRESS: Final = "a" * 52 + "2345"  # 56 base32 characters, shaped as a v3 address
KEY: Final = r"[A-Z2-7]{52}"  # 32 bytes in base32, unpadded


def unpadded_base32(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


def client_auth(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLIENT_AUTH), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def make_client_key(cwd: Path, name: str, address: str) -> tuple[str, str]:
    """Run the script as documented; return the (.auth, .auth_private) lines it wrote."""
    done = client_auth(cwd, name, address)
    assert done.returncode == 0, done.stderr
    public = (cwd / f"{name}.auth").read_text()
    private = (cwd / f"{name}.auth_private").read_text()
    # The private half is nowhere but in its file: not on the terminal.
    assert private.rsplit(":", 1)[1].strip() not in done.stdout + done.stderr
    return public, private


def test_onion_client_auth_makes_a_matching_pair(tmp_path: Path) -> None:
    public, private = make_client_key(tmp_path, "alice", f"{ADDRESS}.onion")
    found_public = re.fullmatch(rf"descriptor:x25519:({KEY})\n", public)
    found_private = re.fullmatch(rf"{ADDRESS}:descriptor:x25519:({KEY})\n", private)
    assert found_public is not None, public
    assert found_private is not None, private
    key = X25519PrivateKey.from_private_bytes(unpadded_base32(found_private.group(1)))
    derived = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert derived == unpadded_base32(found_public.group(1))
    for name in ("alice.auth", "alice.auth_private"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name

    # Never overwrites a key, and refuses what is not an address or a plain name.
    again = client_auth(tmp_path, "alice", ADDRESS)
    assert again.returncode != 0
    assert (tmp_path / "alice.auth").read_text() == public
    for args in [("bob", "example.onion"), ("../bob", ADDRESS), ("bob",)]:
        refused = client_auth(tmp_path, *args)
        assert refused.returncode == 2, args
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.auth", "alice.auth_private"]


# ----- the documented commands --------------------------------------------------------------

HOSTNAME_COMMAND: Final = "podman-compose exec -T tor cat /var/lib/tor/secure_chat/hostname"


def test_documented_hostname_commands_get_no_terminal() -> None:
    """Without -T podman-compose allocates a tty, and the address ends in "\\r"."""
    for path in (DEPLOY_DOC, COMPOSE_FILE, REPO / "README.md"):
        text = path.read_text()
        assert "exec tor " not in text, path.name
        assert not re.search(r"podman exec -\w*t", text), path.name
    assert HOSTNAME_COMMAND in DEPLOY_DOC.read_text()
    assert HOSTNAME_COMMAND in COMPOSE_FILE.read_text()
