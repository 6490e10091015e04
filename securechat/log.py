"""Logging that cannot leak: rooms appear only as a short hash, and nothing else of a peer.

No IP addresses, tokens, ciphertexts or client ids are ever passed to a logger.
Both formats carry the same records and nothing more: ``text`` (``securechat:
LEVEL: message``) and ``json``, one object per line with ``time``, ``level``,
``logger`` and ``message`` (and ``exception``, a traceback, where the text format
prints one). The process's own lines (where it serves, that it stopped, why it
could not start) go out in the same format through ``announce`` and ``fatal``.
"""

import datetime
import hashlib
import json
import logging
import sys
import time
from typing import Final, final

logger: Final = logging.getLogger("securechat")

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "securechat: %(levelname)s: %(message)s"

_format = "text"  # set once by ``configure``, before the server starts


def room_tag(room_id: str) -> str:
    """A short, stable, one-way name for a room in logs (room ids are 128-bit random)."""
    return hashlib.sha256(room_id.encode("utf-8")).hexdigest()[:10]


@final
class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: newlines in a message are escaped."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields)


def configure(level: str, log_format: str = "text") -> None:
    """Send every record to stderr, at ``level`` and above, in ``log_format``."""
    global _format  # one process, one log format, chosen at start
    _format = log_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level.upper(), handlers=[handler])


def announce(message: str) -> None:
    """Write one of the process's own lines (where it serves, that it stopped), whatever
    the log level: ``securechat: message`` on stdout, or a JSON line."""
    print(_line("info", message), flush=True)


def fatal(message: str) -> str:
    """The line for an error that ends the process (``sys.exit`` writes it to stderr)."""
    return _line("error", message, prefix="securechat: error: ")


def _line(level: str, message: str, prefix: str = "securechat: ") -> str:
    if _format != "json":
        return prefix + message
    fields = {
        "time": _timestamp(time.time()),
        "level": level,
        "logger": "securechat",
        "message": message,
    }
    return json.dumps(fields)


def _timestamp(created: float) -> str:
    """UTC, to the millisecond: ``2026-12-01T14:58:03.123Z``."""
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
