"""``python -m securechat`` is the same as the ``securechat`` command."""

from securechat.cli import main

if __name__ == "__main__":
    main()
