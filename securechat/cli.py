"""The ``securechat`` command line."""

import argparse
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn, cast

import trio

from securechat import __version__, backup, limits
from securechat import log as sclog
from securechat.config import Config
from securechat.metrics import is_loopback, parse_address
from securechat.origins import normalize_origin
from securechat.peer import arguments as peer_arguments
from securechat.server import serve, tune_garbage_collector
from securechat.sources import parse_networks
from securechat.startup import run_to_exit
from securechat.valkey.url import parse_valkey_url
from securechat.workers import MAX_WORKERS, run_workers, settings_problem

ENV_PREFIX: Final = "SECURECHAT_"
# What the terminal client imports beyond the server's dependencies: the ``client``
# extra, which a server install (the container image) leaves out.
CLIENT_EXTRA_MODULES: Final = frozenset({"cryptography", "trio_websocket"})


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return convert


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0") else _positive_float(text)


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"not a yes/no value: {text!r}")


def _origin(text: str) -> str:
    if normalize_origin(text) is None:
        raise argparse.ArgumentTypeError(f"not an origin like https://chat.example.org: {text!r}")
    return text


def _network(text: str) -> str:
    try:
        parse_networks([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _level(text: str) -> str:
    if text.lower() not in ("debug", "info", "warning", "error"):
        raise argparse.ArgumentTypeError("one of debug, info, warning, error")
    return text.lower()


def _log_format(text: str) -> str:
    if text.lower() not in sclog.LOG_FORMATS:
        raise argparse.ArgumentTypeError("text or json")
    return text.lower()


def _address(text: str) -> str:
    if not text:
        return text  # an empty SECURECHAT_METRICS_ADDRESS= leaves metrics off, as unset does
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _valkey_url(text: str) -> str:
    if text:  # an empty SECURECHAT_VALKEY= leaves SQLite on, as unset does
        try:
            parse_valkey_url(text)
        except ValueError as exc:  # its message never repeats the URL (a password)
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# (flag, type, default, help); each also reads SECURECHAT_<FLAG> from the environment.
_SERVE_OPTIONS: Final[list[tuple[str, Callable[[str], Any], Any, str]]] = [
    ("host", str, "127.0.0.1", "address to listen on"),
    ("port", _int_in(0, 65535), 8787, "port to listen on (0 picks a free one)"),
    ("data-dir", Path, Path("data"), "where the SQLite database lives"),
    ("valkey", _valkey_url, "", "keep rooms in Valkey (or Redis 7) at this URL instead of "
     "SQLite: redis://, rediss:// (TLS), valkey:// or unix://, with user:password@ and /DB "
     "(needed by --workers)"),
    ("workers", _int_in(1, MAX_WORKERS), 1, "relay processes sharing the listening socket, "
     "one per core; more than 1 needs --valkey"),
    ("history", _int_in(0, 1000), limits.DEFAULT_HISTORY, "messages kept per room"),
    ("max-participants", _int_in(1, 10_000), limits.DEFAULT_MAX_PARTICIPANTS,
     "connections per room"),
    ("max-rooms", _int_in(1, 10_000_000), limits.DEFAULT_MAX_ROOMS, "rooms active at once"),
    ("rate", _positive_float, limits.DEFAULT_RATE, "messages per second per connection"),
    ("burst", _int_in(1, 100_000), limits.DEFAULT_BURST, "messages a connection may burst"),
    ("hello-timeout", _positive_float, limits.DEFAULT_HELLO_TIMEOUT,
     "seconds a new socket has to send hello"),
    ("retention-days", _int_in(0, 100_000), limits.DEFAULT_RETENTION_DAYS,
     "days an inactive room is kept (0 = forever)"),
    ("unconfirmed-retention-hours", _int_in(0, 10_000_000),
     limits.DEFAULT_UNCONFIRMED_RETENTION_HOURS,
     "hours a room no second clientId joined is kept (0 = as --retention-days)"),
    ("max-storage-mb", _int_in(1, 100_000_000), limits.DEFAULT_MAX_STORAGE_MB,
     "MiB of stored rooms and messages; then new rooms get close 4507"),
    ("max-stored-rooms", _int_in(1, 1_000_000_000), limits.DEFAULT_MAX_STORED_ROOMS,
     "rooms kept in storage; then new rooms get close 4507"),
    ("max-ciphertext", _int_in(limits.MIN_CIPHERTEXT, 16 * 1024 * 1024),
     limits.DEFAULT_MAX_CIPHERTEXT, "largest ciphertext in bytes"),
    ("max-frame", _int_in(1024, 32 * 1024 * 1024), limits.DEFAULT_MAX_FRAME,
     "largest WebSocket frame in bytes (over it: close 1009)"),
    ("max-bad-frames", _int_in(1, 1_000_000), limits.DEFAULT_MAX_BAD_FRAMES,
     "bad frames before a socket is closed with 1008"),
    ("ping-interval", _non_negative_float, limits.DEFAULT_PING_INTERVAL,
     "seconds between WebSocket pings (0 = none)"),
    ("max-connections", _int_in(0, 10_000_000), limits.DEFAULT_MAX_CONNECTIONS,
     "open TCP connections (over it: 503); 0 = the descriptor limit less max(64, 1/8 of it)"),
    ("max-connections-per-source", _int_in(0, 1_000_000),
     limits.DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
     "open WebSockets per source address, IPv6 per /64 (over it: close 1013), and 16 more "
     "TCP connections per direct peer (over it: 503); 0 = no cap"),
    ("new-rooms-per-minute", _positive_float, limits.DEFAULT_NEW_ROOMS_PER_MINUTE,
     "new rooms per minute, server-wide, before a proof of work is asked"),
    ("new-rooms-burst", _int_in(1, 10_000_000), limits.DEFAULT_NEW_ROOMS_BURST,
     "new rooms at once, server-wide, before a proof of work is asked"),
    ("source-new-rooms-per-minute", _positive_float, limits.DEFAULT_SOURCE_NEW_ROOMS_PER_MINUTE,
     "new rooms per minute from one address before a proof of work is asked"),
    ("source-new-rooms-burst", _int_in(1, 10_000_000), limits.DEFAULT_SOURCE_NEW_ROOMS_BURST,
     "new rooms at once from one address before a proof of work is asked"),
    ("idle-timeout", _non_negative_float, limits.DEFAULT_IDLE_TIMEOUT,
     "seconds an authenticated socket may send nothing before close 4410 (0 = no cap)"),
    ("log-level", _level, "info", "debug, info, warning or error"),
    ("log-format", _log_format, "text", "text, or json: one JSON object per line"),
]  # fmt: skip

VERSION: Final = f"securechat {__version__}"


class _Parser(argparse.ArgumentParser):
    """Reports a bad option in one line, with a pointer to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="securechat",
        description="A relay for end-to-end-encrypted chat rooms. It never sees a key.",
    )
    parser.add_argument("--version", action="version", version=VERSION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser(
        "serve",
        help="run the relay server",
        description="Run the relay server. Every option can also be set with an "
        "environment variable: --max-rooms is SECURECHAT_MAX_ROOMS.",
    )
    serve_parser.set_defaults(command_parser=serve_parser)
    serve_parser.add_argument("--version", action="version", version=VERSION)
    for flag, convert, default, text in _SERVE_OPTIONS:
        serve_parser.add_argument(
            f"--{flag}", type=convert, default=None, help=f"{text} (default: {default})"
        )
    serve_parser.add_argument(
        "--allowed-origin",
        type=_origin,
        action="append",
        default=None,
        help="an extra origin allowed to open WebSockets, e.g. the public URL behind a "
        "reverse proxy that rewrites Host (repeatable; env: space-separated)",
    )
    serve_parser.add_argument(
        "--trusted-proxy",
        type=_network,
        action="append",
        default=None,
        help="a reverse proxy's address or CIDR block: connections from it are counted by "
        "the last X-Forwarded-For entry (repeatable; env: space-separated; default: none, "
        "loopback included)",
    )
    serve_parser.add_argument(
        "--h2c",
        action="store_true",
        default=None,
        help="also speak HTTP/2 over cleartext (off: one such connection would carry many "
        "sockets past the connection caps; env: SECURECHAT_H2C=1)",
    )
    # The subcommands share the parser class; the client registers its own.
    peer_arguments.add_commands(
        cast("argparse._SubParsersAction[argparse.ArgumentParser]", commands)
    )
    serve_parser.add_argument(
        "--ephemeral",
        action="store_true",
        default=None,
        help="keep rooms in memory only: nothing is written to disk and history is "
        "gone on restart (env: SECURECHAT_EPHEMERAL=1)",
    )
    serve_parser.add_argument(
        "--metrics-address",
        type=_address,
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics on /metrics at this address, e.g. 127.0.0.1:9787 "
        "(default: off; a loopback address unless --metrics-allow-remote)",
    )
    serve_parser.add_argument(
        "--metrics-allow-remote",
        action="store_true",
        default=None,
        help="let --metrics-address be other than loopback, e.g. 0.0.0.0:9787 in a container "
        "whose port is published on the host's loopback (env: SECURECHAT_METRICS_ALLOW_REMOTE=1)",
    )
    backup.add_command(commands)
    return parser


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Config:
    """Merge command line, environment and defaults, in that order of precedence."""
    values: dict[str, Any] = {}
    for flag, convert, default, _ in _SERVE_OPTIONS:
        name = flag.replace("-", "_")
        value = getattr(args, name)
        if value is None:
            value = _from_env(parser, flag, convert, default)
        values[name] = value
    values["allowed_origins"] = _repeated(parser, args.allowed_origin, "allowed-origin", _origin)
    values["trusted_proxies"] = _repeated(parser, args.trusted_proxy, "trusted-proxy", _network)
    values["ephemeral"] = _switch(parser, args.ephemeral, "ephemeral")
    values["h2c"] = _switch(parser, args.h2c, "h2c")
    values["metrics_address"] = _metrics_address(parser, args)
    _check_workers(parser, values)
    return Config(**values)


def _check_workers(parser: argparse.ArgumentParser, values: dict[str, Any]) -> None:
    problem = settings_problem(values["workers"], values["valkey"], values["metrics_address"])
    if problem is not None:
        parser.error(problem)


def _metrics_address(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The metrics listener's address, "" for none; refused if not loopback, unless allowed."""
    given = "--metrics-address" if args.metrics_address else f"{ENV_PREFIX}METRICS_ADDRESS"
    address: str = args.metrics_address or _from_env(parser, "metrics-address", _address, "")
    allow_remote = _switch(parser, args.metrics_allow_remote, "metrics-allow-remote")
    if address and not allow_remote and not is_loopback(parse_address(address)[0]):
        parser.error(
            f"{given} {address} is not a loopback address, so anyone who reaches it could "
            "read the metrics; add --metrics-allow-remote if a firewall or the container's "
            "network keeps it private"
        )
    return address


def _repeated(
    parser: argparse.ArgumentParser,
    given: list[str] | None,
    flag: str,
    convert: Callable[[str], str],
) -> tuple[str, ...]:
    """A repeatable option's values, or else its variable's, space-separated."""
    if given is None:
        env = os.environ.get(ENV_PREFIX + flag.replace("-", "_").upper(), "")
        given = [_env_convert(parser, flag, convert, text) for text in env.split()]
    return tuple(given)


def _switch(parser: argparse.ArgumentParser, given: bool | None, flag: str) -> bool:
    """An on/off option: on if given, else its variable's yes/no value, else off."""
    return bool(_from_env(parser, flag, _flag, False)) if given is None else given


def _from_env(
    parser: argparse.ArgumentParser, flag: str, convert: Callable[[str], Any], default: Any
) -> Any:
    raw = os.environ.get(ENV_PREFIX + flag.replace("-", "_").upper())
    return default if raw is None else _env_convert(parser, flag, convert, raw)


def _env_convert(
    parser: argparse.ArgumentParser, flag: str, convert: Callable[[str], Any], raw: str
) -> Any:
    try:
        return convert(raw)
    except argparse.ArgumentTypeError as exc:
        parser.error(f"{ENV_PREFIX}{flag.replace('-', '_').upper()}: {exc}")


def _open_url(base: str) -> str:
    for unspecified in ("//0.0.0.0:", "//[::]:"):
        base = base.replace(unspecified, "//127.0.0.1:")
    return f"{base}/new_chat"


async def run_server(config: Config) -> None:
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def wait_signal() -> None:
                async for _ in signals:
                    shutdown.set()
                    return

            nursery.start_soon(wait_signal)
            base: str = await nursery.start(serve, config, shutdown)
            sclog.announce(f"serving on {base}; open {_open_url(base)}")
            await shutdown.wait()
    sclog.announce("stopped")


def _announce_workers(base: str, workers: int) -> None:
    sclog.announce(f"serving on {base} with {workers} workers; open {_open_url(base)}")


def _run_client(args: argparse.Namespace) -> None:
    """Run a client subcommand, importing the client (and its extra) only now.

    Error handling: without the ``client`` extra, one line says how to install it.
    """
    try:
        from securechat.peer import cli as peer_cli
    except ModuleNotFoundError as exc:
        if exc.name not in CLIENT_EXTRA_MODULES:
            raise
        sys.exit(
            f"securechat: error: the terminal client needs the {exc.name} package, "
            "which a server install leaves out: pip install 'securechat[client]'"
        )
    peer_cli.run(args)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in peer_arguments.COMMANDS:
        _run_client(args)
    if args.command == "backup":
        data_dir = args.data_dir or _from_env(args.command_parser, "data-dir", Path, Path("data"))
        backup.run(data_dir, args.path, force=args.force)
    if args.command == "serve":
        config = config_from_args(args.command_parser, args)
        sclog.configure(config.log_level, config.log_format)
        tune_garbage_collector()
        if config.workers == 1:
            run_to_exit(functools.partial(run_server, config))
        else:  # a worker that cannot start says why itself: its status is the exit status
            run_to_exit(functools.partial(run_workers, config, _announce_workers))
    logging.shutdown()
