"""The security headers, added to every HTTP response by an ASGI middleware.

A middleware rather than Quart's ``after_request`` because it must also reach
the HTTP responses that refuse a WebSocket handshake (400, 403), which Quart
sends as ``websocket.http.response.start`` events.
"""

from typing import Final, final

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

from securechat.counters import COUNTS

# The page loads only its own script and style: nothing inline, no eval, no
# frames, no data: images (the page has none), and Trusted Types with no policy,
# so no string ever becomes HTML or code.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'; "
    "form-action 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
)

PERMISSIONS_POLICY: Final = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer", "ambient-light-sensor", "autoplay", "bluetooth", "camera",
        "display-capture", "encrypted-media", "fullscreen", "geolocation", "gyroscope",
        "hid", "idle-detection", "interest-cohort", "magnetometer", "microphone", "midi",
        "payment", "picture-in-picture", "publickey-credentials-get", "screen-wake-lock",
        "serial", "usb", "xr-spatial-tracking",
    )
)  # fmt: skip

SECURITY_HEADERS: Final[dict[str, str]] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": PERMISSIONS_POLICY,
}

_ENCODED: Final = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]
_NAMES: Final = frozenset(k for k, _ in _ENCODED)


@final
class SecurityHeaders:
    """Wraps an ASGI app; sets the security headers on every response it starts."""

    def __init__(self, app: ASGIFramework) -> None:
        self._app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        async def send_with_headers(event: ASGISendEvent) -> None:
            if event["type"] == "http.response.start" or (
                event["type"] == "websocket.http.response.start"
            ):
                COUNTS.responses[event["status"]] += 1
                kept = [(k, v) for k, v in event["headers"] if k.lower() not in _NAMES]
                event["headers"] = kept + _ENCODED
            await send(event)

        await self._app(scope, receive, send_with_headers)
