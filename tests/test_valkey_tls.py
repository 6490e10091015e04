"""``--valkey rediss://``: TLS to a real redis-server, and the certificate's name checked.

A CA made here signs a certificate for ``localhost`` only; the relay trusts that
CA through ``SSL_CERT_FILE`` (OpenSSL's default store, as a container's would
hold a private CA). Reached as ``localhost`` the relay serves a chat; reached as
``127.0.0.1``, a name the certificate does not carry, it refuses to start, as it
must for any certificate that is not the server's own.
"""

import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest
import trio

from tests.containers import free_port
from tests.harness import joined_peer, new_room_id, new_token
from tests.process import start_process
from tests.valkey import start_valkey

COMMAND_TIMEOUT: Final = 60.0
REFUSAL_TIMEOUT: Final = 20.0  # seconds: the relay gives up on Valkey after about 4


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], capture_output=True, timeout=COMMAND_TIMEOUT, check=True)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for DNS:localhost: (ca, cert, key)."""
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, request = (
        directory / "server.pem",
        directory / "server.key",
        directory / "server.csr",
    )
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *curve, "-days", "1", "-subj", "/CN=test CA",
            "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", *curve, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(request))
    extensions = directory / "extensions"
    extensions.write_text("subjectAltName=DNS:localhost\n")
    signer = ("-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "1")
    openssl("x509", "-req", "-in", str(request), *signer, "-extfile", str(extensions),
            "-out", str(cert))  # fmt: skip
    return ca, cert, key


async def test_rediss_checks_the_certificate_and_its_name(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = make_certificates(tmp_path)
    tls_port = free_port()
    valkey = start_valkey(
        tmp_path / "valkey",
        extra=["--tls-port", str(tls_port), "--tls-cert-file", str(cert),
               "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
               "--tls-auth-clients", "no"],
    )  # fmt: skip
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        refused: list[subprocess.CompletedProcess[bytes]] = []
        wrong_name_url = f"rediss://127.0.0.1:{tls_port}/0"  # the certificate says localhost
        command = [sys.executable, "-m", "securechat", "serve", "--port", "0",
                   "--valkey", wrong_name_url]  # fmt: skip

        async def start_with_the_wrong_name() -> None:  # meanwhile: it retries for seconds
            with trio.fail_after(REFUSAL_TIMEOUT):
                done = await trio.run_process(
                    command, capture_stdout=True, capture_stderr=True, cwd=tmp_path, check=False
                )
            refused.append(done)

        async with trio.open_nursery() as both:
            both.start_soon(start_with_the_wrong_name)
            relay = await start_process(
                tmp_path / "data", 0, "--valkey", f"rediss://localhost:{tls_port}/0"
            )
            try:
                room, token = new_room_id(), new_token()
                alice = await joined_peer(nursery, relay, room, token)
                sent = await alice.post()
                await alice.expect("message", ciphertext=sent["ciphertext"])
            finally:
                await relay.close()
        (wrong_name,) = refused
        stderr = wrong_name.stderr.decode()
        assert wrong_name.returncode == 1, stderr
        assert "cannot use Valkey at rediss://127.0.0.1:" in stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
    finally:
        valkey.stop()
