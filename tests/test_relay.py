"""The relay end to end: hello, verifier, relay order, history, clear, sequence numbers."""

import trio

from tests.harness import (
    ServerHandle,
    connect,
    joined_peer,
    new_room_id,
    new_token,
)


async def test_two_peers_exchange_messages(nursery: trio.Nursery, server: ServerHandle) -> None:
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    bob = await connect(nursery, server, room)
    history, connected = await bob.hello(token)
    assert history == {"type": "history", "messages": []}
    assert connected["participants"] == [alice.client_id, bob.client_id]
    await alice.expect("system", event="joined", clientId=bob.client_id)

    sent = await alice.post()
    for peer in (alice, bob):  # the sender gets its own message back as confirmation
        got = await peer.expect("message", iv=sent["iv"], ciphertext=sent["ciphertext"])
        assert got["from"] == alice.client_id
        assert got["id"] == 1
        assert isinstance(got["sentAt"], int)
