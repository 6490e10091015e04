"""The proof of work a new room's first hello carries under pressure (sans-IO).

Hashcash over a per-connection challenge: the server sends 16 random bytes and a
difficulty ``bits``; the client finds a nonce of 1 to 16 bytes such that
SHA-256(challenge || nonce) starts with ``bits`` zero bits (most significant bit
of the first byte first). Finding one takes about 2**bits hashes; checking it
takes one. docs/protocol.md section 4.1 is the normative description, with test
vectors.
"""

import hashlib
import secrets
from typing import Final

CHALLENGE_BYTES: Final = 16  # per connection, random: a proof is never reusable elsewhere
MAX_NONCE_BYTES: Final = 16  # a 64-bit counter fits with room to spare; more is padding
MAX_BITS: Final = 256  # SHA-256 has no more bits; the budget caps far lower (budget.MAX_BITS)


def new_challenge() -> bytes:
    """Fresh random challenge bytes for one connection."""
    return secrets.token_bytes(CHALLENGE_BYTES)


def leading_zero_bits(digest: bytes) -> int:
    """How many zero bits ``digest`` starts with, most significant bit first."""
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def proof_holds(challenge: bytes, nonce: bytes, bits: int) -> bool:
    """Whether SHA-256(challenge || nonce) starts with at least ``bits`` zero bits.

    One hash whatever the input: the nonce is at most ``MAX_NONCE_BYTES`` (the
    decoder refuses longer ones before this is called).
    """
    if not 1 <= len(nonce) <= MAX_NONCE_BYTES:
        return False
    return leading_zero_bits(hashlib.sha256(challenge + nonce).digest()) >= bits
