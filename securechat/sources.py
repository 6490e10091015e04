"""Where a connection comes from, and how many WebSockets each source holds open.

A connection's *source* is an IP address as a string, or ``None`` when it is
unknown. The direct peer is the source, unless the peer is a trusted proxy
(``--trusted-proxy``; none by default, loopback included): then the source is
the last ``X-Forwarded-For`` entry, the one that proxy appended, or ``None``
when there is none or it is not an address. Earlier entries were written by
the client and prove nothing. Sources live in memory only: they are never
logged or stored.
"""

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias, final

IPV6_SOURCE_PREFIX: Final = 64  # bits: one IPv6 subscriber gets a /64, so it counts once

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    """Parse addresses or CIDR blocks (``10.0.0.1``, ``10.0.0.0/8``, ``::1``).

    Error handling: raises ``ValueError`` naming the first text that is neither.
    """
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR block: {text!r}") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:192.0.2.1 is 192.0.2.1 on a dual-stack socket
    return address


def source_of(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str | None:
    """The source of a connection from ``peer`` with these ``X-Forwarded-For`` values.

    ``forwarded_for`` holds every X-Forwarded-For header line in order. Trusting
    its last entry is safe only because ``peer`` is a proxy the operator named:
    that proxy appended it, and it saw the address it wrote.
    """
    address = None if peer is None else _address(peer)
    if address is None:
        return None
    if not any(address in network for network in trusted):
        return str(address)
    entries = [entry for line in forwarded_for for entry in line.split(",")]
    if not entries:
        return None
    forwarded = _address(entries[-1])
    return None if forwarded is None else str(forwarded)


def source_key(source: str) -> str:
    """What the per-source cap counts: the address, or its /64 for IPv6."""
    address = ipaddress.ip_address(source)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_SOURCE_PREFIX), strict=False))
    return source


@final
@dataclass(frozen=True, slots=True)
class Admission:
    """A connection ``SourceLimiter`` let in: what to give back when it ends."""

    key: str | None  # the counted source key; None when nothing was counted


@final
@dataclass(frozen=True, slots=True)
class SourceStatistics:
    sources: int  # sources with at least one open WebSocket
    connections: int  # WebSockets counted (those with a known source)
    refused: int  # WebSockets refused for their source's cap since start


@final
class SourceLimiter:
    """Counts open WebSockets per source and refuses those over ``per_source``.

    Resource handling: the dict holds only sources with an open connection, so it
    never outgrows the connections themselves. ``per_source`` 0 turns the cap
    off (nothing is counted). A connection whose source is unknown is not
    counted: the global connection cap still bounds it.
    """

    __slots__ = ("_counts", "_per_source", "_refused")

    def __init__(self, per_source: int) -> None:
        self._per_source = per_source
        self._counts: dict[str, int] = {}
        self._refused = 0

    def try_admit(self, source: str | None) -> Admission | None:
        """Count a new connection from ``source``; None if its source is at the cap."""
        if self._per_source <= 0 or source is None:
            return Admission(None)
        key = source_key(source)
        count = self._counts.get(key, 0)
        if count >= self._per_source:
            self._refused += 1
            return None
        self._counts[key] = count + 1
        return Admission(key)

    def release(self, admission: Admission) -> None:
        """Uncount a connection ``try_admit`` admitted; call once, when it ends."""
        if admission.key is None:
            return
        count = self._counts[admission.key] - 1
        if count:
            self._counts[admission.key] = count
        else:
            del self._counts[admission.key]

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(len(self._counts), sum(self._counts.values()), self._refused)
