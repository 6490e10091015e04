"""``--valkey URL``: which Valkey to reach, how, and as whom.

Accepted: ``redis://``, ``valkey://`` (the same), ``rediss://`` (TLS) and ``unix://``,
with an optional ``user:password@`` (an ACL user) or ``:password@``, and a database
number: ``redis://host:6379/2``, ``unix:///run/valkey.sock?db=2``. Anything else is
refused in one line that never repeats the password.
"""

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    import coredis

DEFAULT_PORT: Final = 6379
MAX_DB: Final = 1_000_000  # far over Valkey's default 16 databases, still a bound
CONNECT_TIMEOUT_SECONDS: Final = 5.0
STREAM_TIMEOUT_SECONDS: Final = 10.0  # one reply; then the call fails, never hangs
_TCP: Final = {"redis": False, "valkey": False, "rediss": True}


@final
@dataclass(frozen=True, slots=True)
class ValkeyTarget:
    host: str | None = None  # None for a unix socket
    port: int = DEFAULT_PORT
    socket: str | None = None  # the unix socket's path
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def describe(self) -> str:
        """Where it points, for messages: never the credentials."""
        scheme = "rediss" if self.tls else "redis"
        place = f"unix://{self.socket}" if self.socket else f"{scheme}://{self.host}:{self.port}"
        return f"{place} db {self.db}"


def parse_valkey_url(text: str) -> ValkeyTarget:
    """The target ``text`` names; ``ValueError`` with a one-line reason otherwise."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("the Valkey URL is malformed (e.g. its port)") from None
    scheme = parts.scheme.lower()
    if scheme not in (*_TCP, "unix"):
        raise ValueError("the Valkey URL must start with redis://, rediss://, valkey:// or unix://")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if set(query) - {"db"}:
        raise ValueError("the Valkey URL takes no query parameter but db")
    if parts.fragment:
        raise ValueError("the Valkey URL takes no #fragment")
    if scheme == "unix":
        if parts.netloc.rpartition("@")[2] or not parts.path:
            raise ValueError("a unix:// Valkey URL names a socket path: unix:///path?db=N")
        return ValkeyTarget(
            socket=parts.path, db=_db(query.get("db", "0")), username=username, password=password
        )
    if not parts.hostname:
        raise ValueError("the Valkey URL names no host")
    if "db" in query and parts.path.strip("/"):
        raise ValueError("the Valkey URL gives the database twice")
    return ValkeyTarget(
        host=parts.hostname,
        port=DEFAULT_PORT if port is None else port,
        db=_db(query.get("db") or parts.path.strip("/") or "0"),
        username=username,
        password=password,
        tls=_TCP[scheme],
    )


def _db(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > MAX_DB:
        raise ValueError("the Valkey URL's database must be a number, e.g. /0")
    return int(text)


def connect(target: ValkeyTarget) -> "coredis.Redis[bytes]":
    """A client for ``target`` (not yet connected: enter it with ``async with``)."""
    import coredis

    # coredis reports each retry at INFO; the failure that counts is reported once, by us.
    logging.getLogger("coredis").setLevel(logging.WARNING)
    return coredis.Redis(
        host=target.host,
        port=target.port,
        db=target.db,
        username=target.username,
        password=target.password,
        unix_socket_path=target.socket,
        ssl=target.tls,
        # coredis's own TLS defaults check no host name: any certificate the CA
        # store trusts, for any name, would do. Require both.
        ssl_cert_reqs="required",
        ssl_check_hostname=True,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        stream_timeout=STREAM_TIMEOUT_SECONDS,
        decode_responses=False,
    )
