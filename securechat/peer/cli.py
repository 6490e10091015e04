"""The client commands of ``securechat``: ``new``, ``chat``, ``send`` and ``tail``.

Each prints a failure as one line on stderr (``securechat: error: ...``) and
exits with status 1; 2 is a usage error, 130 an interrupt. No traceback.
"""

import argparse
import functools
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from securechat.peer.display import ALSO_CONNECTED, People, clean, json_line, line
from securechat.peer.events import (
    Challenged,
    ChatMessage,
    Disconnected,
    Presence,
    ServerError,
    Stopped,
    Unreadable,
)
from securechat.peer.keys import MAX_NAME_CHARS, check_outgoing
from securechat.peer.link import DEFAULT_SERVER, InviteLink, LinkError, new_link, parse_link
from securechat.peer.session import NotConnected, Session, open_session
from securechat.peer.state import Identity, load_identity
from securechat.peer.terminal import Screen, screen
from securechat.protocol import ClientId, parse_client_id

COMMANDS: Final = frozenset({"new", "chat", "send", "tail"})
SEND_SECONDS: Final = 10.0  # ``send --timeout``'s default: a script waits no longer
MAX_SEND_SECONDS: Final = 3600.0  # ``--timeout``: an hour is already a stuck job
FLUSH_SECONDS: Final = 10.0  # ``chat`` waits this long for echoes when stdin ends
INTERRUPTED: Final = 130  # the shell's status for a process ended by SIGINT
CHAT_HELP: Final = "commands: /help, /who, /clear, /quit"
CHAT_COMMANDS: Final = (
    "/help   this list",
    "/who    who is in the room now",
    "/clear  clear the room's history, for everyone (asks first)",
    "/quit   leave (or end the input: Ctrl-D)",
)
CONFIRM_CLEAR: Final = "* clear the room's history for everyone? type y to confirm"
SECURING: Final = "securing the room…"  # a new room on a busy server: a proof of work


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


def run(args: argparse.Namespace) -> None:
    """Run the client subcommand in ``args``; exits the process with its status."""
    status = 1
    try:
        status = _dispatch(args)
    except* (LinkError, ValueError) as group:
        status = _fail(str(group.exceptions[0]))
    except* KeyboardInterrupt:  # before Trio runs, or between its runs
        status = INTERRUPTED
    except* BrokenPipeError:  # ``securechat tail LINK | head`` ends like this
        status = 0
    except* OSError as group:
        status = _fail(str(group.exceptions[0]))
    sys.exit(status)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "new":
        if args.server is None:
            _note(f"no --server given: the link is for {DEFAULT_SERVER}")
        print(new_link(args.server or DEFAULT_SERVER), flush=True)
        return 0
    link = parse_link(args.link)
    role = "chat" if getattr(args, "as_chat", False) else args.command
    identity, warning = load_identity(
        link.room_id, client_id=args.client_id, name=getattr(args, "name", None), role=role
    )
    if warning:
        print(f"securechat: warning: {warning}", file=sys.stderr, flush=True)
    match args.command:
        case "chat":
            return _run(functools.partial(_chat, link, identity))
        case "send":
            text = (sys.stdin.read() if args.text == "-" else args.text).rstrip("\n")
            check_outgoing(text, identity.name)  # before connecting: a usage error
            return _run(functools.partial(_send, link, identity, text, args.timeout))
        case _:
            return _run(functools.partial(_tail, link, identity))


def _fail(reason: str) -> int:
    print(f"securechat: error: {reason}", file=sys.stderr, flush=True)
    return 1


def _run(main: Callable[[], Awaitable[int]]) -> int:
    """``trio.run(main)``, where SIGINT cancels ``main`` and gives 130."""

    async def interruptible() -> int:
        status = INTERRUPTED
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                async def body() -> None:
                    nonlocal status
                    status = await main()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                nursery.start_soon(body)
        return status

    return trio.run(interruptible)


def _say(text: str) -> None:
    print(text, flush=True)


async def _chat(link: InviteLink, identity: Identity) -> int:
    with screen() as terminal:
        return await _chat_on(terminal, link, identity)


async def _chat_on(terminal: Screen, link: InviteLink, identity: Identity) -> int:
    terminal.say(f"* joining room {link.room_id} as {identity.client_id}; {CHAT_HELP}")
    people = People(identity.client_id, identity.name)
    status = 0
    async with (
        # A person chatting says who they are, even without a name (a page then shows
        # no stale one); ``send`` and ``tail`` only when they have a name.
        open_session(link, identity.client_id, name=identity.name, announce=True) as (
            session,
            events,
        ),
        trio.open_nursery() as nursery,
    ):

        async def show() -> None:
            nonlocal status
            async for event in events:
                if isinstance(event, Stopped):
                    status = _fail(clean(event.reason))
                    break
                if isinstance(event, Challenged):
                    _note(SECURING)
                people.learn(event)
                text = line(event, session.client_id, people)
                if text is not None:
                    terminal.say(text)
            nursery.cancel_scope.cancel()

        async def type_lines() -> None:
            await _read_lines(session, people, terminal)
            nursery.cancel_scope.cancel()

        nursery.start_soon(show)
        nursery.start_soon(type_lines)
    return status


async def _read_lines(session: Session, people: People, terminal: Screen) -> None:
    """Send each line of stdin until ``/quit`` or its end, then wait for the echoes."""
    confirming = False  # the line after ``/clear`` is its answer
    while True:
        # A thread, not an FdStream: making stdin non-blocking would change it for
        # every process sharing the terminal. Abandoned on cancellation.
        typed = await trio.to_thread.run_sync(terminal.read_line, abandon_on_cancel=True)
        if not typed:
            break
        command = typed.strip()
        if confirming:
            confirming = False
            if command.lower() not in ("y", "yes"):
                terminal.say("* the history was kept")
                continue
            try:
                await session.clear_history()
            except NotConnected as exc:
                terminal.say(f"! {exc}")
        elif command == "/quit":
            return
        elif command == "/clear":
            confirming = True
            terminal.say(CONFIRM_CLEAR)
        elif command == "/help":
            for entry in CHAT_COMMANDS:
                terminal.say(f"* {entry}")
        elif command == "/who":
            terminal.say(f"* here: {people.labels(session.conversation.participants) or 'nobody'}")
        elif command.startswith("/") and " " not in command:
            terminal.say(f"! unknown command {command}; {CHAT_HELP}")
        elif command:
            try:
                await session.send_text(typed.rstrip("\n"))
            except ValueError as exc:
                terminal.say(f"! {exc}")
    # At the end of a pipe, stay until connected (so a refusal is reported and the
    # history shown) and until the server has everything that was typed.
    with trio.move_on_after(FLUSH_SECONDS) as waiting:
        await session.connected.wait()
        await session.wait_all_echoed()
    if waiting.cancelled_caught:
        terminal.say(f"! {session.conversation.pending} message(s) may not have been delivered")


async def _send(link: InviteLink, identity: Identity, text: str, give_up_after: float) -> int:
    """Send ``text``; give up after ``give_up_after`` seconds with one line saying why.

    A lost connection is retried quietly meanwhile: a script's log gets one line,
    not one a retry.
    """
    last = "no answer"
    with trio.move_on_after(give_up_after):
        async with open_session(
            link, identity.client_id, name=identity.name, announce=identity.name is not None
        ) as (session, events):
            mid = await session.send_text(text)
            async for event in events:
                match event:
                    case ChatMessage(own=True) if event.mid == mid:
                        return 0
                    case Stopped(reason=reason):
                        return _fail(reason)
                    case ServerError():
                        _note(line(event, session.client_id))
                    case Disconnected(reason=reason):
                        last = clean(reason)
                    case Challenged():
                        _note(SECURING)
                    case _:
                        pass
    return _fail(f"the message was not delivered within {give_up_after:g} s ({last})")


async def _tail(link: InviteLink, identity: Identity) -> int:
    people = People(identity.client_id, identity.name)
    async with open_session(
        link, identity.client_id, name=identity.name, announce=identity.name is not None
    ) as (session, events):
        async for event in events:
            people.learn(event)
            match event:
                case ChatMessage():
                    _say(json_line(event, people.name(event.sender)))
                case Presence(event="also_connected"):
                    _note(ALSO_CONNECTED)
                case Unreadable(id=message_id, sender=sender):
                    _note(f"message {message_id} from {clean(sender)} could not be decrypted")
                case Stopped(reason=reason):
                    return _fail(reason)
                case ServerError() | Disconnected():
                    _note(line(event, session.client_id))
                case Challenged():
                    _note(SECURING)
                case _:
                    pass
    return 0


def _note(text: str | None) -> None:
    if text:
        print(f"securechat: {text.removeprefix('! ')}", file=sys.stderr, flush=True)
