"""The descriptor flood: more connections than the server has descriptors, none stopped per source.

Two kinds of holder, each reopened a moment after the server ends it:

- a WebSocket that joins one of a few shared rooms (an existing room needs no
  budget, so no proof of work) from one of 38 loopback sources, 127.0.0.3 to
  127.0.0.40, a few dozen per source: under any per-source cap;
- a raw TCP connection, from the same sources, that sends the start of a
  request head and never ends it (slowloris): a per-source cap counts
  WebSockets, and this never becomes one. The server's keep-alive timeout
  closes it after 5 s.

The flood solves no proof of work: its solver has no budget. What explains a
slow newcomer is read beside it: the server's and the attacker's CPU, the
listening socket's accept queue and the kernel's count of listen overflows
(SYNs or handshakes dropped because that queue was full).
"""

import asyncio
import contextlib
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench import hostile
from bench.siege import Attacker, AttackServer, Solver, from_source, join

FLOOD_SOURCES: Final = tuple(f"127.0.0.{host}" for host in range(3, 41))  # 38 loopback sources
PARTIAL_HEAD: Final = b"GET /healthz HTTP/1.1\r\nHost: flood\r\n"  # no blank line: never ends
ANSWER_BYTES: Final = 4096  # of a server's answer to a partial head: a status line is enough
RETRY_S: Final = 0.1  # a refused or closed holder's pause before it reopens: no spin
WATCH_POLL_S: Final = 0.05  # how often the accept queue and the descriptors are sampled
LISTEN_STATE: Final = "0A"  # TCP_LISTEN in /proc/net/tcp


@dataclass
class Flood:
    """WebSocket and partial-request holders; counts of what the server made of them."""

    tally: Counter[str]
    members_per_room: int  # WebSockets per shared room: the server's --max-participants
    solver: Solver = field(default_factory=lambda: Solver(0.0))  # no proof of work, ever
    rooms: list[tuple[str, str]] = field(default_factory=list)  # (room id, token)
    holding: dict[int, Attacker] = field(default_factory=dict)  # each slot's client now
    sockets: int = 0  # WebSockets past `connected` now
    partial: int = 0  # partial-request connections open now, as the attacker sees them
    joins: int = 0  # WebSockets that got `connected`, reopened ones included
    partial_opened: int = 0  # partial-request connections made, reopened ones included

    def room_for(self, slot: int) -> tuple[str, str]:
        index = slot // self.members_per_room
        while len(self.rooms) <= index:
            self.rooms.append((hostile.room_id(), hostile.token()))
        return self.rooms[index]

    async def hold_socket(self, slot: int, base_url: str, timeout_s: float) -> None:
        """Keep WebSocket ``slot`` in its shared room until cancelled; reopen it when it ends."""
        room, auth = self.room_for(slot)
        connect = from_source(FLOOD_SOURCES[slot % len(FLOOD_SOURCES)])
        while True:
            attacker = self.holding[slot] = Attacker(auth, self.tally, self.solver)
            if await join(
                base_url, room, hostile.client_id(), attacker, timeout_s, socket_factory=connect
            ):
                self.joins += 1
                self.sockets += 1
                try:
                    await attacker.gone
                finally:
                    self.sockets -= 1
                code = attacker.close_code
                self.tally["dropped while held" if code is None else f"close {code} held"] += 1
            await asyncio.sleep(RETRY_S)

    async def hold_partial(self, slot: int, address: tuple[str, int]) -> None:
        """Keep a partial request open on ``slot`` until cancelled; reopen it when it ends.

        Resource handling: each connection is closed in ``finally``, cancelled or not.
        """
        source = FLOOD_SOURCES[slot % len(FLOOD_SOURCES)]
        while True:
            try:
                reader, writer = await asyncio.open_connection(*address, local_addr=(source, 0))
            except OSError as error:
                self.tally[f"partial: {type(error).__name__}"] += 1
                await asyncio.sleep(RETRY_S)
                continue
            self.partial += 1
            self.partial_opened += 1
            try:
                writer.write(PARTIAL_HEAD)
                answer = await reader.read(ANSWER_BYTES)  # an answer, or the server's close
                self.tally[f"partial: {_answer_kind(answer)}"] += 1
            except OSError as error:
                self.tally[f"partial: {type(error).__name__}"] += 1
            finally:
                self.partial -= 1
                writer.close()
            await asyncio.sleep(RETRY_S)

    def close(self) -> None:
        for attacker in self.holding.values():
            attacker.close()


def _answer_kind(answer: bytes) -> str:
    if not answer:
        return "closed"
    status = answer.split(b"\r\n", 1)[0].split(b" ")
    return f"http {status[1].decode(errors='replace')}" if len(status) > 1 else "answered"


def accept_queue(port: int) -> int:
    """Connections in the accept queue of the listening socket on ``port`` (IPv4) now."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == LISTEN_STATE and int(local.rsplit(":", 1)[1], 16) == port:
            return int(queues.split(":")[1], 16)  # rx_queue: sk_ack_backlog for a listener
    return 0


def listen_overflows() -> int:
    """The kernel's TcpExt ListenOverflows (this network namespace, every socket)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    return 0


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class Pressure:
    """What the machine did over a window: CPU shares (1.0 = one core), queue, descriptors."""

    seconds: float
    server_cpu: float
    attacker_cpu: float
    accept_queue_max: int
    fds_max: int

    def describe(self) -> str:
        return (
            f"server CPU {100 * self.server_cpu:.0f}%, attacker CPU "
            f"{100 * self.attacker_cpu:.0f}% (of one core), accept queue at most "
            f"{self.accept_queue_max:,}"
        )


async def watch(server: AttackServer, seconds: float) -> Pressure:
    """Sample the server for ``seconds``: CPU, its accept queue and its descriptors."""
    port = server.address[1]
    started, server_cpu, own_cpu = time.monotonic(), server.cpu_seconds(), own_cpu_seconds()
    queue = fds = 0
    while (elapsed := time.monotonic() - started) < seconds:
        queue = max(queue, accept_queue(port))
        with contextlib.suppress(OSError):  # a descriptor closed while being listed
            fds = max(fds, server.open_fds())
        await asyncio.sleep(WATCH_POLL_S)
    return Pressure(
        seconds=elapsed,
        server_cpu=(server.cpu_seconds() - server_cpu) / elapsed,
        attacker_cpu=(own_cpu_seconds() - own_cpu) / elapsed,
        accept_queue_max=queue,
        fds_max=fds,
    )
