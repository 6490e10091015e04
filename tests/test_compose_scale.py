"""deploy/compose.scale.yaml, checked as a file: what must hold before anyone runs it.

No image registry is reachable here, so the Valkey and HAProxy images cannot be
pulled and the file cannot be run end to end. Its parts run for real elsewhere:
valkey.conf, users.acl and haproxy.cfg in tests/test_haproxy.py, the relay and
tor images in tests/test_containers.py. Here: podman-compose (1.6) reads it, and
the wiring between the services is what the parts expect — Valkey published
nowhere and only on an internal network, its AOF on, the relays waiting for its
health and using it as the ACL user, HAProxy waiting for the relays, and tor
pointing at HAProxy.
"""

import re
import subprocess
from pathlib import Path
from typing import Any, Final

import yaml  # type: ignore[import-untyped]  # PyYAML, a dependency of podman-compose

from tests.containers import REPO, find_podman_compose, unavailable

DEPLOY: Final = REPO / "deploy"
SCALE_FILE: Final = DEPLOY / "compose.scale.yaml"
ONE_RELAY_FILE: Final = DEPLOY / "compose.yaml"
VALKEY_CONF: Final = DEPLOY / "valkey" / "valkey.conf"
USERS_ACL: Final = DEPLOY / "valkey" / "users.acl"
HAPROXY_CFG: Final = DEPLOY / "haproxy" / "haproxy.cfg"
TORRC: Final = DEPLOY / "tor" / "torrc"
RELAYS: Final = ("relay1", "relay2")
FRONT: Final = "securechat"  # HAProxy's service: the name torrc points at
COMMAND_TIMEOUT: Final = 60.0


def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(SCALE_FILE.read_text())["services"]
    return found


def directives(path: Path) -> dict[str, str]:
    """A config file's ``name value`` lines (comments and blank lines left out)."""
    lines = [s.strip() for s in path.read_text().splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's volumes as {target: source}."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def test_podman_compose_reads_the_file(tmp_path: Path) -> None:
    compose = find_podman_compose()
    if compose is None:
        unavailable("podman-compose is not installed (the test extra has it)")
    done = subprocess.run(
        [compose, "-f", str(SCALE_FILE), "config"],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, cwd=DEPLOY, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SECURECHAT_VALKEY_PASSWORD": "ab12"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    read = yaml.safe_load(done.stdout)["services"]
    assert set(read) == {"valkey", *RELAYS, FRONT, "tor"}
    for name in RELAYS:
        url = read[name]["environment"]["SECURECHAT_VALKEY"]
        assert url == "redis://securechat:ab12@valkey:6379/0"


def test_valkey_is_published_nowhere_and_keeps_an_aof() -> None:
    valkey = services()["valkey"]
    assert "ports" not in valkey
    assert "expose" not in valkey
    networks = yaml.safe_load(SCALE_FILE.read_text())["networks"]
    assert valkey["networks"] == ["store"]
    assert networks["store"]["internal"] is True
    # Only the relays share its network.
    on_store = {name for name, s in services().items() if "store" in s.get("networks", [])}
    assert on_store == {"valkey", *RELAYS}

    # Its config and ACL files are the ones tests/test_haproxy.py runs, where it reads them.
    conf_path = valkey["command"][1]
    volumes = mounts(valkey)
    assert volumes[conf_path] == "./valkey/valkey.conf"
    conf = directives(VALKEY_CONF)
    assert volumes[conf["aclfile"]] == "./valkey/users.acl"
    assert volumes["/data"] == "valkey"  # the image's working directory: the AOF's
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"  # never drop a room to make room
    # The default user is off; the relays' user has its own keys and channels only.
    users = USERS_ACL.read_text().splitlines()
    assert users[0].split()[:3] == ["user", "default", "off"]
    (relay_user,) = [line for line in users if line.startswith("user securechat ")]
    assert {"~securechat:*", "&securechat:*", "-@all"} <= set(relay_user.split())
    assert "nopass" not in relay_user


def test_relays_use_valkey_once_it_is_healthy() -> None:
    found = services()
    one_relay = yaml.safe_load(ONE_RELAY_FILE.read_text())["services"]["securechat"]
    assert "healthcheck" in found["valkey"]
    assert "--user securechat" in found["valkey"]["healthcheck"]["test"]
    for name in RELAYS:
        relay = found[name]
        assert relay["image"] == one_relay["image"]  # the same image as compose.yaml's relay
        assert relay["depends_on"] == {"valkey": {"condition": "service_healthy"}}
        assert "ports" not in relay
        assert set(relay["networks"]) == {"front", "store"}
        url = relay["environment"]["SECURECHAT_VALKEY"]
        assert re.fullmatch(
            r"redis://securechat:\$\{SECURECHAT_VALKEY_PASSWORD:-\w+\}@valkey:6379/0", url
        )
        assert relay["env_file"] == "securechat.env"
        assert relay["healthcheck"] == one_relay["healthcheck"]
    assert found["relay1"]["build"] == one_relay["build"]


def test_haproxy_fronts_the_relays_and_tor_points_at_it() -> None:
    found = services()
    front = found[FRONT]
    assert "haproxy" in front["image"]
    assert front["depends_on"] == {name: {"condition": "service_healthy"} for name in RELAYS}
    assert mounts(front) == {"/usr/local/etc/haproxy/haproxy.cfg": "./haproxy/haproxy.cfg"}
    # haproxy.cfg's defaults are this file's names and ports.
    config = HAPROXY_CFG.read_text()
    (bind,) = re.findall(r'bind "\$\{SECURECHAT_HAPROXY_BIND-:(\d+)\}"', config)
    assert front["ports"] == [f"127.0.0.1:${{SECURECHAT_PUBLISH_PORT:-8787}}:{bind}"]
    servers = set(re.findall(r'server (\w+) "\$\{SECURECHAT_RELAY_\d-(\w+):8787\}"', config))
    assert servers == {(name, name) for name in RELAYS}

    tor = found["tor"]
    assert tor["depends_on"] == [FRONT]
    (target,) = re.findall(r"^HiddenServicePort 80 (\S+)$", TORRC.read_text(), re.MULTILINE)
    assert target == f"{FRONT}:{bind}"
    assert set(tor["networks"]) == set(front["networks"]) == {"front"}


def test_every_service_is_hardened_and_restarts() -> None:
    for name, service in services().items():
        assert service["restart"] == "always", name  # podman-restart.service needs it
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges"], name
        assert service["mem_limit"], name
        assert service["pids_limit"], name
