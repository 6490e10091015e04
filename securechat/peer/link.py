"""Invite links: ``<origin>/room/<roomId>#<secret>``, made locally and parsed strictly.

The secret lives only in the fragment, which browsers never send to the server;
this client never sends it either. Only ``room_id`` and the derived access token
leave the machine.
"""

import os
from dataclasses import dataclass
from typing import Final, final
from urllib.parse import urlsplit

from securechat.peer.b64 import b64url_decode, b64url_encode
from securechat.protocol import ClientId, RoomId, parse_room_id

ROOM_ID_BYTES: Final = 16  # random bytes in a new room id
SECRET_BYTES: Final = 32  # random bytes in a room secret: the HKDF input key material
DEFAULT_SERVER: Final = "http://127.0.0.1:8787"


class LinkError(ValueError):
    """The text is not a usable invite link; the message says why, in one line."""


@final
@dataclass(frozen=True, slots=True)
class InviteLink:
    """A room address and its secret.

    ``base`` is the server's origin plus any path prefix before ``/room/`` (for a
    server behind a reverse proxy at a sub-path), without a trailing slash.
    """

    base: str
    room_id: RoomId
    secret: bytes

    def __str__(self) -> str:
        return f"{self.base}/room/{self.room_id}#{b64url_encode(self.secret)}"

    def __repr__(self) -> str:
        # Never print the secret by accident (logs, tracebacks, test output).
        return f"InviteLink(base={self.base!r}, room_id={self.room_id!r}, secret=<hidden>)"

    def ws_url(self, client_id: ClientId) -> str:
        """The room's WebSocket URL for ``client_id`` (``ws`` for http, ``wss`` for https)."""
        scheme, rest = self.base.split("://", 1)
        ws_scheme = "wss" if scheme == "https" else "ws"
        return f"{ws_scheme}://{rest}/ws/{self.room_id}?client={client_id}"


def new_link(server: str = DEFAULT_SERVER) -> InviteLink:
    """A new room on ``server``: a random room id and secret, made here, sent nowhere.

    Error handling: raises ``LinkError`` if ``server`` is not an http(s) URL.
    """
    base = _base(server)
    room_id = RoomId(b64url_encode(os.urandom(ROOM_ID_BYTES)))
    return InviteLink(base, room_id, os.urandom(SECRET_BYTES))


def parse_link(text: str) -> InviteLink:
    """Parse an invite link as the browser client makes them.

    Error handling: raises ``LinkError`` for anything but an http(s) URL whose
    path ends in ``/room/<roomId>`` and whose fragment is the canonical base64url
    of exactly 32 bytes.
    """
    text = text.strip()
    path_and_origin, hash_sign, fragment = text.partition("#")
    if not hash_sign or not fragment:
        raise LinkError("the link has no secret after '#': copy the whole link")
    prefix, marker, room_text = path_and_origin.rpartition("/room/")
    if not marker:
        raise LinkError("not an invite link: expected <server>/room/<roomId>#<secret>")
    room_id = parse_room_id(room_text)
    if room_id is None:
        raise LinkError("the room id in the link is malformed")
    try:
        secret = b64url_decode(fragment)
    except ValueError:
        raise LinkError("the secret in the link is not base64url: was it cut short?") from None
    if len(secret) != SECRET_BYTES:
        raise LinkError(f"the secret in the link must be {SECRET_BYTES} bytes, not {len(secret)}")
    return InviteLink(_base(prefix), room_id, secret)


def _base(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LinkError(f"not an http(s) server URL: {url!r}")
    if parts.query or parts.fragment:
        raise LinkError(f"a server URL has no query or fragment: {url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
