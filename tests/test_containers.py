"""The deploy, built and run for real: the image, compose with Tor, the Quadlet units.

These build images with podman from the repository's own Containerfiles on
locally bootstrapped Debian bases (tests/containers.py says how and why), run
them the way docs/deploy.md tells operators to, and talk to them over the
published port. Every container, volume, network and image a test makes is
removed by that test or its fixture.
"""

import http.client
import json
import re
import shlex
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, final

import pytest
import trio
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from trio_websocket import open_websocket_url

from securechat.headers import SECURITY_HEADERS
from tests.containers import (
    BUILD_TIMEOUT,
    COMMAND_TIMEOUT,
    DISTRIBUTION_PODMAN_COMPOSE,
    QUADLET_GENERATORS,
    READY_TIMEOUT,
    REPO,
    Bases,
    Podman,
    find_podman_compose,
    free_port,
    podman_compose_version,
    run_id,
    unavailable,
    unpack_quadlet,
    wait_healthz,
)
from tests.harness import Peer, new_client_id, new_room_id, new_token

ONION_HOSTNAME: Final = re.compile(r"[a-z2-7]{56}\.onion")
COMPOSE_FILE: Final = REPO / "deploy" / "compose.yaml"
QUADLET_DIR: Final = REPO / "deploy" / "quadlet"
HARDENING: Final = ("--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges")
APP_UID: Final = "10001"
PYPROJECT: Final = tomllib.loads((REPO / "pyproject.toml").read_text())
DEPLOY_DOC: Final = REPO / "docs" / "deploy.md"
CONTAINERFILES: Final = (REPO / "Containerfile", REPO / "deploy" / "tor" / "Containerfile")
TOR_IDS: Final = "100:101"  # debian-tor's uid:gid, fixed by deploy/tor/Containerfile
MB: Final = 1000 * 1000  # podman's unit in `podman images`
# What each image may add to its base. Measured on the mmdebstrap bases: the relay
# adds about 34 MB (its venv: 16 MB before Valkey support, then coredis with its
# beartype, 15 MB more), tor about 14 MB; pip in the venv, the client extra, or apt's
# lists or package cache left behind would each push past these.
MAX_RELAY_GROWTH: Final = 40 * MB
MAX_TOR_GROWTH: Final = 21 * MB


# The session fixtures (podman, the bases, the relay image) are in tests/conftest.py,
# shared with tests/test_backup_container.py so the image is built once.


@pytest.fixture(scope="session")
def tor_image(podman: Podman, bases: Bases, session_tag: str) -> Iterator[str]:
    """deploy/tor/Containerfile as podman builds it: apt installs tor on a plain Debian."""
    tag = f"localhost/securechat-test-tor-image:{session_tag}"
    try:
        podman.build(REPO / "deploy" / "tor", tag, base=bases.tor)
        yield tag
    finally:
        podman.remove_images(tag)


# ----- helpers ------------------------------------------------------------------------------


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


async def next_message(peer: Peer) -> dict[str, Any]:
    """The next relayed message, past the system events (joins) that may come first."""
    while True:
        envelope = await peer.receive()
        if envelope["type"] == "message":
            return envelope
        assert envelope["type"] == "system", envelope


async def exchange_message(port: int, room: str, token: str) -> dict[str, Any]:
    """Two clients join ``room``; one sends, both receive it. Returns the relayed envelope."""
    base = f"ws://127.0.0.1:{port}/ws/{room}?client="
    alice_id, bob_id = new_client_id(), new_client_id()
    with trio.fail_after(30):
        async with (
            open_websocket_url(base + alice_id) as alice_ws,
            open_websocket_url(base + bob_id) as bob_ws,
        ):
            alice, bob = Peer(alice_ws, alice_id), Peer(bob_ws, bob_id)
            await alice.hello(token)
            await bob.hello(token)
            sent = await alice.post()
            for peer in (alice, bob):
                relayed = await next_message(peer)
                assert relayed["from"] == alice_id
                assert (relayed["iv"], relayed["ciphertext"]) == (sent["iv"], sent["ciphertext"])
            return relayed


async def history_of(port: int, room: str, token: str) -> list[dict[str, Any]]:
    client_id = new_client_id()
    with trio.fail_after(30):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws/{room}?client={client_id}") as ws:
            history, _ = await Peer(ws, client_id).hello(token)
            messages: list[dict[str, Any]] = history["messages"]
            return messages


def start_relay(podman: Podman, image: str, name: str, volume: str, port: int) -> None:
    podman.run(
        "run", "--detach", "--name", name, *HARDENING,
        "--publish", f"127.0.0.1:{port}:8787", "--volume", f"{volume}:/data", image,
    )  # fmt: skip
    wait_healthz(f"http://127.0.0.1:{port}")


# ----- 1. the image ---------------------------------------------------------------------------


@pytest.mark.slow
def test_image_runs_hardened_and_keeps_history_on_its_volume(
    podman: Podman, relay_image: str
) -> None:
    tag = run_id()
    volume, first, second = f"sctest-data-{tag}", f"sctest-relay-{tag}", f"sctest-relay2-{tag}"
    room, token = new_room_id(), new_token()
    try:
        podman.run("volume", "create", volume)
        port = free_port()
        start_relay(podman, relay_image, first, volume, port)

        # Every response carries the security headers; the browser client is in the image.
        for path, content_type in [
            ("/healthz", "text/plain"),
            ("/new_chat", "text/html"),
            ("/app.js", "text/javascript"),
        ]:
            status, headers, _ = get(port, path)
            assert status == 200, path
            assert headers["content-type"].startswith(content_type), path
            for name, value in SECURITY_HEADERS.items():
                assert headers.get(name) == value, (path, name)

        # Unprivileged, no capabilities, no way to gain privileges, read-only root.
        status_lines = podman.output("exec", first, "cat", "/proc/1/status").splitlines()
        fields = dict(line.split(":\t", 1) for line in status_lines if ":\t" in line)
        assert fields["Uid"].split()[0] == APP_UID
        assert int(fields["CapEff"], 16) == 0
        assert int(fields["CapPrm"], 16) == 0
        assert fields["NoNewPrivs"].strip() == "1"
        assert podman.output("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", first) == (
            "true"
        )
        write_root = podman.run("exec", first, "touch", "/opt/securechat/x", check=False)
        assert write_root.returncode != 0

        # The image's own HEALTHCHECK (kept by --format docker) passes, and so does
        # the Quadlet unit's, which podman runs with /bin/sh.
        assert podman.run("healthcheck", "run", first, check=False).returncode == 0
        (quadlet_check,) = quadlet_health_cmd()
        assert (
            podman.run("exec", first, "/bin/sh", "-c", quadlet_check, check=False).returncode == 0
        )

        relayed = trio.run(exchange_message, port, room, token)

        # A new container on the same volume has the history.
        # SIGTERM stops it cleanly (it is PID 1 in the container).
        podman.run("stop", "--time", "10", first)
        assert podman.output("inspect", "--format", "{{.State.ExitCode}}", first) == "0"
        podman.run("rm", first)
        port = free_port()
        start_relay(podman, relay_image, second, volume, port)
        history = trio.run(history_of, port, room, token)
        assert [(m["id"], m["iv"], m["ciphertext"]) for m in history] == [
            (relayed["id"], relayed["iv"], relayed["ciphertext"])
        ]
    finally:
        podman.run("rm", "--force", "--ignore", first, second, check=False)
        podman.run("volume", "rm", "--force", volume, check=False)


def image_size(podman: Podman, image: str) -> int:
    return int(podman.output("image", "inspect", "--format", "{{.Size}}", image))


def image_labels(podman: Podman, image: str) -> dict[str, str]:
    labels: dict[str, str] = json.loads(
        podman.output("image", "inspect", "--format", "{{json .Config.Labels}}", image)
    )
    return labels


def in_image(podman: Podman, image: str, script: str) -> str:
    """What a shell script prints in a throwaway container of ``image``."""
    return podman.output("run", "--rm", *HARDENING, "--entrypoint", "/bin/sh", image, "-c", script)


# Which of these modules the relay's interpreter can import, as JSON.
_FIND_MODULES: Final = (
    "import importlib.util as u, json, sys; "
    "print(json.dumps({m: u.find_spec(m) is not None for m in sys.argv[1:]}))"
)


@pytest.mark.slow
def test_images_are_slim_labelled_and_hold_only_what_they_run(
    podman: Podman,
    bases: Bases,
    relay_image: str,
    tor_image: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sizes = {
        image: (image_size(podman, image), image_size(podman, base))
        for image, base in ((relay_image, bases.python), (tor_image, bases.tor))
    }
    with capsys.disabled():
        for image, (size, base_size) in sizes.items():
            print(
                f"\nimage size: {image}: {size / MB:.1f} MB, {(size - base_size) / MB:.1f} MB "
                f"over its mmdebstrap base ({base_size / MB:.1f} MB)"
            )
    relay_size, python_size = sizes[relay_image]
    tor_size, debian_size = sizes[tor_image]
    assert relay_size - python_size <= MAX_RELAY_GROWTH
    assert tor_size - debian_size <= MAX_TOR_GROWTH

    # OCI labels: the version and licence are the package's, the base is named.
    version, licence = PYPROJECT["project"]["version"], PYPROJECT["project"]["license"]
    for image, base, title in (
        (relay_image, bases.python, "securechat"),
        (tor_image, bases.tor, "securechat-tor"),
    ):
        labels = image_labels(podman, image)
        assert labels["org.opencontainers.image.title"] == title
        assert labels["org.opencontainers.image.version"] == version
        assert labels["org.opencontainers.image.licenses"] == licence
        assert labels["org.opencontainers.image.base.name"] == base
        for key in ("revision", "created", "source", "description"):
            assert f"org.opencontainers.image.{key}" in labels, key
    shown = podman.run("run", "--rm", *HARDENING, relay_image, "--version").stdout
    assert version in shown.split()

    # The relay's interpreter serves with the server's dependencies only: no pip,
    # setuptools or build backend, and none of the terminal client's packages.
    modules = ["securechat", "quart_trio", "hypercorn", "msgspec", "pip", "setuptools",
               "wheel", "hatchling", "cryptography", "trio_websocket"]  # fmt: skip
    found = json.loads(
        podman.output("run", "--rm", *HARDENING, "--entrypoint", "python3", relay_image,
                      "-c", _FIND_MODULES, *modules)
    )  # fmt: skip
    assert [m for m in modules if found[m]] == ["securechat", "quart_trio", "hypercorn", "msgspec"]
    client = podman.run("run", "--rm", *HARDENING, relay_image, "new", check=False)
    assert client.returncode == 1
    assert client.stderr.strip().endswith("pip install 'securechat[client]'"), client.stderr

    # Tor runs as debian-tor with the fixed ids, which own its volume; no apt lists.
    assert in_image(podman, tor_image, "echo $(id -u):$(id -g)") == TOR_IDS
    assert in_image(podman, tor_image, "stat -c %u:%g /var/lib/tor/secure_chat") == TOR_IDS
    assert in_image(podman, tor_image, "ls -A /var/lib/apt/lists /var/cache/apt") == (
        "/var/cache/apt:\narchives\n\n/var/lib/apt/lists:"
    )


@pytest.mark.slow
def test_environment_settings_win_over_the_image_defaults(podman: Podman, relay_image: str) -> None:
    name, port = f"sctest-env-{run_id()}", free_port()
    try:
        podman.run(
            "run", "--detach", "--name", name, *HARDENING,
            "--env", "SECURECHAT_PORT=9000", "--env", "SECURECHAT_DATA_DIR=/data/rooms",
            "--publish", f"127.0.0.1:{port}:9000", relay_image,
        )  # fmt: skip
        wait_healthz(f"http://127.0.0.1:{port}")
        assert "serving on http://0.0.0.0:9000;" in podman.output("logs", name)
        # The image's own health check asks the port the relay was given.
        assert podman.run("healthcheck", "run", name, check=False).returncode == 0
        assert podman.output("exec", name, "ls", "/data/rooms")
    finally:  # --volumes: the image's /data is an anonymous volume here
        podman.run("rm", "--force", "--volumes", "--ignore", name, check=False)


def documented_run_block() -> str:
    """The shell block of docs/deploy.md's `podman run` section, as operators paste it."""
    section = DEPLOY_DOC.read_text().split("\n## One container with podman\n", 1)[1]
    block = re.search(r"^```sh\n(.*?)^```", section.split("\n## ", 1)[0], re.DOTALL | re.MULTILINE)
    assert block is not None, "no sh block in the podman run section"
    return block.group(1)


@pytest.mark.slow
def test_documented_podman_run_is_healthy_on_an_oci_build(
    podman: Podman, relay_image: str, tmp_path: Path
) -> None:
    """The docs' block, pasted right after a build that dropped HEALTHCHECK.

    podman-compose builds the shared tag in the OCI format, which has no health
    check; the block declares its own and waits for the relay to listen.
    """
    tag = run_id()
    oci_image, name = f"localhost/securechat-test-oci:{tag}", f"sctest-run-{tag}"
    volume, port = f"sctest-run-data-{tag}", free_port()
    (tmp_path / "Containerfile").write_text(f"FROM {relay_image}\nLABEL securechat.test=oci\n")
    build, *rest = documented_run_block().splitlines(keepends=True)
    assert build.startswith("podman build "), build  # the session's image stands in for it
    script = "".join(rest)
    for old, new in (
        ("localhost/securechat:latest", oci_image),
        ("securechat-data:/data", f"{volume}:/data"),
        ("127.0.0.1:8787:8787", f"127.0.0.1:{port}:8787"),
    ):
        assert old in script, old
        script = script.replace(old, new)
    # The container's name, wherever it stands as a word of its own.
    script, named = re.subn(r"(?<=\s)securechat(?=[\s'\"]|$)", name, script, flags=re.MULTILINE)
    assert named >= 2, script  # podman run --name, and the health check
    try:
        podman.build(tmp_path, oci_image, image_format="oci")
        assert podman.output(
            "image", "inspect", "--format", "{{.Config.Healthcheck}}", oci_image
        ) in ("<nil>", "")
        done = podman.run(script, program=("bash", "-c"))
        assert done.stdout.strip().endswith("healthy"), done.stdout
        assert get(port, "/healthz")[2] == b"ok"
    finally:
        podman.run("rm", "--force", "--ignore", name, check=False)
        podman.run("volume", "rm", "--force", volume, check=False)
        podman.remove_images(oci_image)


def locked(path: Path) -> dict[str, list[str]]:
    """A lock file as {name: its pinned versions}; every pin has its hashes.

    A universal lock may pin one name twice, for interpreters told apart by markers.
    """
    pins: dict[str, list[str]] = {}
    for entry in re.split(r"\n(?=[^\s#])", path.read_text()):
        first = entry.split("\\", 1)[0].strip()
        if not first or first.startswith("#"):
            continue
        requirement = Requirement(first)
        (pin,) = requirement.specifier
        assert pin.operator == "==", first
        assert "--hash=sha256:" in entry, first
        pins.setdefault(canonicalize_name(requirement.name), []).append(pin.version)
    return pins


def test_lock_files_pin_what_pyproject_asks_and_the_images_carry_its_version() -> None:
    """The images install from requirements*.lock (scripts/lock writes them)."""
    for lock, wanted in (
        (REPO / "requirements.lock", PYPROJECT["project"]["dependencies"]),
        (REPO / "requirements-build.lock", PYPROJECT["build-system"]["requires"]),
    ):
        pins = locked(lock)
        for text in wanted:
            requirement = Requirement(text)
            for version in pins[canonicalize_name(requirement.name)]:
                assert requirement.specifier.contains(version), (lock.name, text, version)
        assert "scripts/lock" in lock.read_text().split("\n", 3)[1], lock.name
    # The terminal client's packages are an extra, not in the server's image.
    client = {
        canonicalize_name(Requirement(r).name)
        for r in PYPROJECT["project"]["optional-dependencies"]["client"]
    }
    assert client, "the client extra"
    assert not client & set(locked(REPO / "requirements.lock"))

    for containerfile in CONTAINERFILES:
        text = containerfile.read_text()
        assert f"\nARG VERSION={PYPROJECT['project']['version']}\n" in text, containerfile
        assert f'licenses="{PYPROJECT["project"]["license"]}"' in text, containerfile


# ----- 2. compose with the onion service -------------------------------------------------


# The podman-compose versions compose.yaml is tested with: Debian 12's package (1.0.3;
# Ubuntu 24.04 has 1.0.6, with 1.0.3's health check code) and PyPI's (1.6 or later).
COMPOSE_VERSIONS: Final = {"1.0": ((1, 0, 0), (1, 1, 0)), "1.6": ((1, 6, 0), (99, 0, 0))}
HOSTNAME_FILE: Final = "/var/lib/tor/secure_chat/hostname"
# What docs/deploy.md has tor's container run to add a client's key (alice.auth on stdin).
AUTHORIZE_ALICE: Final = (
    "cd /var/lib/tor/secure_chat && mkdir -p -m 0700 authorized_clients"
    " && cat > authorized_clients/alice.auth"
)
BAD_CLIENT_FILE: Final = "Unknown format of client authorization file"
TOR_STARTED: Final = "Bootstrapped 0%"


@pytest.fixture(params=sorted(COMPOSE_VERSIONS), ids=lambda v: f"podman-compose-{v}")
def podman_compose(request: pytest.FixtureRequest) -> tuple[str, tuple[int, int, int]]:
    """A podman-compose of the wanted series: the distribution's, or this environment's."""
    low, high = COMPOSE_VERSIONS[request.param]
    found: tuple[str, tuple[int, int, int]] | None = None
    for program in (DISTRIBUTION_PODMAN_COMPOSE, find_podman_compose()):
        version = None if program is None else podman_compose_version(program)
        if program is not None and version is not None and low <= version < high:
            found = program, version
    if found is None:
        unavailable(
            f"no podman-compose {request.param} (scripts/test installs Debian's and PyPI's)"
        )
    return found


@final
@dataclass(frozen=True, slots=True)
class Compose:
    """podman-compose on a copy of deploy/ under a project name of its own."""

    podman: Podman
    program: str
    project: str
    directory: Path
    env: dict[str, str]

    def __call__(
        self,
        *args: str,
        check: bool = True,
        timeout: float = COMMAND_TIMEOUT,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return self.podman.run(
            "--project-name", self.project, "--file", str(self.directory / "compose.yaml"),
            *args, program=(self.program,), env=self.env, cwd=self.directory, check=check,
            timeout=timeout, stdin=stdin,
        )  # fmt: skip

    def container(self, service: str) -> str:
        names = self.podman.output(
            "ps", "--all", "--format", "{{.Names}}",
            "--filter", f"label=io.podman.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).split()  # fmt: skip
        assert len(names) == 1, names
        return names[0]

    def output_lines(self, *args: str, stdin: str | None = None) -> list[str]:
        """What a command run in a service printed, line by line, ends kept.

        podman-compose 1.0.x also prints on stdout each podman command it runs
        and its exit code (and exits 0 whatever the command did): callers look
        for the lines they expect among these.
        """
        return self(*args, stdin=stdin, check=False).stdout.splitlines(keepends=True)

    def wait_onion_hostname(self) -> str:
        """The address tor wrote into its volume (it does so within seconds of starting).

        Read with the documented command, whose ``-T`` keeps podman-compose from
        allocating a terminal: with one, the line would end in a carriage return.
        """
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            lines = self.output_lines("exec", "-T", "tor", "cat", HOSTNAME_FILE)
            found = [line for line in lines if ONION_HOSTNAME.fullmatch(line.rstrip("\r\n"))]
            if found:
                (line,) = found
                assert line.endswith(".onion\n"), repr(line)
                return line.removesuffix("\n")
            time.sleep(0.5)
        pytest.fail(f"tor wrote no hostname within {READY_TIMEOUT} s", pytrace=False)

    def tor_log(self) -> str:
        return self.podman.run("logs", self.container("tor")).stdout

    def remove_everything(self) -> None:
        """``down -v``, then whatever a failed ``up`` may have left behind."""
        self("down", "--volumes", "--timeout", "10", check=False)
        label = f"label=io.podman.compose.project={self.project}"
        run = self.podman.run
        containers = run("container", "ls", "--all", "--quiet", "--filter", label, check=False)
        if containers.stdout.split():
            run("container", "rm", "--force", "--depend", *containers.stdout.split(), check=False)
        volumes = run("volume", "ls", "--quiet", "--filter", label, check=False)
        if volumes.stdout.split():
            run("volume", "rm", "--force", *volumes.stdout.split(), check=False)
        run("pod", "rm", "--force", "--ignore", f"pod_{self.project}", check=False)
        run("network", "rm", "--force", f"{self.project}_default", check=False)


def operator_deploy_dir(tmp_path: Path) -> Path:
    """deploy/ as the docs have an operator set it up, copied so the checkout stays clean.

    compose.yaml and tor/ as they are, but for one line added to torrc: tor
    stays off the network (the tests look at the onion service's local part
    only, and no test reaches beyond this machine). securechat.env from its
    example with one setting uncommented, to see it reach the relay. (The relay's
    build context, ``..``, is then ``tmp_path``: the session's image exists, so
    nothing is built.)
    """
    directory = tmp_path / "deploy"
    directory.mkdir()
    shutil.copy(COMPOSE_FILE, directory)
    shutil.copytree(REPO / "deploy" / "tor", directory / "tor")
    with (directory / "tor" / "torrc").open("a") as torrc:
        torrc.write("\n# The tests: no connection to the Tor network.\nDisableNetwork 1\n")
    settings = (REPO / "deploy" / "securechat.env.example").read_text()
    assert settings.count("\n#SECURECHAT_LOG_LEVEL=info\n") == 1
    settings = settings.replace(
        "\n#SECURECHAT_LOG_LEVEL=info\n", "\nSECURECHAT_LOG_LEVEL=warning\n"
    )
    (directory / "securechat.env").write_text(settings)
    return directory


def container_env(podman: Podman, container: str) -> dict[str, str]:
    lines = podman.output("inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}",
                          container).splitlines()  # fmt: skip
    return dict(line.split("=", 1) for line in lines if "=" in line)


def check_limits(podman: Podman, container: str, memory: int, pids: int | None) -> None:
    found = podman.output(
        "inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}", container
    ).split()
    assert int(found[0]) == memory, (container, found)
    if pids is not None:  # podman-compose 1.0.x ignores pids_limit
        assert int(found[1]) == pids, (container, found)


def authorize_a_client(compose: Compose, hostname: str, keys: Path) -> None:
    """Make a private onion service the documented way, and see tor load the key.

    Tor says nothing at notice level about a key it loaded, and warns about one
    it cannot parse: a second, malformed file shows that tor read the directory,
    and that its one warning is about that file and not about alice's.
    """
    made = subprocess.run(
        [str(REPO / "deploy" / "tor" / "onion-client-auth"), "alice", hostname],
        cwd=keys, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    public = (keys / "alice.auth").read_text()
    assert (keys / "alice.auth_private").read_text().startswith(hostname.removesuffix(".onion"))

    docs = (REPO / "docs" / "deploy.md").read_text()
    assert f"podman-compose exec -T tor sh -c '{AUTHORIZE_ALICE}' < alice.auth" in docs
    compose("exec", "-T", "tor", "sh", "-c", AUTHORIZE_ALICE, stdin=public)
    bad = AUTHORIZE_ALICE.replace("alice.auth", "mallory.auth")
    compose("exec", "-T", "tor", "sh", "-c", bad, stdin="not a key\n")

    starts = compose.tor_log().count(TOR_STARTED)
    compose("restart", "tor")
    deadline = time.monotonic() + READY_TIMEOUT
    while compose.tor_log().count(TOR_STARTED) <= starts:
        assert time.monotonic() < deadline, "tor did not start again"
        time.sleep(0.5)
    log = compose.tor_log()
    assert log.count(BAD_CLIENT_FILE) == 1, log[-3000:]
    assert log.count("lient authorization") == 1, log[-3000:]  # "Client", "client"
    clients = "/var/lib/tor/secure_chat/authorized_clients"
    assert "alice.auth\n" in compose.output_lines("exec", "-T", "tor", "ls", clients)
    compose("exec", "-T", "tor", "rm", f"{clients}/mallory.auth")
    assert "mallory.auth\n" not in compose.output_lines("exec", "-T", "tor", "ls", clients)
    assert compose.wait_onion_hostname() == hostname


@pytest.mark.slow
def test_compose_publishes_a_stable_onion_address(
    podman: Podman,
    bases: Bases,
    relay_image: str,
    podman_compose: tuple[str, tuple[int, int, int]],
    tmp_path: Path,
) -> None:
    program, version = podman_compose
    project = f"sctest{run_id()}"
    tor_image = f"localhost/securechat-test-tor-service:{project}"
    port = free_port()
    compose = Compose(
        podman,
        program,
        project,
        operator_deploy_dir(tmp_path),
        {
            "SECURECHAT_BASE_IMAGE": bases.python,
            "SECURECHAT_TOR_BASE_IMAGE": bases.tor,
            # The relay image is the session's, from the same Containerfile and base;
            # compose builds the tor image.
            "SECURECHAT_IMAGE": relay_image,
            "SECURECHAT_TOR_IMAGE": tor_image,
            "SECURECHAT_PUBLISH_PORT": str(port),
        },
    )
    label = f"label=io.podman.compose.project={project}"
    keys = tmp_path / "keys"
    keys.mkdir()
    try:
        compose("up", "--detach", timeout=BUILD_TIMEOUT)  # builds the tor image
        hostname = compose.wait_onion_hostname()

        wait_healthz(f"http://127.0.0.1:{port}")
        relay, tor = compose.container("securechat"), compose.container("tor")
        # The health check as one shell string works under every version.
        assert podman.run("healthcheck", "run", relay, check=False).returncode == 0
        # securechat.env reached the relay, and no variable came through unexpanded
        # (podman-compose 1.0.3 passes "${NAME:-}" on as it stands).
        env = container_env(podman, relay)
        assert env["SECURECHAT_LOG_LEVEL"] == "warning"
        assert env["SECURECHAT_TRUSTED_PROXY"].startswith("10.0.0.0/8 ")
        assert not [value for value in env.values() if "${" in value], env
        pids_applied = version >= (1, 6, 0)
        check_limits(podman, relay, 1024**3, 256 if pids_applied else None)
        check_limits(podman, tor, 512 * 1024**2, 64 if pids_applied else None)

        # The onion service's target, securechat:8787, answers from the tor container.
        # (Only the status line is read: that the relay answers is the point.)
        probe = compose.output_lines(
            "exec", "-T", "tor", "timeout", "10", "bash", "-c",
            "exec 3<>/dev/tcp/securechat/8787"
            " && printf 'GET /healthz HTTP/1.1\\r\\nHost: x.onion\\r\\n\\r\\n' >&3"
            " && IFS= read -r status <&3 && echo \"$status\"",
        )  # fmt: skip
        assert "HTTP/1.1 200" in [line.strip() for line in probe], probe

        authorize_a_client(compose, hostname, keys)

        compose("down", "--timeout", "10")
        compose("up", "--detach")
        assert compose.wait_onion_hostname() == hostname
        wait_healthz(f"http://127.0.0.1:{port}")
        clients = "/var/lib/tor/secure_chat/authorized_clients"
        assert "alice.auth\n" in compose.output_lines("exec", "-T", "tor", "ls", clients)

        # After a reboot podman-restart.service runs `podman start --all --filter
        # restart-policy=always`: both containers must match. Stopped and started as
        # it would (limited to this project: other containers are not ours to start).
        always = podman.output(
            "ps", "--all", "--format", "{{.Names}}", "--filter", label,
            "--filter", "restart-policy=always",
        ).split()  # fmt: skip
        relay, tor = compose.container("securechat"), compose.container("tor")
        assert sorted(always) == sorted([relay, tor])
        podman.run("stop", "--time", "10", *always)
        podman.run("start", *always)
        wait_healthz(f"http://127.0.0.1:{port}")
        assert compose.wait_onion_hostname() == hostname

        # down -v leaves nothing of the project behind.
        compose("down", "--volumes", "--timeout", "10")
        assert not podman.output("container", "ls", "--all", "--quiet", "--filter", label)
        assert not podman.output("volume", "ls", "--quiet", "--filter", label)
    finally:
        compose.remove_everything()
        podman.remove_images(tor_image)


# ----- 3. Quadlet -------------------------------------------------------------------------


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file as {section: [(key, value), ...]}, keys repeated as written."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            assert line[1:-1] not in sections, f"{path.name}: section {line} twice"
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: {line!r} before any section"
        assert not line.endswith("\\"), f"{path.name}: keep {line!r} on one line"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is no key=value"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def quadlet_health_cmd() -> list[str]:
    return values(read_unit(QUADLET_DIR / "securechat.container"), "Container", "HealthCmd")


# The keys Quadlet takes in each section (podman 4.6 and later), and the systemd
# sections that may sit beside them.
QUADLET_KEYS: Final = {
    "Container": {
        "AddCapability", "AddDevice", "Annotation", "AutoUpdate", "ContainerName",
        "DropCapability", "Environment", "EnvironmentFile", "Exec", "ExposeHostPort",
        "HealthCmd", "HealthInterval", "HealthOnFailure", "HealthRetries",
        "HealthStartPeriod", "HealthTimeout", "Image", "Label", "Network",
        "NoNewPrivileges", "PodmanArgs", "PublishPort", "ReadOnly", "User", "Volume",
    },
    "Volume": {"Label", "Device", "Options", "Type", "User", "Group", "Copy"},
    "Network": {"Label", "Driver", "Gateway", "Internal", "IPRange", "IPv6", "Subnet"},
}  # fmt: skip
SYSTEMD_SECTIONS: Final = {"Unit", "Service", "Install"}


def test_quadlet_units_are_consistent() -> None:
    units = {path.name: read_unit(path) for path in sorted(QUADLET_DIR.iterdir())}
    assert set(units) == {
        "securechat.container", "securechat-tor.container", "securechat.network",
        "securechat-data.volume", "securechat-tor.volume",
    }  # fmt: skip
    for name, unit in units.items():
        kind = name.rsplit(".", 1)[1].capitalize()
        assert kind in unit, f"{name}: no [{kind}] section"
        assert set(unit) <= SYSTEMD_SECTIONS | {kind}, name
        for key, _ in unit[kind]:
            assert key in QUADLET_KEYS[kind], f"{name}: {key}= is not a Quadlet key"

    containers = {n: u for n, u in units.items() if n.endswith(".container")}
    for name, unit in containers.items():
        # Hardened like the tests run the image, restarted, updated from the local tag.
        assert values(unit, "Container", "ReadOnly") == ["true"], name
        assert values(unit, "Container", "DropCapability") == ["ALL"], name
        assert values(unit, "Container", "NoNewPrivileges") == ["true"], name
        assert values(unit, "Container", "AutoUpdate") == ["local"], name
        assert values(unit, "Service", "Restart") == ["on-failure"], name
        assert values(unit, "Install", "WantedBy"), name
        for reference in values(unit, "Container", "Network"):
            assert reference in units, f"{name}: Network={reference} has no unit"
        for volume in values(unit, "Container", "Volume"):
            assert volume.split(":")[0] in units, f"{name}: Volume={volume} has no unit"
        for port in values(unit, "Container", "PublishPort"):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} is published beyond this host"

    relay, tor = containers["securechat.container"], containers["securechat-tor.container"]
    # The settings file next to the units (docs/deploy.md copies the example there).
    assert values(relay, "Container", "EnvironmentFile") == ["securechat.env"]
    assert values(relay, "Container", "PodmanArgs") == ["--memory=1g --pids-limit=256"]
    assert values(tor, "Container", "PodmanArgs") == ["--memory=512m --pids-limit=64"]
    assert values(relay, "Container", "Image") == ["localhost/securechat:latest"]
    assert values(relay, "Container", "Volume") == ["securechat-data.volume:/data"]
    assert values(relay, "Container", "HealthCmd"), "the OCI image format drops HEALTHCHECK"
    assert values(tor, "Container", "Image") == ["localhost/securechat-tor:latest"]
    assert values(tor, "Container", "Volume") == ["securechat-tor.volume:/var/lib/tor"]
    assert "securechat.service" in values(tor, "Unit", "Requires")

    # Tor's torrc points at the relay by the name the relay's unit gives its container.
    torrc = (REPO / "deploy" / "tor" / "torrc").read_text()
    target = re.search(r"^HiddenServicePort 80 ([\w.-]+):8787$", torrc, re.MULTILINE)
    assert target is not None
    assert values(relay, "Container", "ContainerName") == [target.group(1)]


@pytest.fixture(scope="module")
def quadlet_generator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    installed = next((Path(g) for g in QUADLET_GENERATORS if Path(g).exists()), None)
    if installed is not None:
        yield installed
        return
    if shutil.which("mmdebstrap") is None:
        unavailable("no Quadlet generator here, and no mmdebstrap to unpack one")
    root = tmp_path_factory.mktemp("quadlet") / "podman"
    try:
        yield unpack_quadlet(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def generated_units(output: str) -> dict[str, str]:
    """``--dryrun`` output as {service file name: its text}."""
    parts = re.split(r"^---([\w.@-]+)---$", output, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def exec_start(service: str) -> list[str]:
    (line,) = re.findall(r"^ExecStart=(.*)$", service, flags=re.MULTILINE)
    return shlex.split(line)  # systemd's quoting, as Quadlet writes it, is shell-like


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["root", "rootless"])
def test_quadlet_generator_accepts_the_units(
    quadlet_generator: Path, tmp_path: Path, mode: str
) -> None:
    """The generator, as root on /etc/containers/systemd/'s copy, or as a user.

    As a user it is run the way the user's systemd runs it (``--user``, the
    podman-user-generator), on ~/.config/containers/systemd/ under a HOME of its
    own, where docs/deploy.md has a rootless operator copy the units.
    """
    path = "/usr/bin:/bin"
    if mode == "root":
        units = tmp_path / "units"
        command = [str(quadlet_generator), "--dryrun", "--no-kmsg-log"]
        env = {"QUADLET_UNIT_DIRS": str(units), "PATH": path}
    else:
        home = tmp_path / "home"
        units = home / ".config" / "containers" / "systemd"
        command = [str(quadlet_generator), "--user", "--dryrun", "--no-kmsg-log"]
        env = {"HOME": str(home), "PATH": path}
    shutil.copytree(QUADLET_DIR, units)
    shutil.copy(REPO / "deploy" / "securechat.env.example", units / "securechat.env")
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for problem in ("unsupported", "error", "warning"):
        assert problem not in done.stderr.lower(), done.stderr
    generated = generated_units(done.stdout)
    assert set(generated) == {
        "securechat.service", "securechat-tor.service", "securechat-network.service",
        "securechat-data-volume.service", "securechat-tor-volume.service",
    }  # fmt: skip

    relay = exec_start(generated["securechat.service"])
    tor = exec_start(generated["securechat-tor.service"])
    for args in (relay, tor):
        assert args[:2] == ["/usr/bin/podman", "run"]
        assert "--read-only" in args
        assert "--security-opt=no-new-privileges" in args
        assert args[args.index("--cap-drop") + 1] == "all"
        assert args[args.index("--network") + 1] == "systemd-securechat"
        assert args[args.index("--label") + 1] == "io.containers.autoupdate=local"
    assert relay[-1] == "localhost/securechat:latest"
    assert relay[relay.index("-v") + 1] == "systemd-securechat-data:/data"
    assert relay[relay.index("--publish") + 1] == "127.0.0.1:8787:8787"
    # EnvironmentFile= is relative to the unit's own folder, as the docs rely on.
    assert relay[relay.index("--env-file") + 1] == str(units / "securechat.env")
    assert relay[-3:-1] == ["--memory=1g", "--pids-limit=256"]
    assert tor[-3:-1] == ["--memory=512m", "--pids-limit=64"]
    assert tor[-1] == "localhost/securechat-tor:latest"
    assert tor[tor.index("-v") + 1] == "systemd-securechat-tor:/var/lib/tor"
    # The health command reaches podman as written (the image test runs it).
    assert [relay[relay.index("--health-cmd") + 1]] == quadlet_health_cmd()
    assert "Requires=securechat.service" in generated["securechat-tor.service"]
    for service in ("securechat.service", "securechat-tor.service"):
        # default.target is the one a user's systemd has (multi-user.target is root's).
        (wanted,) = re.findall(r"^WantedBy=(.*)$", generated[service], flags=re.MULTILINE)
        assert "default.target" in wanted.split(), service
