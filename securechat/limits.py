"""Every bound the server enforces, with its unit and the reason for its default.

The command line can change the ones in ``Config``; the rest are fixed here.
"""

from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB

# Configurable defaults (see config.Config and ``securechat serve --help``).
DEFAULT_HISTORY: Final = 10  # messages kept per room: the original design's figure
DEFAULT_MAX_PARTICIPANTS: Final = 50  # connections per room: a consultation, not a broadcast
DEFAULT_MAX_ROOMS: Final = 10_000  # rooms with live connections at once
DEFAULT_RATE: Final = 5.0  # messages per second per connection, sustained
DEFAULT_BURST: Final = 20  # messages a connection may send at once after a pause
DEFAULT_HELLO_TIMEOUT: Final = 10.0  # seconds a new socket has to authenticate
DEFAULT_RETENTION_DAYS: Final = 30  # days an inactive room's history is kept; 0 = forever
DEFAULT_MAX_CIPHERTEXT: Final = 32 * KIB  # decoded bytes: a few thousand characters encrypted
DEFAULT_MAX_FRAME: Final = 64 * KIB  # a maximal ciphertext, base64url'd, in its envelope fits
DEFAULT_MAX_BAD_FRAMES: Final = 10  # bad frames per connection before it is closed
DEFAULT_PING_INTERVAL: Final = (
    25.0  # seconds; keeps idle sockets up through proxies cutting at 30-60 s
)
# MiB of stored rooms and messages (counted, not measured on disk): a small VPS has
# 10-25 GB of disk, and 1 GiB holds some 300,000 rooms of ten short messages, or
# 2,400 rooms full of maximal ones, with room left for the OS, logs and the WAL.
DEFAULT_MAX_STORAGE_MB: Final = 1024
DEFAULT_MAX_STORED_ROOMS: Final = 100_000  # rooms and tombstones: 10 x --max-rooms, ~15 MB
DEFAULT_UNCONFIRMED_RETENTION_HOURS: Final = 24  # a link's second person comes within a day

# Fixed bounds.
MIN_CIPHERTEXT: Final = 17  # AES-GCM: at least one byte of ciphertext plus the 16-byte tag
IV_BYTES: Final = 12  # AES-GCM's standard nonce size
AUTH_TOKEN_BYTES: Final = 32  # the HKDF-derived room access token
OUTBOX_FRAMES: Final = 64  # frames queued for one reader; a full outbox closes it (4008)
OUTBOX_HIGH_WATER: Final = 32  # queued frames that pause a room's posts; half leaves headroom
STALL_SECONDS: Final = 10.0  # above high water this long: stopped reading, not a busy server
INBOX_COMMANDS: Final = 256  # commands queued for one room; senders wait when it is full
ROOM_GRACE_SECONDS: Final = 5.0  # an empty room lingers this long in case someone reconnects
ABUSE_WINDOW_SECONDS: Final = 10.0  # window for counting rate-limited frames
ABUSE_THRESHOLD: Final = 100  # rate-limited frames within the window that close the socket
CLEAR_COOLDOWN_SECONDS: Final = 3.0  # one clear_history per connection per this many seconds
SWEEP_INTERVAL_SECONDS: Final = 3600.0  # how often expired rooms are deleted
TOMBSTONE_DAYS: Final = 90  # a swept confirmed room's verifier stays: its link still works
ACTIVE_MARK_SECONDS: Final = 600.0  # a join marks its room active at most this often
SHUTDOWN_CLOSE_SECONDS: Final = 2.0  # time given to sockets to send their 1001 on shutdown
