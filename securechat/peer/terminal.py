"""The chat's screen: incoming lines never break the line being typed.

On a terminal, ``chat`` edits its input line itself (the terminal in cbreak
mode: no echo, keys as typed, Ctrl-C still a signal). A line that arrives
meanwhile erases the input line, prints itself and draws the input line again
with what was typed so far; a line sent leaves the input line empty, so only its
formatted echo from the server shows (not the line twice). Keys: printable
text, Backspace, Ctrl-U (erase the line), Enter, Ctrl-D on an empty line (end).
From a pipe, lines are read and printed plainly.
"""

import codecs
import os
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, final

from securechat.peer.display import clean
from securechat.peer.keys import MAX_TEXT_UTF16

PROMPT: Final = "> "
_ERASE_LINE: Final = "\r\x1b[2K"  # to the line's start, then clear the whole line
_ENTER: Final = frozenset("\r\n")
_BACKSPACE: Final = frozenset("\x7f\x08")
_KILL_LINE: Final = "\x15"  # Ctrl-U
_END: Final = "\x04"  # Ctrl-D


@final
class Screen:
    """Where ``chat`` reads typed lines and prints everything else.

    ``read_line`` blocks (run it on a worker thread); ``say`` may be called from
    another thread at the same time: a lock keeps their writes whole.
    """

    def __init__(self, interactive: bool) -> None:
        self.interactive: Final = interactive
        self._lock = threading.Lock()
        self._typed = ""

    def read_line(self) -> str:
        """The next typed line with its newline, or ``""`` at the end of input."""
        if not self.interactive:
            return sys.stdin.readline()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with self._lock:
            self._draw()
        while True:
            byte = os.read(sys.stdin.fileno(), 1)
            key = decoder.decode(byte) if byte else _END
            with self._lock:
                if key in _ENTER:
                    typed, self._typed = self._typed, ""
                    self._draw()
                    return typed + "\n"
                if key == _END and not self._typed:
                    sys.stdout.write(_ERASE_LINE)
                    sys.stdout.flush()
                    return ""
                if key in _BACKSPACE:
                    self._typed = self._typed[:-1]
                elif key == _KILL_LINE:
                    self._typed = ""
                elif key and key.isprintable() and len(self._typed) < MAX_TEXT_UTF16:
                    self._typed += key
                self._draw()

    def say(self, text: str) -> None:
        """Print ``text`` as its own line, keeping a half-typed line intact below it."""
        with self._lock:
            if not self.interactive:
                print(text, flush=True)
                return
            sys.stdout.write(f"{_ERASE_LINE}{text}\n")
            self._draw()

    def _draw(self) -> None:
        sys.stdout.write(f"{_ERASE_LINE}{PROMPT}{clean(self._typed)}")
        sys.stdout.flush()


@contextmanager
def screen() -> Iterator[Screen]:
    """A ``Screen``; on a terminal, in cbreak mode until the block ends.

    Resource handling: the terminal's settings are restored on the way out,
    whatever ends the block.
    """
    fd = sys.stdin.fileno()
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        yield Screen(interactive=False)
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield Screen(interactive=True)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sys.stdout.write(_ERASE_LINE)
        sys.stdout.flush()
