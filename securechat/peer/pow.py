"""The client's side of the proof of work: find a nonce for a server's challenge.

docs/protocol.md section 4.1: a nonce such that SHA-256(challenge || nonce)
starts with ``bits`` zero bits. The nonces tried are a counter, 8 bytes little
endian, from 0. ``solve_some`` is pure and bounded, so the session can run it in
slices and stay responsive (and cancellable) while it works.
"""

import hashlib
from typing import Final

NONCE_BYTES: Final = 8  # a 64-bit counter: never exhausted at any difficulty we solve
MAX_CHALLENGE_BITS: Final = 32  # a server asking for more is refused: hours of work
SLICE_HASHES: Final = 20_000  # hashes per slice: some 20-50 ms of CPU between checkpoints


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def proof_holds(challenge: bytes, nonce: bytes, bits: int) -> bool:
    return leading_zero_bits(hashlib.sha256(challenge + nonce).digest()) >= bits


def solve_some(challenge: bytes, bits: int, start: int, count: int) -> bytes | None:
    """The first nonce in ``start .. start + count - 1`` that holds, or None."""
    # Whole zero bytes are compared as bytes, the rest as one masked byte: no int
    # conversion per hash. The prefix is hashed once and copied.
    whole, rest = divmod(bits, 8)
    zeros = bytes(whole)
    limit = 0x100 >> rest  # the byte after the zero bytes must be below this
    prefix = hashlib.sha256(challenge)
    for counter in range(start, start + count):
        nonce = counter.to_bytes(NONCE_BYTES, "little")
        h = prefix.copy()
        h.update(nonce)
        digest = h.digest()
        if digest[:whole] == zeros and (rest == 0 or digest[whole] < limit):
            return nonce
    return None
