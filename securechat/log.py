"""Logging that cannot leak: rooms appear only as a short hash, and nothing else of a peer.

No IP addresses, tokens, ciphertexts or client ids are ever passed to a logger.
"""

import hashlib
import logging
from typing import Final

logger: Final = logging.getLogger("securechat")


def room_tag(room_id: str) -> str:
    """A short, stable, one-way name for a room in logs (room ids are 128-bit random)."""
    return hashlib.sha256(room_id.encode("utf-8")).hexdigest()[:10]


def configure(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="securechat: %(levelname)s: %(message)s")
