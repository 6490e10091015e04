"""securechat: a relay for end-to-end-encrypted chat rooms that never sees a key."""

__version__ = "0.1.0"
