"""``RoomEvents``: a shared room's numbered events, delivered in order (sans-IO).

The subscriber hands each event of the room's channel to ``add`` without waiting;
the room's task calls ``deliver`` between its commands. Event ``n`` is delivered
only after ``n - 1``. A joiner that joined at event ``j`` (``joined``) gets only
events after ``j``: the JOIN script's reply gave it everything up to ``j``. An
event that skips a number, or more than ``EVENTS_QUEUED`` waiting, means events
went by unseen: ``deliver`` then says so, and the room closes its members here.
"""

import collections
from typing import Final, final

from securechat.frames import text_frame
from securechat.member import Member
from securechat.protocol import ClientId, HistoryCleared, System, encode
from securechat.valkey.order import parse_participants

EVENTS_QUEUED: Final = 4096  # events waiting for a busy room; more and its members rejoin


@final
class RoomEvents:
    def __init__(self) -> None:
        self._queue: collections.deque[tuple[int, bytes, bytes]] = collections.deque()
        self._cursor: int | None = None  # the last event delivered
        self._floors: dict[Member, int] = {}  # joiners: the event they joined at
        self._missed = False

    def add(self, ev: int, kind: bytes, body: bytes) -> None:
        if len(self._queue) >= EVENTS_QUEUED:
            self._missed = True
        else:
            self._queue.append((ev, kind, body))

    def missed(self) -> None:
        """Events may have gone by unseen (the subscriber reconnected)."""
        self._missed = True

    def joined(self, member: Member, ev: int) -> None:
        if self._cursor is None:
            self._cursor = ev  # this process's first member: nothing before it counts
        elif ev > self._cursor:
            self._floors[member] = ev

    def left(self, member: Member) -> None:
        self._floors.pop(member, None)

    def deliver(self, members: dict[Member, str]) -> bool:
        """Deliver what waits to ``members`` (each with its connection's name); False if
        events were missed: the caller closes the members, and it all starts afresh."""
        queue = self._queue
        while queue and not self._missed:
            ev, kind, body = queue.popleft()
            if self._cursor is None or ev <= self._cursor:
                continue  # before this process's first member joined, or already seen
            if ev != self._cursor + 1:
                self._missed = True
                break
            self._cursor = ev
            self._deliver(members, ev, kind, body)
        if not self._missed:
            return True
        self._missed = False
        queue.clear()
        self._cursor = None
        self._floors.clear()
        return False

    def _deliver(self, members: dict[Member, str], ev: int, kind: bytes, body: bytes) -> None:
        match kind:
            case b"m":
                _send(members, self._floors, ev, text_frame(body.decode("ascii")))
            case b"j":
                conn, first, people = body.split(b"\n")
                client_id = ClientId(conn.rpartition(b"/")[2].decode("ascii"))
                participants = parse_participants(people)
                if first == b"1":
                    frame = text_frame(encode(System("joined", client_id, participants)))
                    _send(members, self._floors, ev, frame)
                else:
                    # Only the clientId's own connections hear of it (as with one process).
                    frame = text_frame(encode(System("also_connected", client_id, participants)))
                    _send(members, self._floors, ev, frame, client_id=client_id)
            case b"l":
                raw, people = body.split(b"\n")
                client_id = ClientId(raw.decode("ascii"))
                left = System("left", client_id, parse_participants(people))
                _send(members, self._floors, ev, text_frame(encode(left)))
            case b"c":
                raw, people = body.split(b"\n")
                by = ClientId(raw.decode("ascii"))
                _send(members, self._floors, ev, text_frame(encode(HistoryCleared(by=by))))
                cleared = System("cleared", by, parse_participants(people))
                _send(members, self._floors, ev, text_frame(encode(cleared)))
            case b"s":
                conn, text = body.split(b"\n", 1)
                _send(
                    members,
                    self._floors,
                    ev,
                    text_frame(text.decode("ascii")),
                    skip=conn.decode("ascii"),
                )
        if self._floors:  # a joiner gets everything after the event it joined at
            for member in [m for m, floor in self._floors.items() if floor <= ev]:
                del self._floors[member]


def _send(
    members: dict[Member, str], floors: dict[Member, int], ev: int, frame: bytes, *,
    client_id: ClientId | None = None, skip: str = "",
) -> None:  # fmt: skip
    for member, conn in list(members.items()):
        if client_id is not None and member.client_id != client_id:
            continue
        if conn == skip or (floors and floors.get(member, 0) >= ev):
            continue
        member.deliver_nowait(frame)
