"""Bounds on what a person gives the client, in a module that imports nothing.

The command line states them in its help and checks its arguments against them
without loading the cryptography behind the client, which the server's install
does not carry (the ``client`` extra).
"""

from typing import Final

MAX_NAME_CHARS: Final = 40  # a display name, in characters
