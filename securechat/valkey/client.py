"""The Valkey client for a ``ValkeyTarget`` (securechat/valkey/url.py), with coredis.

Kept apart from the URL's parsing, which the command line does at start-up without
importing coredis (most of a second).

Error handling: the clients ``connect`` makes raise ``coredis.exceptions.ConnectionError``
for every "Valkey cannot serve this now": a lost or refused connection (a lost TLS
stream included), no primary known to the sentinels, a primary that still says it is
a replica, ``READONLY`` and ``NOREPLICAS``. Callers answer that one exception
(``unavailable``, 1013, ``/readyz``) and try again later.
"""

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar, final

import anyio
import coredis
import coredis.exceptions
from coredis.connection import TCPLocation
from coredis.retry import ConstantRetryPolicy

from securechat.valkey.url import CONNECT_TIMEOUT_SECONDS, STREAM_TIMEOUT_SECONDS, ValkeyTarget

_R = TypeVar("_R")

# A primary that refuses writes for now is, to a relay, a Valkey it cannot reach:
# NOREPLICAS (``min-replicas-to-write`` unmet: its replicas lag or are gone) and
# READONLY (a primary demoted under us, until Sentinel drops our connections).
_NO_REPLICAS: Final = "NOREPLICAS "  # coredis has no class of its own for it
# coredis 6.9 lets these through when a TLS peer goes away mid-write (its writer task
# catches only the last two): a lost connection all the same.
_STREAM_LOST: Final = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


@asynccontextmanager
async def connect(target: ValkeyTarget) -> AsyncIterator[coredis.Redis[bytes]]:
    """A client for ``target``, connected while the context lasts.

    Resource handling: for Sentinel, the clients to the sentinels live as long as
    the primary's client; both are closed on exit.
    """
    # coredis reports each retry at INFO; the failure that counts is reported once, by us.
    logging.getLogger("coredis").setLevel(logging.WARNING)
    if target.service is None:
        async with coredis.Redis(
            host=target.host,
            port=target.port,
            db=target.db,
            username=target.username,
            password=target.password,
            unix_socket_path=target.socket,
            ssl=target.tls,
            # coredis's own TLS defaults check no host name: any certificate the CA
            # store trusts, for any name, would do. Require both.
            ssl_cert_reqs="required",
            ssl_check_hostname=True,
            retry_policy=_Retries(),
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            stream_timeout=STREAM_TIMEOUT_SECONDS,
            decode_responses=False,
        ) as client:
            yield client
        return
    timeouts: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "stream_timeout": STREAM_TIMEOUT_SECONDS,
    }
    tls = _tls_context() if target.tls else None
    sentinel = coredis.Sentinel(
        [TCPLocation(host, port) for host, port in target.sentinels],
        sentinel_kwargs={**timeouts, "password": target.sentinel_password, "ssl_context": tls},
        decode_responses=False,
        retry_policy=_Retries(),
        db=target.db,
        username=target.username,
        password=target.password,
        ssl_context=tls,
        **timeouts,
    )
    async with (
        sentinel,
        sentinel.primary_for(target.service, connection_pool_class=_FailoverPool) as client,
    ):
        yield client


@final
class _Retries(ConstantRetryPolicy):
    """coredis's default retries; a lost TLS stream, "cannot write now" and refused
    credentials raised as ``ConnectionError`` (the first retried like any lost
    connection).

    Every caller answers ``ConnectionError`` as Valkey unreachable (``unavailable``,
    1013) and retries later; an unknown ``ResponseError`` is a bug and propagates.
    """

    def __init__(self) -> None:
        super().__init__((coredis.exceptions.ConnectionError, TimeoutError), retries=2, delay=0.01)

    async def call_with_retries(
        self,
        func: Callable[..., Awaitable[_R]],
        before_hook: Callable[..., Awaitable[Any] | None] | None = None,
        failure_hook: Callable[..., Awaitable[Any] | None]
        | dict[type[BaseException], Callable[..., Awaitable[Any] | None]]
        | None = None,
    ) -> _R:
        async def attempt() -> _R:
            try:
                return await func()
            except _STREAM_LOST as exc:
                raise coredis.exceptions.ConnectionError("connection lost") from exc

        try:
            return await super().call_with_retries(attempt, before_hook, failure_hook)
        except coredis.exceptions.ReadOnlyError as exc:
            raise coredis.exceptions.ConnectionError(f"READONLY {exc}") from None
        except (
            coredis.exceptions.AuthenticationError,
            coredis.exceptions.AuthorizationError,
        ) as exc:
            # A password changed or an ACL user switched off under a running relay:
            # refused as unreachable until the operator puts it right, not a crash.
            raise coredis.exceptions.ConnectionError(str(exc)) from None
        except coredis.exceptions.ResponseError as exc:
            if not str(exc).startswith(_NO_REPLICAS):
                raise
            raise coredis.exceptions.ConnectionError(str(exc)) from None


def _tls_context() -> ssl.SSLContext:
    # What coredis makes for rediss://, for the sentinels and the primary alike: the
    # chain is checked against the system's CAs, the name is not (Sentinel hands out
    # addresses, which certificates seldom name).
    context = ssl.create_default_context()
    context.check_hostname = False
    return context


@final
class _FailoverPool(coredis.SentinelConnectionPool):
    """The Sentinel-managed pool, failing as an unreachable Valkey does.

    While no sentinel knows a primary, or the one named still says it is a
    replica (mid-failover), a new connection fails with coredis's
    ``SentinelError``: raised as ``ConnectionError``, it is the "Valkey is
    unreachable" every caller handles already (``unavailable``, 1013, /readyz).
    """

    async def get_connection(self, **kwargs: Any) -> coredis.SentinelManagedConnection:
        try:
            return await super().get_connection(**kwargs)
        except coredis.exceptions.SentinelError as exc:
            raise coredis.exceptions.ConnectionError(str(exc)) from None
