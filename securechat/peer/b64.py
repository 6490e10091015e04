"""Base64url without padding, decoded strictly: one byte string, one spelling."""

import base64
import binascii
import re
from typing import Final

_ALPHABET: Final = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """Encode ``data`` as base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode canonical unpadded base64url.

    Error handling: raises ``ValueError`` for padding, characters outside the
    alphabet, an impossible length, or non-zero trailing bits (a second spelling
    of the same bytes), so that a value has exactly one accepted text form.
    """
    if not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise ValueError("not base64url without padding") from None
    if b64url_encode(raw) != text:
        raise ValueError("not canonical base64url")
    return raw
