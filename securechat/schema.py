"""The SQLite file: its schema, how it migrates, and how a connection to it is opened."""

import sqlite3
from pathlib import Path
from typing import Final

from securechat.storage import StorageError

SCHEMA_VERSION: Final = 2
# Each time the WAL starts over, SQLite cuts the file back to this size; without it
# a burst of writes leaves a WAL that never shrinks while the server runs.
JOURNAL_SIZE_LIMIT_BYTES: Final = 16 * 1024 * 1024

_SCHEMA: Final = """
CREATE TABLE rooms (
    room_id      TEXT PRIMARY KEY,
    verifier     BLOB,
    last_id      INTEGER NOT NULL DEFAULT 0,
    last_active  INTEGER NOT NULL,
    creator      TEXT,
    confirmed_at INTEGER,
    swept_at     INTEGER
) WITHOUT ROWID;
CREATE TABLE messages (
    room_id    TEXT NOT NULL,
    id         INTEGER NOT NULL,
    sender     TEXT NOT NULL,
    sent_at    INTEGER NOT NULL,
    iv         TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    PRIMARY KEY (room_id, id)
) WITHOUT ROWID;
"""

# Version 1 had no lifecycle columns. Its rooms count as confirmed: nothing says they
# are probes, and treating them as such would delete people's rooms within a day.
_MIGRATE_FROM_1: Final = """
ALTER TABLE rooms ADD COLUMN creator TEXT;
ALTER TABLE rooms ADD COLUMN confirmed_at INTEGER;
ALTER TABLE rooms ADD COLUMN swept_at INTEGER;
UPDATE rooms SET confirmed_at = last_active;
"""


def open_database(path: Path) -> sqlite3.Connection:
    """A connection to the database file in WAL mode, with the settings both connections share."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    # Explicitly, whatever the distribution compiled in: deleted rows are zeroed.
    db.execute("PRAGMA secure_delete=ON")
    db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
    return db


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Create the schema, or bring a version 1 file to this version in place.

    Error handling: a file of another version raises ``StorageError``.
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'rooms'").fetchone()[0]
    if version == 0 and tables:
        version = 1  # made by version 1 code that stopped before it set the version
    if version not in (0, 1, SCHEMA_VERSION):
        raise StorageError(f"{path} has schema version {version}, expected {SCHEMA_VERSION}")
    if version == SCHEMA_VERSION:
        return
    script = _SCHEMA if version == 0 else _MIGRATE_FROM_1
    # One transaction: a crash leaves the old version whole.
    db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={SCHEMA_VERSION};\nCOMMIT;")
