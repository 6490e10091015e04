"""The HTTP and WebSocket routes, adapted onto Quart-Trio. The only Quart module."""

from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, final

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, WebsocketScope
from quart import Response, abort, has_request_context, has_websocket_context, request, websocket
from quart.asgi import ASGIWebsocketConnection
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIWebsocketConnection
from werkzeug.exceptions import HTTPException

from securechat.config import Config
from securechat.connection import ConnectionSettings, serve_connection
from securechat.counters import COUNTS
from securechat.errors import CLOSE_REASONS, CloseCode
from securechat.frames import text_payload
from securechat.limits import CLOSE_HANDSHAKE_SECONDS, READY_TIMEOUT_SECONDS
from securechat.log import room_tag
from securechat.origins import normalize_origin, origin_allowed
from securechat.outbox import FRAMES_EXTENSION, FrameSink
from securechat.protocol import parse_client_id, parse_room_id
from securechat.registry import Registry
from securechat.sources import SourceLimiter, parse_networks, source_of
from securechat.storage import Readiness

PAGE: Final = "index.html"
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}


def client_dir() -> Path:
    """The browser files: packaged inside the wheel, or client/ in a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "static"
    return packaged if packaged.is_dir() else here.parent / "client"


def load_client_files(directory: Path) -> dict[str, tuple[bytes, str]]:
    """Read the servable client files once, keyed by name. Unknown types are skipped."""
    files = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type is not None:
            files[path.name] = (path.read_bytes(), content_type)
    if PAGE not in files:
        raise FileNotFoundError(f"no {PAGE} in {directory}")
    return files


@final
class _QuartTransport:
    """The connection's Transport over Quart's websocket object, once accepted."""

    def __init__(self) -> None:
        # The concrete object, not the context-local proxy: the writer task uses it too.
        self._ws = websocket._get_current_object()  # type: ignore[attr-defined]
        offered = self._ws.scope.get("extensions", {}).get(FRAMES_EXTENSION)
        self.sink: FrameSink = offered if offered is not None else _AsgiSink(self._ws)

    async def receive(self) -> str | bytes | None:
        return await self._ws.receive()  # type: ignore[no-any-return]

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)


@final
class _AsgiSink:
    """Frames as ASGI messages, one ``send`` each, where the server offers no sink.

    The server's own sink (HTTP/1.1) writes the frame's bytes; over HTTP/2 a
    WebSocket message travels in DATA frames, so it goes through the server's
    WebSocket layer instead, and nothing is written without waiting.
    """

    holds_unsent = False

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    def write_nowait(self, frame: bytes) -> bool:
        return False

    async def send(self, frame: bytes) -> None:
        await self._ws.send(text_payload(frame))

    async def flush(self) -> None:
        pass


@final
class _Inbox:
    """A route's ``websocket.receive()``, straight from the ASGI ``receive``.

    Quart-Trio runs a task per socket that copies each frame into a memory channel
    (and sends a signal per frame); here the route's own read takes the event,
    so a frame costs no task switch and no channel. Hypercorn's queue in front of
    ``receive`` still bounds what a socket can have waiting, and stops reading its
    TCP stream when full, as before.
    """

    def __init__(self, receive: ASGIReceiveCallable, route: trio.CancelScope) -> None:
        self._receive = receive
        self._route = route
        self.disconnected = False

    async def receive(self) -> str | bytes | None:  # noqa: RET503 (sleep_forever raises)
        while not self.disconnected:
            event = await self._receive()
            if event["type"] == "websocket.receive":
                # None for an empty binary frame, as in Quart.
                return event.get("bytes") or event.get("text")
            self.disconnected = event["type"] == "websocket.disconnect"
        # The peer is gone: the route ends, as Quart-Trio's receive task ended it.
        self._route.cancel()
        await trio.sleep_forever()

    async def drain(self) -> None:
        """Drop what the peer still sends, until it is gone."""
        while not self.disconnected:
            event = await self._receive()
            self.disconnected = event["type"] == "websocket.disconnect"


@final
class _WebsocketConnection(TrioASGIWebsocketConnection):
    """Quart-Trio's WebSocket adapter with a lean per-frame path.

    The route still runs through Quart (its checks, accept, close and refusals are
    Quart's), but a frame in is read by the route itself (``_Inbox``), and frames
    out go to the server's ``FrameSink`` (see ``_QuartTransport``): no receive
    task, no memory channel and no per-frame signals, which nothing here listens
    to. Nothing holds a frame once handed over.
    """

    def __init__(self, app: QuartTrio, scope: WebsocketScope) -> None:  # no channel to open
        self.app = app
        self.scope = scope
        self._accepted = False
        self._closed = False

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        with trio.CancelScope() as route:
            inbox = _Inbox(receive, route)
            self.receive_channel = inbox  # type: ignore[assignment]  # the route's receive
            websocket = self._create_websocket_from_scope(send)
            await ASGIWebsocketConnection.handle_websocket(self, websocket, send)
        # The route has closed the socket (or refused it): finish the close handshake
        # before Hypercorn closes the TCP connection (see CLOSE_HANDSHAKE_SECONDS).
        if self._accepted:
            with trio.move_on_after(CLOSE_HANDSHAKE_SECONDS):
                await inbox.drain()

    async def send_data(self, send: ASGISendCallable, data: str | bytes) -> None:
        if isinstance(data, str):
            await send({"type": "websocket.send", "bytes": None, "text": data})
        else:
            await send({"type": "websocket.send", "bytes": data, "text": None})


@final
class _App(QuartTrio):
    """Quart-Trio whose log of an unhandled exception never names the path.

    Paths carry room ids (``/ws/<roomId>``, ``/room/<roomId>``): the log line gives
    the route's pattern and the room's tag instead, as every log line about a room does.
    """

    asgi_websocket_class = _WebsocketConnection

    def log_exception(
        self,
        exception_info: tuple[type, BaseException, TracebackType] | tuple[None, None, None],
    ) -> None:
        where = "outside a request"
        if has_websocket_context():
            where = _describe_route("websocket", websocket.url_rule, websocket.view_args)
        elif has_request_context():
            where = _describe_route(request.method, request.url_rule, request.view_args)
        self.logger.error("exception on %s", where, exc_info=exception_info)


def _describe_route(kind: str, rule: object, view_args: dict[str, object] | None) -> str:
    pattern = getattr(rule, "rule", None) or "an unknown route"
    room = (view_args or {}).get("room_id")
    return f"{kind} {pattern}" + (f" (room {room_tag(room)})" if isinstance(room, str) else "")


def create_app(
    config: Config,
    registry: Registry,
    client_files: Path | None = None,
    *,
    readiness: Readiness | None = None,
) -> QuartTrio:
    """Build the Quart-Trio app. ``registry`` must be running for the app's lifetime.

    ``/readyz`` asks ``readiness`` whether the storage answers within
    ``READY_TIMEOUT_SECONDS`` (without one, it answers as ``/healthz`` does).
    """
    app = _App("securechat")
    app.config["MAX_CONTENT_LENGTH"] = 0  # no route takes a request body
    files = load_client_files(client_files or client_dir())
    allowed = frozenset(o for o in map(normalize_origin, config.allowed_origins) if o)
    settings = ConnectionSettings(
        hello_timeout=config.hello_timeout,
        max_ciphertext=config.max_ciphertext,
        max_bad_frames=config.max_bad_frames,
        rate=config.rate,
        burst=config.burst,
        idle_timeout=config.idle_timeout,
    )
    trusted_proxies = parse_networks(config.trusted_proxies)
    sources = SourceLimiter(config.max_connections_per_source)

    def text(body: str, status: int = 200) -> Response:
        return Response(body, status=status, content_type="text/plain; charset=utf-8")

    def serve_file(name: str) -> Response:
        body, content_type = files[name]
        return Response(body, content_type=content_type)

    @app.errorhandler(HTTPException)
    async def plain_error(error: HTTPException) -> Response:
        code = error.code or 500
        return text(f"{code} {error.name}\n", code)

    @app.get("/")
    async def index() -> Response:
        return text("API OK")

    @app.get("/healthz")
    async def healthz() -> Response:
        return text("ok")

    @app.get("/readyz")
    async def readyz() -> Response:
        if readiness is None or await readiness.answers(READY_TIMEOUT_SECONDS):
            return text("ready")
        return text("not ready", 503)

    @app.get("/new_chat")
    async def new_chat() -> Response:
        return serve_file(PAGE)

    @app.get("/room/<room_id>")
    async def room_page(room_id: str) -> Response:
        if parse_room_id(room_id) is None:
            abort(404)
        return serve_file(PAGE)

    for name in files:
        if name != PAGE:
            app.add_url_rule(
                f"/{name}", f"file:{name}", _file_view(serve_file, name), methods=["GET"]
            )

    @app.websocket("/ws/<room_id>")
    async def room_socket(room_id: str) -> None:
        room = parse_room_id(room_id)
        client = parse_client_id(websocket.args.get("client", ""))
        if room is None or client is None:
            abort(400)
        headers = websocket.headers
        if not origin_allowed(headers.get("Origin"), headers.get("Host"), allowed):
            abort(403)
        # The peer address from the ASGI scope, never Quart's remote_addr (a header).
        peer = websocket.scope.get("client")
        source = source_of(
            None if peer is None else peer[0], headers.getlist("X-Forwarded-For"), trusted_proxies
        )
        admission = sources.try_admit(source)
        if admission is None:
            COUNTS.closes[CloseCode.TRY_AGAIN] += 1
            await websocket.accept()  # then close: a browser shows a close code, not a status
            await websocket.close(CloseCode.TRY_AGAIN, CLOSE_REASONS[CloseCode.TRY_AGAIN])
            return
        try:
            await websocket.accept()
            await serve_connection(_QuartTransport(), room, client, registry, settings, source)
        finally:
            sources.release(admission)

    return app


def _file_view(
    serve_file: Callable[[str], Response], name: str
) -> Callable[[], Awaitable[Response]]:
    async def view() -> Response:
        return serve_file(name)

    return view
