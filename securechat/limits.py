"""Every bound the server enforces, with its unit and the reason for its default.

The command line can change the ones in ``Config``; the rest are fixed here.
"""

from typing import Final

KIB: Final = 1024

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
DEFAULT_IDLE_TIMEOUT: Final = 0.0  # seconds an authenticated socket may send nothing; 0 = no cap

# Fixed bounds.
MIN_CIPHERTEXT: Final = 17  # AES-GCM: at least one byte of ciphertext plus the 16-byte tag
IV_BYTES: Final = 12  # AES-GCM's standard nonce size
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
SHUTDOWN_CLOSE_SECONDS: Final = 2.0  # time given to sockets to send their 1001 on shutdown
