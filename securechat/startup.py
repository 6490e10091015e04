"""Why the server could not start, in one line with the real reason.

Start-up failures reach the command line wrapped in Trio's exception groups,
nested as deep as the nurseries they crossed. ``describe`` finds the leaves and
names the first one it knows. It never uses ``except*``: before Python 3.11.4 a
``sys.exit`` inside one left wrapped in a group, and printed a traceback.
"""

import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import final

import trio

from securechat import log as sclog
from securechat.failures import leaves
from securechat.storage import StorageError


@final
class ListenError(Exception):
    """A listening socket could not be made: the address, and the system's reason."""

    def __init__(self, address: str, error: OSError) -> None:
        super().__init__(f"cannot listen on {address}: {os_reason(error)}")
        self.address = address


def os_reason(error: OSError) -> str:
    """``address already in use``: the system's words for an error, not Python's wrapping."""
    if isinstance(error, socket.gaierror) or error.errno is None:
        text = error.strerror or str(error)
    else:
        text = os.strerror(error.errno)
    return text[:1].lower() + text[1:]


def describe(error: BaseException) -> str | None:
    """The one line for a start-up failure, or None if ``error`` is not one (a bug).

    Error handling: a group is a start-up failure only if every leaf is one of
    ``ListenError``, ``StorageError`` or ``OSError``; anything else (a bug, a
    cancellation) is left to propagate with its traceback.
    """
    found = list(leaves(error))
    if not found or not all(isinstance(e, ListenError | StorageError | OSError) for e in found):
        return None
    for kind in (ListenError, StorageError):
        for leaf in found:
            if isinstance(leaf, kind):
                return str(leaf)
    first = found[0]
    assert isinstance(first, OSError)  # noqa: S101  (checked above)
    return f"cannot start: {os_reason(first)}" + (
        f": {first.filename}" if first.filename is not None else ""
    )


def run_to_exit(main: Callable[[], Awaitable[int | None]]) -> None:
    """Run a process's ``main`` under Trio, then end the process as it says.

    Error handling: a start-up failure (``describe``) exits 1 with its one line
    in the log's format; a status other than 0 is the exit status; anything
    else propagates with its traceback.
    """
    problem, status = None, None
    try:
        status = trio.run(main)
    except (Exception, BaseExceptionGroup) as error:
        problem = describe(error)
        if problem is None:
            raise
    # Outside the except clause: nothing may wrap the exit (see the module's docstring).
    logging.shutdown()
    if problem is not None:
        sys.exit(sclog.fatal(problem))
    if status:
        sys.exit(status)
