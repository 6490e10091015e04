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
# New rooms free of a proof of work (securechat/budget.py). A small instance sees a
# few new rooms an hour; these leave a class of 30 creating theirs at once unpriced.
DEFAULT_NEW_ROOMS_PER_MINUTE: Final = 10.0  # server-wide, sustained
DEFAULT_NEW_ROOMS_BURST: Final = 30  # server-wide, at once
DEFAULT_SOURCE_NEW_ROOMS_PER_MINUTE: Final = 4.0  # per source address, sustained
DEFAULT_SOURCE_NEW_ROOMS_BURST: Final = 10  # per source address, at once
# MiB of stored rooms and messages (counted, not measured on disk): a small VPS has
# 10-25 GB of disk, and 1 GiB holds some 300,000 rooms of ten short messages, or
# 2,400 rooms full of maximal ones, with room left for the OS, logs and the WAL.
DEFAULT_MAX_STORAGE_MB: Final = 1024
DEFAULT_MAX_STORED_ROOMS: Final = 100_000  # rooms and tombstones: 10 x --max-rooms, ~15 MB
DEFAULT_UNCONFIRMED_RETENTION_HOURS: Final = 24  # a link's second person comes within a day
DEFAULT_IDLE_TIMEOUT: Final = 0.0  # seconds an authenticated socket may send nothing; 0 = no cap

# Fixed bounds.
MIN_CIPHERTEXT: Final = 17  # AES-GCM: at least one byte of ciphertext plus the 16-byte tag
IV_BYTES: Final = 12  # AES-GCM's standard nonce size
MAX_SIGNAL_BYTES: Final = 1024  # decoded signal ciphertext: a profile with a 40-character name fits
AUTH_TOKEN_BYTES: Final = 32  # the HKDF-derived room access token
OUTBOX_FRAMES: Final = 64  # frames queued for one reader; a full outbox closes it (4008)
OUTBOX_HIGH_WATER: Final = 32  # queued frames that pause a room's posts; half leaves headroom
STALL_SECONDS: Final = 10.0  # above high water this long: stopped reading, not a busy server
STALL_WINDOW_SECONDS: Final = 60  # the sliding window of a room's stall budget
STALL_BUDGET_SECONDS: Final = 10.0  # posts held per window by all members; then close at once
PAUSE_TAIL_SECONDS: Final = 5.0  # a pause counts this long past its last refused post at most
STALLED_CLIENTS: Final = 64  # clientIds a room remembers closing for stalling; oldest forgotten
STALLED_MEMORY_SECONDS: Final = 600.0  # a clientId closed for stalling gets no grace for this long
INBOX_COMMANDS: Final = 256  # commands queued for one room; senders wait when it is full
ROOM_GRACE_SECONDS: Final = 5.0  # an empty room lingers this long in case someone reconnects
ABUSE_WINDOW_SECONDS: Final = 10.0  # window for counting rate-limited frames
ABUSE_THRESHOLD: Final = 100  # rate-limited frames within the window that close the socket
CLEAR_COOLDOWN_SECONDS: Final = 3.0  # one clear_history per room per this many seconds
SWEEP_INTERVAL_SECONDS: Final = 3600.0  # how often expired rooms are deleted
TOMBSTONE_DAYS: Final = 90  # a swept confirmed room's verifier stays: its link still works
ACTIVE_MARK_SECONDS: Final = 600.0  # a join marks its room active at most this often
SHUTDOWN_CLOSE_SECONDS: Final = 2.0  # time given to sockets to send their 1001 on shutdown
# After the server's close frame, how long it reads (and drops) what the peer still
# sends, waiting for the peer's close: closing a socket with unread bytes resets it,
# and a reset destroys what the peer has not read yet, the close frame included.
CLOSE_HANDSHAKE_SECONDS: Final = 1.0
# GET /readyz waits this long for the storage thread's read: a disk this slow keeps
# rooms from starting for as long, and health checks time out at 4-5 s.
READY_TIMEOUT_SECONDS: Final = 2.0

# The transport boundary (securechat/boundary.py, securechat/capacity.py).
DEFAULT_MAX_CONNECTIONS: Final = 0  # open TCP connections; 0 = derived from the descriptor limit
DEFAULT_MAX_CONNECTIONS_PER_SOURCE: Final = 64  # open WebSockets per address: a shared NAT's tabs
# TCP connections a direct peer may hold beyond its WebSockets: a browser opens up to
# six plain HTTP connections per host, and an office behind one NAT a few of those.
# Without it one address could hold every connection slot with unfinished requests.
HTTP_CONNECTIONS_PER_SOURCE: Final = 16
DESCRIPTOR_RESERVE_MIN: Final = 64  # descriptors kept from connections: database, logs, refusals
DESCRIPTOR_RESERVE_DIVISOR: Final = 8  # and at least 1/8 of the limit, for what a load adds
MAX_DESCRIPTORS: Final = 1 << 20  # an unlimited hard limit is read as this (Linux's nr_open)
REFUSALS_IN_FLIGHT: Final = 16  # over-cap connections answered 503 at once; more are just closed
REFUSAL_SECONDS: Final = 0.5  # time an over-cap connection gets to send its request and read 503
ACCEPT_LOG_INTERVAL_SECONDS: Final = 10.0  # at most one "accept failed" line this often
FAILURE_LOG_INTERVAL_SECONDS: Final = 60.0  # at most one line per kind of connection failure
FAILURE_KINDS: Final = 64  # kinds of connection failure told apart in the log; the rest are one
PONG_DEADLINE_MIN_SECONDS: Final = 1.0  # silence after a ping that closes a socket, at least
# A write the peer has not taken in this long aborts its connection (a reset). The
# room's stall rule judges a reader that stalls this long to have stopped (4008), so
# a socket stuck behind such a write goes no later than the room lets it go.
SEND_TIMEOUT_SECONDS: Final = STALL_SECONDS
