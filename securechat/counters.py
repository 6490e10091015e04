"""The process's event counters, for the metrics endpoint (securechat/metrics.py).

Each is bumped where its event happens by one increment of an attribute or of a
dict entry: no call, no lock (one event loop), no allocation. Nothing is
counted per room, per client or per address: only totals, and totals per close
code, error code and HTTP status, all sets the server's own code bounds.
Gauges (rooms active, connections open, storage used) are not kept here: the
metrics endpoint reads them from their owners when it is scraped.
"""

from collections import Counter
from typing import Final, final

from securechat.errors import CloseCode, ErrorCode


@final
class Counts:
    """Totals since the process started. Only ever incremented."""

    __slots__ = (
        "challenges",
        "closes",
        "errors",
        "http_refusals",
        "joins",
        "messages",
        "responses",
        "rooms_created",
        "signals",
    )

    def __init__(self) -> None:
        self.rooms_created = 0  # a first hello gave a room its verifier
        self.joins = 0  # connections admitted into a room
        self.messages = 0  # messages stored and relayed to their room
        self.signals = 0  # signals relayed (each to every other member)
        self.challenges = 0  # proofs of work asked of a new room's hello
        self.http_refusals = 0  # TCP connections refused by a connection cap (503, or closed)
        # Every key made here: an increment never adds one (a bug would raise KeyError).
        self.closes: dict[CloseCode, int] = dict.fromkeys(CloseCode, 0)  # WebSockets closed
        self.errors: dict[ErrorCode, int] = dict.fromkeys(ErrorCode, 0)  # error envelopes sent
        # HTTP responses by status, WebSocket handshake refusals included. Only the
        # server's own code picks a status: the keys are the dozen or so it uses.
        self.responses: Counter[int] = Counter()


COUNTS: Final = Counts()  # the process's one set: one server per process
