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
    max_ciphertext: int = limits.DEFAULT_MAX_CIPHERTEXT
    max_frame: int = limits.DEFAULT_MAX_FRAME
    max_bad_frames: int = limits.DEFAULT_MAX_BAD_FRAMES
    ping_interval: float = limits.DEFAULT_PING_INTERVAL  # seconds; 0 = no pings
    idle_timeout: float = limits.DEFAULT_IDLE_TIMEOUT  # seconds; 0 = no cap
    allowed_origins: tuple[str, ...] = ()
    ephemeral: bool = False  # keep everything in memory: nothing on disk, gone on restart
    log_level: str = "info"
