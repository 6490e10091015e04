"""The Origin check for WebSocket handshakes (cross-site WebSocket hijacking).

A browser always sends ``Origin``; a page on another site must not be able to
open a socket into a room from a visitor's browser. Non-browser clients send no
``Origin`` and are allowed: they could forge any header anyway.
"""

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize_origin(origin: str) -> str | None:
    """``scheme://host:port`` in lower case with the port made explicit, or None."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        return None
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}:{port}"


def origin_allowed(origin: str | None, host: str | None, allowed: frozenset[str]) -> bool:
    """Whether a handshake with these ``Origin`` and ``Host`` headers may proceed.

    Args:
        origin: the Origin header, None when absent.
        host: the Host header of the request.
        allowed: extra origins, already normalized (for reverse proxies that
            rewrite Host).
    """
    if origin is None:
        return True
    normal = normalize_origin(origin)
    if normal is None:
        return False  # "null" and other opaque origins
    if normal in allowed:
        return True
    if not host:
        return False
    scheme = normal.split("://", 1)[0]
    return normalize_origin(f"{scheme}://{host}") == normal
