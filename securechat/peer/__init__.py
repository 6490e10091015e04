"""The reference client: a second, independent implementation of the protocol.

Layers, each its own module:

- ``b64``: strict, canonical base64url without padding.
- ``bounds``: what a person types is bounded by (imports nothing: the command line
  uses it).
- ``link``: invite links (``<origin>/room/<roomId>#<secret>``), made and parsed.
- ``keys``: HKDF key derivation and AES-GCM sealing of the plaintext JSON.
- ``events``: what a session reports to its user (frozen records).
- ``conversation``: the rules, sans-IO: server frames in, events out; dedupe,
  ordering, pending messages awaiting their echo.
- ``session``: the Trio plumbing: WebSocket, hello, heartbeat, reconnect with backoff.
- ``state``: the per-room identity file (room id, clientId, display name; never keys).
- ``display`` and ``cli``: the ``new``, ``chat``, ``send`` and ``tail`` commands.

The package uses only the server's wire shapes (``securechat.protocol``) and close
codes (``securechat.errors``); it never imports the server itself.
"""
