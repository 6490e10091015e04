"""A room's rules (sans-IO); securechat/actor.py is the task that hosts them.

``RoomRules`` is plain synchronous code: given a command it updates the room's
state and says what to write to storage and what to send to whom; the actor
carries that out once the writes have committed. Nothing is relayed before it is
durable, and nothing is relayed while a member is too far behind to take it: the
sender is told to try again instead. How long the room holds posts that way is
bounded, whoever causes it: ``STALL_SECONDS`` for one member, and
``STALL_BUDGET_SECONDS`` in any ``STALL_WINDOW_SECONDS`` for the room. Signals
are ephemeral: never stored, relayed to the others in the same turn, and dropped
without a word while a member is too far behind.
"""

import enum
import hmac
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Final, final

from securechat.counters import COUNTS
from securechat.errors import CloseCode, ErrorCode
from securechat.frames import text_frame
from securechat.ledger import HistoryLedger, Lifecycle
from securechat.limits import (
    CLEAR_COOLDOWN_SECONDS,
    PAUSE_TAIL_SECONDS,
    STALL_BUDGET_SECONDS,
    STALL_SECONDS,
    STALL_WINDOW_SECONDS,
    STALLED_CLIENTS,
    STALLED_MEMORY_SECONDS,
)
from securechat.member import Answer, Member
from securechat.protocol import (
    ClientId,
    FrameError,
    HistoryCleared,
    MessageOut,
    SignalOut,
    System,
    SystemEvent,
    encode,
    encode_error,
)
from securechat.ratelimit import TimeInWindow
from securechat.storage import (
    Append,
    Clear,
    Quota,
    RoomRecord,
    SetVerifier,
    Write,
    stored_bytes,
)

# The answer to a post the room cannot take. It reuses ``rate_limited`` because every
# client already resends after it; the room sends it straight into the sender's
# outbox, so it never reaches the connection's abuse count (4429): the sender did
# nothing wrong. Like every answer, it never makes its recipient congested.
ROOM_BUSY: Final = Answer(
    encode_error(FrameError(ErrorCode.RATE_LIMITED, "room busy: frame dropped"))
)
# The answer to a post that storage has no room for: at the quota, a room's message is
# stored only if the room's own older messages make room for it. Sent like ROOM_BUSY.
STORAGE_FULL: Final = Answer(
    encode_error(FrameError(ErrorCode.RATE_LIMITED, "server storage full: frame dropped"))
)
# The answer to a frame over a rate: the connection's bucket, or the room's clear cooldown.
SLOW_DOWN: Final = Answer(
    encode_error(FrameError(ErrorCode.RATE_LIMITED, "slow down: frame dropped"))
)

_STALL_MS: Final = int(STALL_SECONDS * 1000)
_STALL_BUDGET_MS: Final = int(STALL_BUDGET_SECONDS * 1000)
_PAUSE_TAIL_MS: Final = int(PAUSE_TAIL_SECONDS * 1000)
_STALLED_MEMORY_MS: Final = int(STALLED_MEMORY_SECONDS * 1000)
_CLEAR_COOLDOWN_MS: Final = int(CLEAR_COOLDOWN_SECONDS * 1000)


@final
class Pending(enum.Enum):
    """A frame the actor fills in after the commit: the history, read from storage."""

    HISTORY = "history"


# ----- commands: what connections send to a room -----------------------------------


@final
@dataclass(frozen=True, slots=True)
class Join:
    member: Member
    verifier: bytes  # SHA-256 of the access token the member presented


@final
@dataclass(frozen=True, slots=True)
class Leave:
    member: Member


@final
@dataclass(frozen=True, slots=True)
class Post:
    member: Member
    iv: str  # validated base64url, relayed as received
    ciphertext: str


@final
@dataclass(frozen=True, slots=True)
class ClearRequest:
    member: Member


@final
@dataclass(frozen=True, slots=True)
class Signal:
    member: Member
    iv: str  # validated base64url, relayed as received
    ciphertext: str


Command = Join | Leave | Post | ClearRequest | Signal


@final
@dataclass(frozen=True, slots=True)
class RoomSettings:
    history_cap: int
    max_participants: int  # connections, so one person's many tabs count too


@final
@dataclass(slots=True)
class Outcome:
    """What a batch of commands produced, carried out only after ``writes`` commit.

    ``queued`` lets the rules see each outbox as it will be once the batch is
    delivered, so a large batch cannot overfill it. It counts relayed frames only:
    answers never make a member congested.
    """

    writes: list[Write] = field(default_factory=list)
    deliveries: list[tuple[tuple[Member, ...], str | Pending | Answer]] = field(
        default_factory=list
    )
    evictions: list[tuple[Member, CloseCode]] = field(default_factory=list)
    queued: Counter[Member] = field(default_factory=Counter)  # relayed frames per member
    grown: int = 0  # stored bytes the writes add (negative: free)
    wants_history: bool = False  # a joiner waits for ``Pending.HISTORY``

    def deliver(self, recipients: tuple[Member, ...], text: str | Pending) -> None:
        self.deliveries.append((recipients, text))
        self.queued.update(recipients)
        self.wants_history |= text is Pending.HISTORY

    def answer(self, member: Member, answer: Answer) -> None:
        COUNTS.errors[ErrorCode.RATE_LIMITED] += 1  # a room answers only with rate_limited
        self.deliveries.append(((member,), answer))

    def carry_out(self, history: str = "") -> None:
        """Evict, then deliver; ``history`` is the encoded history if ``wants_history``."""
        for member, code in self.evictions:
            member.evict(code)
        for recipients, item in self.deliveries:
            # Framed once: every recipient's socket gets the same bytes.
            if isinstance(item, Answer):
                frame: bytes | Answer = item
            else:
                frame = text_frame(history if item is Pending.HISTORY else item)
            for member in recipients:
                member.deliver_nowait(frame)


# ----- the rules ------------------------------------------------------------------


@final
class RoomRules:
    """One room's state and rules, with no I/O and no clock of its own."""

    def __init__(
        self, record: RoomRecord, settings: RoomSettings, quota: Quota | None = None
    ) -> None:
        self._settings = settings
        self.verifier = record.verifier
        self.last_id = record.last_id
        self.ledger = HistoryLedger(record, settings.history_cap, quota or Quota.unlimited())
        self.life = Lifecycle(record)
        self.members: dict[Member, None] = {}  # an ordered set of connections
        self._counts: dict[ClientId, int] = {}  # connections per clientId, in join order
        self._last_clear: int | None = None  # ms
        # How long posts were held (refused while a member was congested): closed pauses
        # in the window, and the open one, from its first refused post to its last.
        self._paused = TimeInWindow(STALL_WINDOW_SECONDS)
        self._paused_since: int | None = None
        self._last_refused = 0
        # clientIds closed for stalling, with when; bounded, oldest first.
        self._stalled: OrderedDict[ClientId, int] = OrderedDict()

    @property
    def participants(self) -> list[ClientId]:
        return list(self._counts)

    @property
    def reclaimable(self) -> bool:
        """Whether the room's slot is the least valuable: empty, or only its creator's."""
        return not self.members or (not self.life.confirmed and len(self._counts) <= 1)

    def apply(self, command: Command, now_ms: int, out: Outcome) -> None:
        match command:
            case Join(member=member, verifier=verifier):
                self._join(member, verifier, now_ms, out)
            case Leave(member=member):
                self._leave(member, out)
            case Post(member=member, iv=iv, ciphertext=ciphertext):
                self._post(member, iv, ciphertext, now_ms, out)
            case ClearRequest(member=member):
                self._clear(member, now_ms, out)
            case Signal(member=member, iv=iv, ciphertext=ciphertext):
                self._signal(member, iv, ciphertext, now_ms, out)
        if out.writes:
            self.life.written(now_ms)

    def _join(self, member: Member, verifier: bytes, now_ms: int, out: Outcome) -> None:
        # The token is checked before capacity, so a stranger learns nothing about
        # the room, not even that it is full.
        if self.verifier is None:
            self.verifier = verifier  # trust on first use
            COUNTS.rooms_created += 1
            self.life.created(member.client_id)
            out.writes.append(SetVerifier(verifier, member.client_id))
        elif not hmac.compare_digest(self.verifier, verifier):
            out.evictions.append((member, CloseCode.BAD_TOKEN))
            return
        if len(self.members) >= self._settings.max_participants:
            out.evictions.append((member, CloseCode.ROOM_FULL))
            return
        others = tuple(self.members)
        self.members[member] = None
        COUNTS.joins += 1
        first = member.client_id not in self._counts
        self._counts[member.client_id] = self._counts.get(member.client_id, 0) + 1
        participants = self.participants
        self.life.joined(member.client_id, now_ms, out.writes)
        out.deliver((member,), Pending.HISTORY)
        out.deliver((member,), encode(System("connected", member.client_id, participants)))
        if first and others:
            out.deliver(others, encode(System("joined", member.client_id, participants)))
        elif not first:
            # Only the clientId's own connections hear of it: to the others nothing
            # changed, and a second tab is no news to them.
            mine = tuple(m for m in others if m.client_id == member.client_id)
            out.deliver(mine, encode(System("also_connected", member.client_id, participants)))

    def _leave(self, member: Member, out: Outcome) -> None:
        if member not in self.members:
            return  # refused at join, or never got in
        del self.members[member]
        client_id = member.client_id
        self._counts[client_id] -= 1
        if self._counts[client_id] == 0:
            del self._counts[client_id]
            self._broadcast("left", client_id, out)

    def _post(self, member: Member, iv: str, ciphertext: str, now_ms: int, out: Outcome) -> None:
        if member not in self.members:
            return
        congested = self._congested(now_ms, out)
        self._note_pause(now_ms, congested)
        if member not in self.members:
            return  # the sender itself had stopped reading and is closed
        if congested:
            # Shed load instead of overfilling outboxes: nothing is stored or relayed,
            # and the sender resends later.
            out.answer(member, ROOM_BUSY)
            return
        room = self.ledger.make_room(stored_bytes(member.client_id, iv, ciphertext), out.grown)
        if room is None:
            out.answer(member, STORAGE_FULL)
            return
        keep, grown = room
        out.grown += grown
        self.last_id += 1
        message = MessageOut(
            id=self.last_id, sender=member.client_id, sent_at=now_ms, iv=iv, ciphertext=ciphertext
        )
        out.writes.append(Append(message, keep=keep))
        COUNTS.messages += 1
        # The sender gets its own message back: that is its confirmation.
        out.deliver(tuple(self.members), encode(message))

    def _signal(self, member: Member, iv: str, ciphertext: str, now_ms: int, out: Outcome) -> None:
        """Relay a signal to every other connection, or drop it: it is never stored.

        A signal is a hint (a name, someone typing) that the next one replaces, so a
        congested room drops it without an answer: nobody resends it, and it must not
        fill the outbox of a member that is behind. Its drops hold no post back, so
        they do not count towards the room's pause budget.
        """
        if member not in self.members:
            return
        if self._congested(now_ms, out) or member not in self.members:
            return  # the room is behind, or the sender itself was closed for stalling
        others = tuple(m for m in self.members if m is not member)
        if others:  # encoded once, the same text for every recipient
            COUNTS.signals += 1
            signal = SignalOut(sender=member.client_id, iv=iv, ciphertext=ciphertext)
            out.deliver(others, encode(signal))

    def paused_ms(self, now_ms: int) -> int:
        """How long the room held posts in the stall window up to ``now_ms``."""
        total = self._paused.total(now_ms)
        if self._paused_since is not None:
            total += min(now_ms, self._last_refused + _PAUSE_TAIL_MS) - self._paused_since
        return total

    def _congested(self, now_ms: int, out: Outcome) -> bool:
        """Whether a member is too far behind to be sent another message.

        A member congested for longer than ``STALL_SECONDS`` has stopped reading (a
        frozen tab, a dead network) rather than fallen behind a busy server: it is
        closed with 4008 here, and leaves at once, so it cannot hold the room up.
        It is closed at once, with no such grace, once the room has held posts for
        ``STALL_BUDGET_SECONDS`` in the window (many members taking turns to stall),
        or if its clientId was closed for stalling in the last
        ``STALLED_MEMORY_SECONDS`` (one that keeps reconnecting to stall again).
        """
        budget_spent = self.paused_ms(now_ms) > _STALL_BUDGET_MS
        congested = False
        for member in list(self.members):
            since = member.congested_since(now_ms, out.queued[member])
            if since is None:
                continue
            if (
                now_ms - since > _STALL_MS
                or budget_spent
                or now_ms - self._stalled.get(member.client_id, -_STALLED_MEMORY_MS)
                < _STALLED_MEMORY_MS
            ):
                self._close_stalled(member, now_ms, out)
            else:
                congested = True
        return congested

    def _close_stalled(self, member: Member, now_ms: int, out: Outcome) -> None:
        out.evictions.append((member, CloseCode.TOO_SLOW))
        self._leave(member, out)
        self._stalled.pop(member.client_id, None)
        self._stalled[member.client_id] = now_ms
        if len(self._stalled) > STALLED_CLIENTS:
            self._stalled.popitem(last=False)

    def _note_pause(self, now_ms: int, refused: bool) -> None:
        """Account for the time posts are held: from a pause's first refused post until a
        post is taken, or ``PAUSE_TAIL_SECONDS`` after its last refused one if nobody
        posted in between (clients resend sooner: nobody was waiting any longer)."""
        if self._paused_since is not None:
            end = min(now_ms, self._last_refused + _PAUSE_TAIL_MS)
            if not refused or end < now_ms:
                self._paused.add(self._paused_since, end)
                self._paused_since = None
        if refused:
            if self._paused_since is None:
                self._paused_since = now_ms
            self._last_refused = now_ms

    def _clear(self, member: Member, now_ms: int, out: Outcome) -> None:
        if member not in self.members:
            return
        # Per room, not per connection: more sockets must not mean more clears.
        if self._last_clear is not None and now_ms - self._last_clear < _CLEAR_COOLDOWN_MS:
            out.answer(member, SLOW_DOWN)
            return
        self._last_clear = now_ms
        out.grown -= self.ledger.clear()
        out.writes.append(Clear())
        out.deliver(tuple(self.members), encode(HistoryCleared(by=member.client_id)))
        self._broadcast("cleared", member.client_id, out)

    def _broadcast(self, event: SystemEvent, client_id: ClientId, out: Outcome) -> None:
        if self.members:
            out.deliver(tuple(self.members), encode(System(event, client_id, self.participants)))


def now_ms() -> int:
    return time.time_ns() // 1_000_000
