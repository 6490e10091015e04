"""Podman for the container tests: a private configuration, local base images, cleanup.

No image registry is reachable on the test machines, so the bases that the
Containerfiles name in their ``BASE_IMAGE`` argument are made here: Debian's
``mmdebstrap`` writes a minimal bookworm root filesystem (with python3 for the
relay; plain, like debian:bookworm-slim, for the onion service, whose Containerfile
installs tor from Debian itself) and ``podman import`` turns it into an image. The
Python base also carries the host's CA bundle as ``PIP_CERT``, because the package
index is reached through a TLS-intercepting proxy; the public default bases need
none of this.

Podman runs with its own ``containers.conf`` (``CONTAINERS_CONF``), written into a
temporary directory: runc as the runtime, finite ulimits, netavark networking.
Nothing under /etc is touched.

Everything made here has a name unique to the test session and is removed by
whoever made it, in ``finally`` blocks and fixture teardown.
"""

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn

import pytest

REPO: Final = Path(__file__).resolve().parent.parent

# Seconds each kind of step may take; generous, since two cores do all of it.
BOOTSTRAP_TIMEOUT: Final = 300.0  # mmdebstrap: downloads and unpacks ~100 packages
BUILD_TIMEOUT: Final = 600.0  # podman build: pip installs the relay's dependencies
COMMAND_TIMEOUT: Final = 120.0  # any other podman command
READY_TIMEOUT: Final = 60.0  # a started container answering /healthz

CONTAINERS_CONF: Final = """\
# Written by the container tests; see tests/containers.py.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[network]
network_backend = "netavark"

[engine]
runtime = "runc"
# Debian installs netavark and aardvark-dns here; this file replaces the system
# configuration that would otherwise tell podman so.
helper_binaries_dir = ["/usr/lib/podman", "/usr/libexec/podman", "/usr/local/libexec/podman"]
"""

# The host CA bundle, for pip behind the intercepting proxy (first one that exists).
_CA_CANDIDATES: Final = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
_DEBIAN_CA_BUNDLE: Final = "/etc/ssl/certs/ca-certificates.crt"

# Quadlet's generator, where podman (>= 4.4) installed it.
QUADLET_GENERATORS: Final = (
    "/usr/lib/systemd/system-generators/podman-system-generator",
    "/usr/libexec/podman/quadlet",
)
# Else the one from Debian 13's podman (5.4), unpacked only: it is a Go program that
# needs nothing but libc, so it runs on bookworm, whose podman (4.3) has no Quadlet.
_QUADLET_SUITE: Final = "trixie"

_PYTHON_PACKAGES: Final = "python3,python3-venv,ca-certificates"
_TOR_PACKAGES: Final = ""  # deploy/tor/Containerfile installs tor with apt, as on a real base


def run_id() -> str:
    """A short random tag for names that must not collide with anything else."""
    return secrets.token_hex(4)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unavailable(reason: str) -> NoReturn:
    """Fail in CI, skip elsewhere: container tests never pass without running."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"container tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"CONTAINER TESTS NOT RUN: {reason} (scripts/test installs what they need)")


def find_podman_compose() -> str | None:
    """podman-compose from this interpreter's environment, else from PATH."""
    here = Path(sys.executable).parent / "podman-compose"
    return str(here) if here.exists() else shutil.which("podman-compose")


# Debian's package (scripts/test installs it): 1.0.3 on Debian 12, 1.0.6 on Ubuntu 24.04.
DISTRIBUTION_PODMAN_COMPOSE: Final = "/usr/bin/podman-compose"


def podman_compose_version(program: str) -> tuple[int, int, int] | None:
    """The version ``program version`` prints (1.0.x says "podman-composer version")."""
    try:
        done = subprocess.run(
            [program, "version"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
            check=False,
        )  # fmt: skip
    except OSError:
        return None
    found = re.search(r"podman-composer? version\s+(\d+)\.(\d+)\.(\d+)", done.stdout)
    if found is None:
        return None
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


@dataclass(frozen=True, slots=True)
class Podman:
    """The podman command with the private configuration."""

    env: Mapping[str, str]

    @classmethod
    def configure(cls, workdir: Path) -> "Podman":
        conf = workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        return cls({**os.environ, "CONTAINERS_CONF": str(conf)})

    def run(
        self,
        *args: str,
        timeout: float = COMMAND_TIMEOUT,
        check: bool = True,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        program: Sequence[str] = ("podman",),
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``podman *args`` (or another program in this environment) to completion.

        ``stdin``, if given, is the command's standard input; else it has none.

        Error handling: with ``check``, a non-zero exit fails the test with the
        command's output, which is what one needs to see when a build breaks.
        """
        command = [*program, *args]
        done = subprocess.run(
            command,
            env={**self.env, **(env or {})},
            cwd=cwd,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} exited {done.returncode}\n"
                f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}",
                pytrace=False,
            )
        return done

    def output(self, *args: str) -> str:
        return self.run(*args).stdout.strip()

    def remove_images(self, *images: str) -> None:
        self.run("rmi", "--force", "--ignore", *images)

    def build(
        self, context: Path, tag: str, *, base: str | None = None, image_format: str = "docker"
    ) -> None:
        """Build, by default with the docker format, which keeps HEALTHCHECK.

        No intermediate images: they would outlive ``remove_images`` (a first
        stage is no parent of the final image), and with bases new in every
        session there is no cache to keep.
        """
        args = ["build", "--layers=false", "--format", image_format, "-t", tag]
        if base is not None:
            args += ["--build-arg", f"BASE_IMAGE={base}"]
        self.run(*args, str(context), timeout=BUILD_TIMEOUT)


def check_podman(podman: Podman) -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    for program in ("podman", "runc", "mmdebstrap"):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    try:
        info = podman.run("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"podman info failed: {exc}"
    if info.returncode != 0:
        return f"podman info failed: {info.stderr.strip()[-500:]}"
    return None


@dataclass(frozen=True, slots=True)
class Bases:
    """Locally made base images, by the name the Containerfiles take in BASE_IMAGE."""

    python: str
    tor: str  # a plain Debian, as debian:bookworm-slim is: tor comes from the Containerfile


def _host_ca_bundle() -> Path | None:
    for name in _CA_CANDIDATES:
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    debian = Path(_DEBIAN_CA_BUNDLE)
    return debian if debian.is_file() else None


def _bootstrap(
    packages: str, target: Path, *, suite: str = "bookworm", variant: str = "minbase"
) -> None:
    include = [f"--include={packages}"] if packages else []
    subprocess.run(
        ["mmdebstrap", "--quiet", f"--variant={variant}", *include, suite, str(target)],
        check=True,
        capture_output=True,
        timeout=BOOTSTRAP_TIMEOUT,
    )  # fmt: skip


def build_bases(podman: Podman, workdir: Path, tag: str) -> Bases:
    """Make both bases: the two root filesystems are bootstrapped side by side.

    Resource handling: the tarballs are always deleted; on failure the images
    made so far are removed, on success the caller removes them
    (``Podman.remove_images``).
    """
    bases = Bases(
        python=f"localhost/securechat-test-python:{tag}", tor=f"localhost/securechat-test-tor:{tag}"
    )
    plain_python = f"localhost/securechat-test-python-plain:{tag}"
    python_tar, tor_tar = workdir / "python.tar", workdir / "tor.tar"
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = [
                pool.submit(_bootstrap, _PYTHON_PACKAGES, python_tar),
                pool.submit(_bootstrap, _TOR_PACKAGES, tor_tar),
            ]
            for job in jobs:
                try:
                    job.result()
                except subprocess.CalledProcessError as exc:
                    pytest.fail(f"mmdebstrap failed:\n{exc.stderr.decode()[-4000:]}", pytrace=False)
        podman.run("import", "--quiet", str(python_tar), plain_python, timeout=BUILD_TIMEOUT)
        podman.run("import", "--quiet", str(tor_tar), bases.tor, timeout=BUILD_TIMEOUT)

        # The Python base as a registry image would be, plus the proxy's CA for pip.
        context = workdir / "python-base"
        context.mkdir()
        lines = [f"FROM {plain_python}"]
        ca_bundle = _host_ca_bundle()
        if ca_bundle is not None:
            shutil.copyfile(ca_bundle, context / "host-ca.crt")
            lines += [
                "COPY host-ca.crt /etc/ssl/certs/host-ca.crt",
                "ENV PIP_CERT=/etc/ssl/certs/host-ca.crt",
            ]
        (context / "Containerfile").write_text("\n".join(lines) + "\n")
        podman.build(context, bases.python)
    except BaseException:
        podman.run("rmi", "--force", "--ignore", bases.python, bases.tor, check=False)
        raise
    finally:
        python_tar.unlink(missing_ok=True)
        tor_tar.unlink(missing_ok=True)
        # Untags it; its layers stay under bases.python while that exists.
        podman.run("rmi", "--force", "--ignore", plain_python, check=False)
    return bases


def unpack_quadlet(root: Path) -> Path:
    """Unpack (not install) Debian's podman package under ``root``; return its Quadlet.

    Resource handling: the caller deletes ``root`` (some 200 MB).
    """
    try:
        _bootstrap("podman", root, suite=_QUADLET_SUITE, variant="extract")
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"mmdebstrap failed:\n{exc.stderr.decode()[-4000:]}", pytrace=False)
    return root / "usr" / "libexec" / "podman" / "quadlet"


def wait_healthz(base_url: str, timeout: float = READY_TIMEOUT) -> None:
    """Poll ``GET /healthz`` until it answers "ok" or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:  # noqa: S310
                if response.read() == b"ok":
                    return
        except OSError as exc:  # refused or reset while the container starts
            last = exc
        time.sleep(0.25)
    pytest.fail(f"{base_url}/healthz did not answer within {timeout} s: {last}", pytrace=False)
