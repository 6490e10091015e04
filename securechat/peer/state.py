"""Per-room identity on disk, so that one terminal keeps its clientId in a room.

One small JSON file per room and command, ``<state dir>/securechat/rooms/<roomId>.json``
for ``chat`` and ``<roomId>.send.json`` / ``<roomId>.tail.json`` for the scripted
commands, holding ``{"roomId", "clientId", "name"}``: a bot's ``send --name CI``
never renames the person chatting in that room, nor speaks as them. The state
dir is ``$XDG_STATE_HOME`` or ``~/.local/state``. The secret and the keys are
never written: the file says which rooms this user has joined and under which
id, nothing more, and it is created readable by its owner only.
"""

import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, final

import msgspec

from securechat.protocol import ClientId, RoomId, parse_client_id

CLIENT_ID_CHARS: Final = 12  # lowercase hex: 48 random bits, well inside ^[a-z0-9_-]{4,16}$


@final
@dataclass(frozen=True, slots=True)
class Identity:
    """Who this client is in one room."""

    room_id: RoomId
    client_id: ClientId
    name: str | None


class _File(msgspec.Struct, rename="camel"):
    room_id: str
    client_id: str
    name: str | None = None


def state_dir() -> Path:
    """``$XDG_STATE_HOME/securechat``, or ``~/.local/state/securechat``.

    A relative ``XDG_STATE_HOME`` is ignored, as the XDG specification says.
    """
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "securechat"


def new_client_id() -> ClientId:
    return ClientId(secrets.token_hex(CLIENT_ID_CHARS // 2))


def load_identity(
    room_id: RoomId,
    *,
    client_id: ClientId | None = None,
    name: str | None = None,
    role: str = "chat",
    directory: Path | None = None,
) -> tuple[Identity, str | None]:
    """The identity for ``room_id`` and ``role`` (the command: ``chat``, ``send``, ``tail``):
    the stored one, a new one, or the given overrides.

    An explicit ``name`` is remembered for next time; an explicit ``client_id``
    is used for this run only and is not stored.

    Error handling: never raises for a missing, unreadable or corrupt file, or an
    unwritable directory; the second item is then a one-line warning, and the
    identity lasts for this run only.
    """
    suffix = "" if role == "chat" else f".{role}"
    path = (directory or state_dir()) / "rooms" / f"{room_id}{suffix}.json"
    warning: str | None = None
    stored: Identity | None = None
    try:
        stored = _read(path, room_id)
    except FileNotFoundError:
        pass
    except (OSError, msgspec.DecodeError, ValueError):
        warning = f"ignoring the unreadable state file {path}"
    identity = stored or Identity(room_id, new_client_id(), None)
    if name is not None:
        identity = replace(identity, name=name)
    if identity != stored:
        try:
            _write(path, identity)
        except OSError as exc:
            warning = f"cannot save the room's identity in {path}: {exc.strerror or exc}"
    if client_id is not None:
        identity = replace(identity, client_id=client_id)
    return identity, warning


def _read(path: Path, room_id: RoomId) -> Identity:
    data = msgspec.json.decode(path.read_bytes(), type=_File)
    client_id = parse_client_id(data.client_id)
    if data.room_id != room_id or client_id is None:
        raise ValueError("state file does not match its room")
    return Identity(room_id, client_id, data.name)


def _write(path: Path, identity: Identity) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    body = msgspec.json.encode(_File(identity.room_id, identity.client_id, identity.name))
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(body + b"\n")
    os.replace(temporary, path)
