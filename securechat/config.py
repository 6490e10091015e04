"""The server's settings: one frozen record, filled from the command line."""

from dataclasses import dataclass
from pathlib import Path
from typing import final

from securechat import limits


@final
@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8787
    data_dir: Path = Path("data")
    history: int = limits.DEFAULT_HISTORY
    max_participants: int = limits.DEFAULT_MAX_PARTICIPANTS
    max_rooms: int = limits.DEFAULT_MAX_ROOMS
    rate: float = limits.DEFAULT_RATE
    burst: int = limits.DEFAULT_BURST
    hello_timeout: float = limits.DEFAULT_HELLO_TIMEOUT
    retention_days: int = limits.DEFAULT_RETENTION_DAYS
    unconfirmed_retention_hours: int = limits.DEFAULT_UNCONFIRMED_RETENTION_HOURS
    max_storage_mb: int = limits.DEFAULT_MAX_STORAGE_MB
    max_stored_rooms: int = limits.DEFAULT_MAX_STORED_ROOMS
    max_ciphertext: int = limits.DEFAULT_MAX_CIPHERTEXT
    max_frame: int = limits.DEFAULT_MAX_FRAME
    max_bad_frames: int = limits.DEFAULT_MAX_BAD_FRAMES
    ping_interval: float = limits.DEFAULT_PING_INTERVAL  # seconds; 0 = no pings
    new_rooms_per_minute: float = limits.DEFAULT_NEW_ROOMS_PER_MINUTE
    new_rooms_burst: int = limits.DEFAULT_NEW_ROOMS_BURST
    source_new_rooms_per_minute: float = limits.DEFAULT_SOURCE_NEW_ROOMS_PER_MINUTE
    source_new_rooms_burst: int = limits.DEFAULT_SOURCE_NEW_ROOMS_BURST
    idle_timeout: float = limits.DEFAULT_IDLE_TIMEOUT  # seconds; 0 = no cap
    allowed_origins: tuple[str, ...] = ()
    max_connections: int = limits.DEFAULT_MAX_CONNECTIONS  # TCP; 0 = derived from RLIMIT_NOFILE
    max_connections_per_source: int = limits.DEFAULT_MAX_CONNECTIONS_PER_SOURCE  # 0 = no cap
    trusted_proxies: tuple[str, ...] = ()  # addresses or CIDR blocks whose X-Forwarded-For counts
    h2c: bool = False  # HTTP/2 over cleartext (prior knowledge or Upgrade: h2c)
    ephemeral: bool = False  # keep everything in memory: nothing on disk, gone on restart
    valkey: str = ""  # a Valkey URL: rooms kept there instead of SQLite; "" = SQLite
    workers: int = 1  # relay processes sharing the listening socket; more than 1 needs valkey
    log_level: str = "info"
    log_format: str = "text"  # or "json": one object per line (securechat/log.py)
    # HOST:PORT of the metrics listener, "" = none. The command line refuses one that is
    # not loopback unless --metrics-allow-remote.
    metrics_address: str = ""
