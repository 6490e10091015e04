"""Frames built once per message are the bytes wsproto would have written for each."""

import pytest
import wsproto
from wsproto.events import AcceptConnection, Request, TextMessage

from securechat.frames import text_frame, text_payload


def wsproto_server() -> wsproto.WSConnection:
    """A server-side wsproto connection past its handshake, as Hypercorn holds one."""
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="example", target="/ws/x")))
    next(server.events())
    client.receive_data(server.send(AcceptConnection()))
    return server


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 100_000])
def test_a_frame_is_what_wsproto_writes(size: int) -> None:
    text = ("é" * size)[: size // 2] + "x" * (size - size // 2)  # two-byte characters too
    assert text_frame(text) == wsproto_server().send(TextMessage(data=text))
    assert text_payload(text_frame(text)) == text


def test_a_client_reads_the_frame_back() -> None:
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="example", target="/ws/x")))
    next(server.events())
    client.receive_data(server.send(AcceptConnection()))
    list(client.events())
    client.receive_data(text_frame('{"type":"message"}') + text_frame("ü" * 70_000))
    texts = [event.data for event in client.events() if isinstance(event, TextMessage)]
    assert texts == ['{"type":"message"}', "ü" * 70_000]
