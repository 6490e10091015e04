"""The command line of the client subcommands: their arguments and how they are checked.

Options go before, between or after the positionals (``send LINK --name Bot "text"``).
"""

import argparse
from collections.abc import Sequence
from typing import Final

from securechat.peer.bounds import MAX_NAME_CHARS
from securechat.peer.link import DEFAULT_SERVER
from securechat.protocol import ClientId, parse_client_id

COMMANDS: Final = frozenset({"new", "chat", "send", "tail", "fingerprint"})
SEND_SECONDS: Final = 10.0  # ``send --timeout``'s default: a script waits no longer
MAX_SEND_SECONDS: Final = 3600.0  # ``--timeout``: an hour is already a stuck job
CHAT_HELP: Final = "commands: /help, /who, /clear, /quit"


class _AnyOrder(argparse.ArgumentParser):
    """A parser that takes options before, between or after the positionals.

    ``send LINK --name Bot "text"`` is how people type it; plain argparse binds
    every positional at its first run of them and rejects the later ``"text"``.
    """

    _inner = False  # parse_known_intermixed_args calls parse_known_args itself

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._inner:
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def _add(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    name: str,
    *,
    help: str,
    description: str,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help, description=description)
    parser.__class__ = _AnyOrder  # the subcommands share the top parser's class otherwise
    return parser


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the client subcommands to the ``securechat`` parser."""
    new = _add(
        commands,
        "new",
        help="create a room and print its invite link",
        description="Create a room: print an invite link whose secret is made here and "
        "never sent anywhere. The room exists once someone joins it.",
    )
    new.add_argument("--server", default=None, help=f"default: {DEFAULT_SERVER}")

    chat = _add(
        commands,
        "chat",
        help="join a room and chat in the terminal",
        description=f"Join the room of LINK. Type a line to send it; {CHAT_HELP}.",
    )
    _room_arguments(chat, with_name=True)

    send = _add(
        commands,
        "send",
        help="send one message and exit once the server has it",
        description="Send TEXT (or standard input, when TEXT is '-' or absent) to the "
        "room of LINK; exit 0 once the server has echoed it.",
    )
    _room_arguments(send, with_name=True)
    _as_chat(send)
    send.add_argument("text", nargs="?", default="-", metavar="TEXT")
    send.add_argument(
        "--timeout",
        type=_seconds,
        default=SEND_SECONDS,
        help="seconds to keep trying (connecting, reconnecting) before giving up "
        f"(default: {SEND_SECONDS:.0f})",
    )

    tail = _add(
        commands,
        "tail",
        help="print messages as JSON lines",
        description="Print the history, then each message as it arrives, as one JSON object "
        'a line: {"id", "from", "sentAt", "name", "text"}.',
    )
    _room_arguments(tail, with_name=False)
    _as_chat(tail)

    _add(
        commands,
        "fingerprint",
        help="print the room's fingerprint: the words and colours to compare out loud",
        description="Print the words and colours that everyone with LINK sees for its room.",
    ).add_argument("link", metavar="LINK", help="the invite link, with its #secret")


def _room_arguments(parser: argparse.ArgumentParser, *, with_name: bool) -> None:
    parser.add_argument("link", metavar="LINK", help="the invite link, with its #secret")
    parser.add_argument(
        "--client-id",
        type=_client_id,
        default=None,
        help="use this id instead of the one remembered for the room",
    )
    if with_name:
        parser.add_argument(
            "--name",
            type=_name,
            default=None,
            help=f"display name put in your messages (at most {MAX_NAME_CHARS} characters; "
            "remembered for the room)",
        )


def _as_chat(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-chat",
        action="store_true",
        help="use the identity (clientId and name) of 'chat' in this room instead of "
        "this command's own",
    )


def _client_id(text: str) -> ClientId:
    client_id = parse_client_id(text)
    if client_id is None:
        raise argparse.ArgumentTypeError("4 to 16 of a-z, 0-9, '_' and '-'")
    return client_id


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_SEND_SECONDS:
        raise argparse.ArgumentTypeError(f"more than 0, at most {MAX_SEND_SECONDS:.0f} seconds")
    return seconds


def _name(text: str) -> str:
    text = text.strip()
    if not text or len(text) > MAX_NAME_CHARS:
        raise argparse.ArgumentTypeError(f"1 to {MAX_NAME_CHARS} characters")
    return text
