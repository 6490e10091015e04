"""securechat: a relay for end-to-end-encrypted chat rooms that never sees a key."""

from importlib import metadata

try:
    # The installed distribution's version: what pip, the image and --version agree on.
    __version__ = metadata.version("securechat")
except metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
