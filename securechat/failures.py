"""Failures of single connections, logged so that the log stays short and private.

A failure is named by its *kind*: the exception's class and the function that
raised it, e.g. ``h11._util.LocalProtocolError in h11._connection.send``. The
message is never logged, nor the traceback: both can carry what the peer sent
(a request line holds a room id). Each kind is logged at most once per
``FAILURE_LOG_INTERVAL_SECONDS``, with a count of those not shown.
"""

import logging
import time
from collections.abc import Callable, Iterator
from typing import Final, final

from securechat.limits import FAILURE_KINDS, FAILURE_LOG_INTERVAL_SECONDS

logger: Final = logging.getLogger("securechat.failures")

OTHER_KINDS: Final = "a kind past the first FAILURE_KINDS"


def leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``error``, exception groups flattened."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


def failure_kind(error: BaseException) -> str:
    """Class and raising function of ``error``: no message, no file path."""
    kind = f"{type(error).__module__}.{type(error).__qualname__}"
    tb = error.__traceback__
    if tb is None:
        return kind
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "?")
    return f"{kind} in {module}.{tb.tb_frame.f_code.co_name}"


@final
class FailureLog:
    """Logs connection failures, each kind at most once per interval.

    Resource handling: remembers at most ``FAILURE_KINDS`` kinds (a few dozen
    strings); later kinds share one entry.
    """

    __slots__ = ("_clock", "_interval", "_kinds")

    def __init__(
        self,
        interval: float = FAILURE_LOG_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (last logged, not shown since)

    def report(self, error: BaseException) -> None:
        """Log the failure (each exception in a group) unless its kind was logged just now."""
        for leaf in leaves(error):
            kind = failure_kind(leaf)
            if kind not in self._kinds and len(self._kinds) >= FAILURE_KINDS:
                kind = OTHER_KINDS
            now = self._clock()
            last = self._kinds.get(kind)
            if last is not None and now - last[0] < self._interval:
                self._kinds[kind] = (last[0], last[1] + 1)
                continue
            unshown = 0 if last is None else last[1]
            self._kinds[kind] = (now, 0)
            logger.error(
                "a connection failed and was closed; the server carries on: %s%s",
                kind,
                f" ({unshown} more of this kind not shown)" if unshown else "",
            )
