"""``--valkey URL``: which Valkey to reach, how, and as whom.

Accepted: ``redis://``, ``valkey://`` (the same), ``rediss://`` (TLS) and ``unix://``,
with an optional ``user:password@`` (an ACL user) or ``:password@``, and a database
number: ``redis://host:6379/2``, ``unix:///run/valkey.sock?db=2``.

Sentinel: ``redis+sentinel://[user:password@]host[:port][,host[:port]...]/SERVICE[/DB]``,
``valkey+sentinel://`` (the same) and ``rediss+sentinel://`` (TLS to the sentinels and
to the primary). The hosts are sentinels (port 26379 unless given); SERVICE is the name
they monitor (``sentinel monitor SERVICE ...``). The credentials are the primary's (and
its replicas', as ``masterauth``/``sentinel auth-pass`` expect them the same); a
sentinel that wants its own password (``requirepass`` in sentinel.conf) gets it as
``?sentinel_password=...``, percent-encoded. The client asks a sentinel for the
primary at every new connection and checks its ``ROLE``, so after a failover it
reconnects to the promoted replica by itself.

Anything else is refused in one line that never repeats a password.
"""

import re
from dataclasses import dataclass, field
from typing import Final, final
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_PORT: Final = 6379
DEFAULT_SENTINEL_PORT: Final = 26379
MAX_DB: Final = 1_000_000  # far over Valkey's default 16 databases, still a bound
MAX_SENTINELS: Final = 16  # deployments run 3 or 5; each is asked in turn when one is down
CONNECT_TIMEOUT_SECONDS: Final = 5.0
STREAM_TIMEOUT_SECONDS: Final = 10.0  # one reply; then the call fails, never hangs
_TCP: Final = {"redis": False, "valkey": False, "rediss": True}
_SENTINEL: Final = {"redis+sentinel": False, "valkey+sentinel": False, "rediss+sentinel": True}
# Sentinel takes any name without spaces; this keeps it to what fits in a URL unescaped.
_SERVICE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@final
@dataclass(frozen=True, slots=True)
class ValkeyTarget:
    host: str | None = None  # None for a unix socket or Sentinel
    port: int = DEFAULT_PORT
    socket: str | None = None  # the unix socket's path
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    sentinels: tuple[tuple[str, int], ...] = ()  # (host, port) of each sentinel
    service: str | None = None  # the primary's name in Sentinel
    sentinel_password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """Where it points, for messages: never the credentials."""
        if self.sentinels:
            scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
            places = ",".join(_host_port(host, port) for host, port in self.sentinels)
            return f"{scheme}://{places} service {self.service} db {self.db}"
        scheme = "rediss" if self.tls else "redis"
        place = f"unix://{self.socket}" if self.socket else f"{scheme}://{self.host}:{self.port}"
        return f"{place} db {self.db}"


def parse_valkey_url(text: str) -> ValkeyTarget:
    """The target ``text`` names; ``ValueError`` with a one-line reason otherwise."""
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme in _SENTINEL:
        return _parse_sentinel_url(text, tls=_SENTINEL[scheme])
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("the Valkey URL is malformed (e.g. its port)") from None
    scheme = parts.scheme.lower()
    if scheme not in (*_TCP, "unix"):
        raise ValueError(
            "the Valkey URL must start with redis://, rediss://, valkey://, unix://"
            " or redis+sentinel://"
        )
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


def _parse_sentinel_url(text: str, *, tls: bool) -> ValkeyTarget:
    # urlsplit cannot read a list of hosts: split the authority by hand, then read
    # each host:port (and the credentials) as an authority of its own.
    rest = text.partition("://")[2]
    rest, hash_sign, _ = rest.partition("#")
    if hash_sign:
        raise ValueError("the Valkey URL takes no #fragment")
    rest, _, query_text = rest.partition("?")
    authority, slash, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    query = parse_qsl(query_text, keep_blank_values=True)
    if {name for name, _ in query} - {"sentinel_password"} or len(query) > 1:
        raise ValueError("a Sentinel Valkey URL takes no query parameter but sentinel_password")
    sentinel_password = unquote(query[0][1]) if query and query[0][1] else None
    username = password = None
    if at:
        name, colon, secret = userinfo.partition(":")
        username = unquote(name) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_sentinel(place) for place in hosts.split(","))
    if len(sentinels) > MAX_SENTINELS:
        raise ValueError(f"a Sentinel Valkey URL names at most {MAX_SENTINELS} sentinels")
    service, _, db = path.partition("/")
    if not slash or not _SERVICE.fullmatch(service):
        raise ValueError(
            "a Sentinel Valkey URL names its service after the hosts: "
            "redis+sentinel://host:26379/SERVICE/DB"
        )
    if "/" in db:
        raise ValueError("a Sentinel Valkey URL ends with /SERVICE or /SERVICE/DB")
    return ValkeyTarget(
        host=None,
        db=_db(db or "0"),
        username=username,
        password=password,
        tls=tls,
        sentinels=sentinels,
        service=service,
        sentinel_password=sentinel_password,
    )


def _sentinel(place: str) -> tuple[str, int]:
    if not place or "@" in place:
        raise ValueError("a Sentinel Valkey URL lists its sentinels as host:port,host:port")
    try:
        parts = urlsplit(f"//{place}")
        port = parts.port
    except ValueError:
        raise ValueError("the Valkey URL is malformed (e.g. its port)") from None
    if not parts.hostname:
        raise ValueError("a Sentinel Valkey URL lists its sentinels as host:port,host:port")
    return parts.hostname, DEFAULT_SENTINEL_PORT if port is None else port


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _db(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > MAX_DB:
        raise ValueError("the Valkey URL's database must be a number, e.g. /0")
    return int(text)
