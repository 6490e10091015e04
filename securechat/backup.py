"""``securechat backup``: a consistent copy of the database, taken while the server serves.

SQLite's online backup API copies the file page by page inside one read
transaction: in WAL mode that is a snapshot of the last commit before it began,
and the server's commits go on beside it (readers and the writer do not block
each other). Every message the server had relayed by then is in the copy, since
a message is relayed only after its commit.

The copy is written to a temporary file (owner-only, like the database) next to
its destination, switched to a rollback journal so that it is one self-contained
file, checked (``PRAGMA quick_check``), flushed to disk, and only then put in
place: an existing file is never replaced unless asked, and a failed backup
leaves no partial file behind. ``-`` writes the copy to standard output instead,
by way of a temporary file in the data dir.
"""

import argparse
import contextlib
import os
import shutil
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, final

from securechat.sqlite import DB_NAME
from securechat.startup import os_reason

# How long to wait for a lock on the database before giving up on the backup: the
# server's truncating checkpoint holds one briefly after a clear or a sweep.
BUSY_TIMEOUT_SECONDS: Final = 10.0
STDOUT: Final = "-"
TEMPORARY_PREFIX: Final = ".securechat-backup-"


@final
class BackupError(Exception):
    """Why the backup was not made, in one line."""


@final
@dataclass(frozen=True, slots=True)
class Summary:
    """What the copy holds: counts only (room ids are nobody's business)."""

    rooms: int
    messages: int
    size: int  # bytes


def add_command(commands: "argparse._SubParsersAction[Any]") -> None:
    """Add ``backup`` to the ``securechat`` parser."""
    parser = commands.add_parser(
        "backup",
        help="copy the database to a file, consistently, while the server runs",
        description="Copy the server's database to PATH (- for standard output) with "
        "SQLite's online backup: a consistent copy, taken while the server serves. The "
        "copy is owner-only (0600); restore it as docs/deploy.md says.",
    )
    parser.set_defaults(command_parser=parser)
    parser.add_argument("path", metavar="PATH", help="the backup file to write, or -")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the server's database is, as for serve (env: SECURECHAT_DATA_DIR; "
        "default: data)",
    )
    parser.add_argument("--force", action="store_true", help="replace PATH if it exists")


def run(data_dir: Path, target: str, *, force: bool) -> None:
    """The command: back up, then say what the copy holds; one line and status 1 if not."""
    try:
        summary = back_up(data_dir, target, force=force)
    except BackupError as exc:
        sys.exit(f"securechat: error: {exc}")
    # Beside the copy, not in it, when the copy goes to standard output.
    rooms = f"{summary.rooms} room" + ("" if summary.rooms == 1 else "s")
    messages = f"{summary.messages} message" + ("" if summary.messages == 1 else "s")
    print(
        f"securechat: backed up {rooms} and {messages} ({summary.size} bytes) to {target}",
        file=sys.stderr if target == STDOUT else sys.stdout,
    )


def back_up(data_dir: Path, target: str, *, force: bool = False) -> Summary:
    """Copy ``data_dir``'s database to the file ``target`` (``-``: standard output).

    Error handling: raises ``BackupError`` for a missing database, an existing
    ``target`` (unless ``force``), a terminal as standard output, and any error
    reading the database or writing the copy. The temporary file goes either way.
    """
    source = data_dir / DB_NAME
    if not source.is_file():
        raise BackupError(f"no database at {source} (is --data-dir right?)")
    destination = None if target == STDOUT else Path(target)
    if destination is None and sys.stdout.isatty():
        raise BackupError("standard output is a terminal: redirect it to a file, or name one")
    if destination is not None and destination.is_dir():
        raise BackupError(f"{destination} is a directory: name the backup file")
    if destination is not None and destination.exists() and not force:
        raise BackupError(f"{destination} exists (--force replaces it)")
    work_dir = data_dir if destination is None else destination.absolute().parent
    try:
        fd, name = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=".sqlite3", dir=work_dir)
    except OSError as exc:
        raise BackupError(f"cannot write in {work_dir}: {os_reason(exc)}") from exc
    os.close(fd)  # made 0600: the copy holds what the database holds
    temporary = Path(name)
    try:
        summary = _copy(source, temporary)
        if destination is None:
            _stream(temporary, sys.stdout.buffer)
        else:
            _place(temporary, destination, force=force)
    finally:
        temporary.unlink(missing_ok=True)
    return summary


def _copy(source: Path, temporary: Path) -> Summary:
    try:
        # mode=rw: never creates a database where there is none. Nothing is written
        # to it; the last connection to close (ours, if the server is stopped)
        # checkpoints and removes the WAL, as the server itself would.
        db = sqlite3.connect(
            source.absolute().as_uri() + "?mode=rw",
            uri=True,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_SECONDS,
        )
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source}: {exc}") from exc
    try:
        copy = sqlite3.connect(temporary, isolation_level=None)
        try:
            db.backup(copy)  # all pages in one step: one read transaction, one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
            (check,) = copy.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise BackupError(f"the copy of {source} fails its check: {check}")
            (rooms,) = copy.execute("SELECT count(*) FROM rooms").fetchone()
            (messages,) = copy.execute("SELECT count(*) FROM messages").fetchone()
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {source}: {exc}") from exc
    except OSError as exc:
        raise BackupError(f"cannot write {temporary}: {os_reason(exc)}") from exc
    finally:
        db.close()
    with open(temporary, "rb") as written:
        os.fsync(written.fileno())
        size = os.fstat(written.fileno()).st_size
    return Summary(rooms=rooms, messages=messages, size=size)


def _place(temporary: Path, destination: Path, *, force: bool) -> None:
    """Give the checked copy its name: atomically, and never over a file unless ``force``."""
    try:
        if force:
            os.replace(temporary, destination)
        else:
            try:
                os.link(temporary, destination)  # fails if the name was taken meanwhile
            except FileExistsError:
                raise BackupError(f"{destination} exists (--force replaces it)") from None
            except OSError:
                # A file system without hard links (FAT): checked, then renamed.
                if destination.exists():
                    raise BackupError(f"{destination} exists (--force replaces it)") from None
                os.rename(temporary, destination)
        _sync_directory(destination.absolute().parent)
    except OSError as exc:
        raise BackupError(f"cannot write {destination}: {os_reason(exc)}") from exc


def _stream(temporary: Path, out: BinaryIO) -> None:
    try:
        with open(temporary, "rb") as copy:
            shutil.copyfileobj(copy, out)
        out.flush()
    except OSError as exc:
        raise BackupError(f"cannot write to standard output: {os_reason(exc)}") from exc


def _sync_directory(directory: Path) -> None:
    """Make the new name durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
