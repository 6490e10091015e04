"""The room fingerprint: a few words and colours that everyone with the link sees alike.

A mistyped room id opens a new, empty room that looks like any other. The
fingerprint (docs/protocol.md section 6) lets people compare out loud that they
are in the same room: HKDF-SHA256 of the secret, with the protocol's salt and
info ``fingerprint:<roomId>``, gives 32 bytes; bytes 0 to 3 each pick a word of
``WORDS`` and bytes 4 to 7 each pick a colour of ``COLOURS`` (modulo 8). It
depends on the secret, so someone without the link cannot compute it, and on
the room id, so one secret used for two rooms gives two fingerprints.
"""

from dataclasses import dataclass
from typing import Final, final

from securechat.peer.keys import hkdf
from securechat.peer.link import InviteLink
from securechat.peer.words import WORDS
from securechat.protocol import RoomId

FINGERPRINT_WORDS: Final = 4  # 32 bits: a mistyped link matches by chance once in 4 billion
FINGERPRINT_COLOURS: Final = 4  # 12 more bits, for the eye rather than the voice
# Colour names in protocol order (docs/protocol.md section 6); client/fingerprint.js has the same.
COLOURS: Final[tuple[str, ...]] = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
)


@final
@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A room's fingerprint: its words and colour names, in order."""

    words: tuple[str, ...]
    colours: tuple[str, ...]

    def __str__(self) -> str:
        return f"{' '.join(self.words)} ({', '.join(self.colours)})"


def room_fingerprint(secret: bytes, room_id: RoomId) -> Fingerprint:
    """The fingerprint of the room ``room_id`` with ``secret`` (32 bytes).

    Error handling: raises ``ValueError`` if the secret is not 32 bytes.
    """
    if len(secret) != 32:
        raise ValueError("the room secret must be 32 bytes")
    digest = hkdf(secret, f"fingerprint:{room_id}")
    words = tuple(WORDS[byte] for byte in digest[:FINGERPRINT_WORDS])
    colour_bytes = digest[FINGERPRINT_WORDS : FINGERPRINT_WORDS + FINGERPRINT_COLOURS]
    colours = tuple(COLOURS[byte % len(COLOURS)] for byte in colour_bytes)
    return Fingerprint(words, colours)


def link_fingerprint(link: InviteLink) -> Fingerprint:
    """The fingerprint of the room an invite link opens."""
    return room_fingerprint(link.secret, link.room_id)
