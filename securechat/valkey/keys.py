"""The names of a room's keys and channel in Valkey.

Every name is under ``securechat:room:{<roomId>}:``. The braces are a hash tag: a
Valkey Cluster puts all of one room's keys on one slot, so one script can change
them together. A room id is base64url, so it never holds a brace. A few keys belong
to no room and sit under ``securechat:`` (the live processes, the quota): the shared
room's scripts touch them too, so a shared room needs one Valkey, not a Cluster.
"""

from typing import Final

from securechat.protocol import RoomId

PREFIX: Final = "securechat:room:"
META_PATTERN: Final = PREFIX + "*:meta"  # every room's hash, for SCAN


def meta(room_id: RoomId) -> str:
    """The hash: verifier, last_id, last_active, creator, confirmed_at, bytes."""
    return f"{PREFIX}{{{room_id}}}:meta"


def history(room_id: RoomId) -> str:
    """The list of the room's stored messages, oldest first, each as relayed."""
    return f"{PREFIX}{{{room_id}}}:history"


def channel(room_id: RoomId) -> str:
    """Where every appended message is published, as relayed to members."""
    return f"{PREFIX}{{{room_id}}}:messages"


def presence(room_id: RoomId) -> str:
    """The sorted set of the room's connections, scored by when they joined."""
    return f"{PREFIX}{{{room_id}}}:presence"


def events(room_id: RoomId) -> str:
    """The channel of the room's numbered events (securechat/valkey/room_scripts.py)."""
    return f"{PREFIX}{{{room_id}}}:events"


def process_rooms(process: str) -> str:
    """The set of rooms a relay process has members in, for pruning them if it dies."""
    return f"securechat:process:{process}:rooms"


PROCESSES: Final = "securechat:processes"  # each live process, scored by when it expires
QUOTA: Final = "securechat:quota"  # stored bytes and rooms of every process together
RECOUNT: Final = "securechat:recount"  # held by the process recounting QUOTA


def room_of(meta_key: str) -> RoomId | None:
    """The room id inside a ``meta`` key name, or None if it is not one."""
    inner, brace, rest = meta_key.removeprefix(PREFIX).partition("}")
    if not brace or rest != ":meta" or not inner.startswith("{"):
        return None
    return RoomId(inner[1:])
