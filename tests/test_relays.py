"""The deployment harness itself (tests/relays.py): processes started, killed, restarted, stopped.

What is checked here holds whatever the relays do with each other: that the
harness starts what it says, kills by PID, brings Valkey back on its port with its
AOF, and leaves no process behind.
"""

import signal
import socket
from pathlib import Path

import trio

from tests.harness import joined_peer, new_room_id, new_token
from tests.relays import Listener, readiness, rejoin, start_deployment
from tests.valkey import Valkey


def command(valkey: Valkey, *words: str) -> bytes:
    """One command in RESP, straight over a socket; the first line of the reply."""
    request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", valkey.port), timeout=5) as conn:
        conn.sendall(request.encode())
        reply = b""
        while reply.count(b"\r\n") < (2 if reply.startswith(b"$") else 1):
            chunk = conn.recv(4096)
            assert chunk, reply
            reply += chunk
    return reply


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_kill_restart_and_stop_act_on_the_processes_by_pid(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    deployment = start_deployment(tmp_path, 2)  # before any client: blocking is harmless
    try:
        first, second = deployment.relays
        assert first.port != second.port
        for path in ("/healthz", "/readyz"):
            assert [readiness(r, path) for r in deployment.relays] == [200, 200]
        urls = deployment.round_robin()
        assert [urls.ws_url("r", "c").split("/ws/")[0] for _ in range(3)] == [
            first.ws_base, second.ws_base, first.ws_base]  # fmt: skip

        # A relay killed by PID: its client sees no close frame, and rejoins the other.
        room, token = new_room_id(), new_token()
        alice = Listener(await joined_peer(nursery, first, room, token)).start(nursery)
        deployment.kill_relay(0)
        await alice.wait_for(lambda listener: listener.ended)
        assert alice.closed == 1006
        assert first.process is not None
        assert first.process.returncode == -signal.SIGKILL
        assert refuses(first.port)
        peer, history, index = await rejoin(nursery, deployment.relays, room, token, first=0)
        assert (index, history["type"]) == (1, "history")
        await trio.to_thread.run_sync(deployment.restart_relays, 0)
        assert readiness(first) == 200  # on its old port
        assert "serving on" in first.log_tail()

        # Valkey: kill -9 loses nothing its AOF has; it comes back on its port and directory.
        assert command(deployment.valkey, "SET", "harness", "kept") == b"+OK\r\n"
        old = deployment.valkey
        deployment.kill_valkey()
        assert old.process.returncode == -signal.SIGKILL
        assert refuses(old.port)
        await trio.to_thread.run_sync(deployment.restart_valkey)
        assert (deployment.valkey.port, deployment.valkey.directory) == (old.port, old.directory)
        assert command(deployment.valkey, "GET", "harness") == b"$4\r\nkept\r\n"
        deployment.assert_running()
    finally:
        deployment.stop()
    processes = [r.process for r in deployment.relays] + [deployment.valkey.process]
    assert all(p is not None and p.poll() is not None for p in processes)
    assert all(refuses(r.port) for r in deployment.relays)
    assert refuses(deployment.valkey.port)
    await peer.closed_with()  # the stopped relay closed it
